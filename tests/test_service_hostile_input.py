"""Hostile input is a 4xx naming the field, never a 500, and nothing of it is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from abtest import keys
from tests.conftest import simple_config
from tests.test_console import Console

LONE = "\ud800"  # a lone surrogate: valid JSON as an escape, not encodable as UTF-8
HUGE = "1" * 5000  # more digits than int() reads (sys.get_int_max_str_digits)


def _body(value: Any) -> bytes:
    """JSON with lone surrogates kept as \\ud800 escapes (what a hostile client sends)."""
    return json.dumps(value).encode()


def _raw(text: str) -> bytes:
    """The text as bytes with surrogates encoded raw (ED A0 80), as surrogatepass reads them."""
    return text.encode("utf-8", "surrogatepass")


_EVENT = {"event_id": "e1", "unit_id": "u1", "metric": "purchase"}
_ASSIGN = {"experiment": "exp", "unit_id": "u1"}
_SURROGATES = [
    ("/v1/assign", {**_ASSIGN, "unit_id": "u" + LONE}, "unit_id"),
    ("/v1/assign", {**_ASSIGN, "experiment": "exp" + LONE}, "experiment"),
    ("/v1/assign", {**_ASSIGN, "attributes": {"country": LONE}}, "attributes.country"),
    ("/v1/assign", {**_ASSIGN, "attributes": {LONE: 1}}, "attributes.\\ud800"),
    ("/v1/assign/batch", {"requests": [_ASSIGN, {**_ASSIGN, "unit_id": LONE}]},
     "requests[1].unit_id"),
    ("/v1/events", {"events": [_EVENT, {**_EVENT, "event_id": LONE}]}, "events[1].event_id"),
    ("/v1/events", {"events": [{**_EVENT, "unit_id": LONE}]}, "events[0].unit_id"),
    ("/v1/events", {"events": [{**_EVENT, "metric": "buy" + LONE}]}, "events[0].metric"),
    ("/v1/experiments", simple_config("new", description=LONE), "description"),
    ("/v1/experiments", simple_config("new", owner="a" + LONE), "owner"),
    ("/v1/experiments", simple_config("new" + LONE), "key"),
    ("/v1/experiments", simple_config("new", variants=[{"key": "a", "payload": {"m": LONE}},
                                                      {"key": "b"}]), "variants[0].payload.m"),
    ("/v1/experiments", simple_config("new", overrides={LONE: "control"}), "overrides.\\ud800"),
    ("/v1/experiments/exp/ship", {"variant": LONE}, "variant"),
    ("/v1/keys", {"role": "sdk", "name": LONE}, "name"),
]  # fmt: skip


@pytest.mark.parametrize("encode", [_body, lambda v: _raw(json.dumps(v, ensure_ascii=False))],
                         ids=["escaped", "raw-bytes"])  # fmt: skip
@pytest.mark.parametrize(("path", "body", "field"), _SURROGATES)
def test_a_lone_surrogate_is_a_400_naming_the_field(api, redis_client, encode, path, body, field):  # noqa: PLR0917 - table columns
    """Any text field with a lone surrogate is refused with its field; nothing is stored."""
    api.create_experiment()
    before = _snapshot(redis_client)
    response = api.client.post(path, data=encode(body), headers=api.headers())
    assert response.status_code == 400, response.get_data()
    assert response.get_json()["error"]["field"] == field
    assert "surrogate" in response.get_json()["error"]["message"] or field.endswith("\\ud800")
    assert _snapshot(redis_client) == before


@pytest.mark.parametrize(
    ("path", "text", "field"),
    [
        ("/v1/events", '{"events": [{"event_id": "e", "unit_id": "u", "metric": "m", '
                       f'"value": {HUGE}}}]}}', "events[0].value"),
        ("/v1/events", '{"events": [{"event_id": "e", "unit_id": "u", "metric": "m", '
                       f'"timestamp": -{HUGE}}}]}}', "events[0].timestamp"),
        ("/v1/assign", f'{{"experiment": "exp", "unit_id": "u", "attributes": {{"n": {HUGE}}}}}',
         "attributes.n"),
        ("/v1/assign/batch", f'{{"requests": [{{"experiment": "exp", "unit_id": "u", '
                             f'"assigned_at": {HUGE}}}]}}', "requests[0].assigned_at"),
        ("/v1/experiments", f'{{"key": "n", "variants": [{{"key": "a", "payload": [{HUGE}]}}, '
                            '{"key": "b"}]}', "variants[0].payload[0]"),
        ("/v1/experiments", '{"key": "n", "variants": [{"key": "a", "weight": 1e400}, '
                            '{"key": "b"}]}', "variants[0].weight"),
        ("/v1/keys", f'{{"role": "sdk", "name": "x", "n": {HUGE}}}', "n"),
        ("/v1/assign", f"{HUGE}", "$"),
    ],
)  # fmt: skip
def test_numbers_python_cannot_keep_are_a_400_naming_the_field(
    api, redis_client, path, text, field
):
    """An integer over Python's digit limit or a number that overflows to infinity, anywhere
    in a body, is a 400 naming where it is."""
    api.create_experiment()
    before = _snapshot(redis_client)
    response = api.client.post(path, data=text, headers=api.headers())
    assert response.status_code == 400, response.get_data()
    assert response.get_json()["error"]["field"] == field
    assert _snapshot(redis_client) == before


@pytest.mark.parametrize(
    ("variants", "field"),
    [
        ([{"key": "a", "weight": 1e308}, {"key": "b", "weight": 1e308}], "variants"),
        ([{"key": "a", "weight": 1e-300}, {"key": "b", "weight": 1e300}], "variants[0].weight"),
    ],
)
def test_weights_that_cannot_be_normalised_are_refused(api, redis_client, variants, field):
    """Weights whose sum overflows, or a share too small for one bucket, are a 4xx naming
    the field, at create and at update, and assignment keeps working."""
    api.create_experiment()
    created = api.call("POST", "/v1/experiments", simple_config("new", variants=variants))
    assert created.status_code == 422, created.get_data()
    assert created.get_json()["error"]["field"] == field
    updated = api.call("PUT", "/v1/experiments/exp?force=true", simple_config(variants=variants))
    assert updated.status_code == 422
    assert api.assign("exp", "u1")["in_experiment"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/experiments", simple_config("new\n"), "key"),
        ("/v1/experiments", simple_config("new", variants=[{"key": "a\n"}, {"key": "b"}]),
         "variants[0].key"),
        ("/v1/experiments", simple_config("new", primary_metric="purchase\n:binomial"),
         "primary_metric.name"),
        ("/v1/experiments", simple_config("new", seed="s\n"), "seed"),
        ("/v1/assign", {"experiment": "exp\n", "unit_id": "u"}, "experiment"),
        ("/v1/events", {"events": [{**_EVENT, "metric": "purchase\n"}]}, "events[0].metric"),
        ("/v1/experiments/exp/ship", {"variant": "control\n"}, "variant"),
    ],
)  # fmt: skip
def test_names_with_a_trailing_newline_are_refused(api, redis_client, path, body, field):
    """Keys and metric names are matched in full: ``re.match`` with ``$`` let "exp\\n" in."""
    api.create_experiment()
    before = _snapshot(redis_client)
    response = api.call("POST", path, body)
    assert 400 <= response.status_code < 500, response.get_data()
    assert response.get_json()["error"]["field"] == field
    assert _snapshot(redis_client) == before


def test_a_surrogate_stored_by_an_older_version_is_shown_not_fatal(api, redis_client):
    """A description with a lone surrogate already in Redis (accepted before these checks)
    no longer breaks the console, the API or the audit trail: it reads as U+FFFD."""
    api.create_experiment()
    meta = keys.experiment_meta("exp")
    config = json.loads(redis_client.hget(meta, "config"))
    config["description"] = "broken " + LONE
    redis_client.hset(meta, "config", json.dumps(config))
    history = keys.experiment_history("exp")
    entry = json.loads(redis_client.lindex(history, 0))
    entry["config"]["description"] = LONE
    redis_client.lset(history, 0, json.dumps(entry))
    got = api.call("GET", "/v1/experiments/exp")
    assert got.status_code == 200
    assert got.get_json()["config"]["description"] == "broken \ufffd"
    assert api.call("GET", "/v1/experiments/exp/history").status_code == 200
    assert api.call("GET", "/v1/experiments").status_code == 200
    assert Console(api.client).login(api.admin_key).status_code == 302
    page = api.client.get("/")
    assert page.status_code == 200
    assert "broken \ufffd" in page.get_data(as_text=True)


def _snapshot(redis_client) -> dict[str, Any]:
    """Every key with its type and length: enough to see that a refused request wrote nothing
    (API keys are left out: the api fixture creates them)."""
    return {
        name: (redis_client.type(name), redis_client.memory_usage(name))
        for name in redis_client.scan_iter()
        if "apikeys" not in name
    }
