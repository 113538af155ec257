"""The metric catalogue over HTTP: versioned, audited definitions that experiments name and
pin, and one rule for which event names are known."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from service import create_app
from tests.conftest import Api, simple_config
from tests.stored import outcome_entries

REDIS_TOPOLOGIES = ("single", "cluster")

REVENUE: dict[str, Any] = {
    "name": "revenue", "type": "sum", "unit": "EUR", "higher_is_better": True, "cap": 500,
    "attribution_window_hours": 72, "description": "Order value net of refunds",
}  # fmt: skip


def put(api: Api, body: dict[str, Any], *, role: str = "admin") -> Any:
    return api.call("PUT", "/v1/metrics", body, role=role)


def _event(i: int, metric: str) -> dict[str, Any]:
    return {"event_id": f"e{i}", "unit_id": "u1", "metric": metric, "value": 1}


def test_a_definition_is_stored_versioned_and_audited(api: Api) -> None:
    """Each change is a new version with who, when and why; the same definition again
    changes nothing; GET lists the current one and GET /{name} every version."""
    first = put(api, {**REVENUE, "reason": "first definition"})
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["version"] == 1 and first.get_json()["changed"] is True
    again = put(api, REVENUE)
    assert again.status_code == 200 and again.get_json()["version"] == 1
    second = put(api, {**REVENUE, "cap": 800, "reason": "Black Friday baskets are bigger"})
    assert second.status_code == 201 and second.get_json()["version"] == 2
    listed = api.call("GET", "/v1/metrics", role="sdk").get_json()
    assert [(m["name"], m["version"], m["definition"]["cap"]) for m in listed["metrics"]] == [
        ("revenue", 2, 800.0)
    ]
    shown = api.call("GET", "/v1/metrics/revenue", role="sdk").get_json()
    versions = shown["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["reason"] == "Black Friday baskets are bigger"
    assert versions[1]["diff"] == [{"field": "cap", "old": 500.0, "new": 800.0}]
    admin_id = api.store.verify_api_key(api.admin_key).id
    assert {v["key_id"] for v in versions} == {admin_id}
    assert versions[0]["definition"]["cap"] == 500.0  # the old version stays readable


def test_ratio_and_quantile_names_are_catalogue_names(api: Api) -> None:
    """clicks/searches and latency_ms:p95 are stored and read back under their own names."""
    for body in ({"name": "clicks/searches", "type": "ratio"},
                 {"name": "latency_ms:p95", "type": "quantile", "unit": "ms",
                  "higher_is_better": False}):  # fmt: skip
        assert put(api, body).status_code == 201
    for name in ("clicks/searches", "latency_ms:p95"):
        response = api.call("GET", f"/v1/metrics/{name}")
        assert response.status_code == 200 and response.get_json()["name"] == name


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({**REVENUE, "type": "mean"}, 400, "type"),
        ({**REVENUE, "name": "re venue"}, 400, "name"),
        ({**REVENUE, "cap": -1}, 400, "cap"),
        ({**REVENUE, "cap": float("nan")}, 400, "cap"),
        ({**REVENUE, "colour": "red"}, 400, "colour"),
        ({**REVENUE, "unit": "x" * 33}, 400, "unit"),
        ({**REVENUE, "type": "binomial"}, 422, "cap"),
        ({"name": "clicks", "type": "ratio"}, 422, "name"),
        ({"name": "latency_ms", "type": "quantile"}, 422, "name"),
        ({**REVENUE, "base_version": 3}, 409, "base_version"),
    ],
)
def test_bad_definitions_are_refused_naming_the_field(
    api: Api, body: dict[str, Any], status: int, field: str
) -> None:
    """Every refusal is a 4xx naming the field, and stores nothing."""
    if body.get("cap") != body.get("cap"):  # NaN cannot travel as JSON: send it raw
        response = api.client.put("/v1/metrics", data='{"name": "revenue", "type": "sum", '
                                  '"cap": NaN}', headers=api.headers())  # fmt: skip
    else:
        response = put(api, body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert api.call("GET", "/v1/metrics").get_json()["metrics"] == []


def test_a_description_up_to_the_catalogues_limit_is_accepted(api: Api) -> None:
    """The request body allows what the catalogue allows (2,000 characters), no more."""
    from abtest.catalogue import MAX_DESCRIPTION_LENGTH

    longest = {**REVENUE, "description": "d" * MAX_DESCRIPTION_LENGTH}
    assert put(api, longest).status_code == 201
    too_long = {**REVENUE, "description": "d" * (MAX_DESCRIPTION_LENGTH + 1), "base_version": 1}
    response = put(api, too_long)
    assert response.status_code == 400 and response.get_json()["error"]["field"] == "description"


def test_a_type_change_and_a_stale_edit_are_conflicts(api: Api) -> None:
    """A new meaning needs a new name; an edit made from an old version is refused."""
    put(api, REVENUE)
    put(api, {**REVENUE, "cap": 900})
    response = put(api, {**REVENUE, "type": "count"})
    assert response.status_code == 409 and response.get_json()["error"]["field"] == "type"
    stale = put(api, {**REVENUE, "cap": 100, "base_version": 1})
    assert stale.status_code == 409
    assert put(api, {**REVENUE, "cap": 100, "base_version": 2}).status_code == 201


def test_writes_need_an_admin_key_and_unknown_names_are_404_with_a_suggestion(api: Api) -> None:
    """sdk keys read; only admin keys write; a misspelt name suggests the right one."""
    assert put(api, REVENUE, role="sdk").status_code == 403
    put(api, REVENUE)
    missing = api.call("GET", "/v1/metrics/revenu", role="sdk")
    assert missing.status_code == 404
    assert "did you mean 'revenue'" in missing.get_json()["error"]["message"]


def test_an_experiment_names_a_catalogue_metric_and_pins_its_version(api: Api) -> None:
    """The stored experiment carries the definition it used; a later catalogue edit does not
    change it, not even when the same file is pushed again; naming the version moves it."""
    put(api, REVENUE)
    config = simple_config(primary_metric={"catalogue": "revenue"})
    created = api.create_experiment(config, start=False)
    metric = created["config"]["primary_metric"]
    assert metric == {"name": "revenue", "type": "sum", "higher_is_better": True,
                      "margin": None, "unit": "EUR", "cap": 500.0,
                      "attribution_window_hours": 72.0, "catalogue_version": 1}  # fmt: skip
    put(api, {**REVENUE, "cap": 800, "reason": "bigger baskets"})
    again = api.call("PUT", "/v1/experiments/exp", {**config, "description": "pushed again"})
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["config"]["primary_metric"]["cap"] == 500.0
    assert again.get_json()["config"]["primary_metric"]["catalogue_version"] == 1
    moved = api.call(
        "PUT",
        "/v1/experiments/exp",
        {**config, "primary_metric": {"catalogue": "revenue", "version": 2}},
    )
    assert moved.get_json()["config"]["primary_metric"]["cap"] == 800.0
    history = api.call("GET", "/v1/experiments/exp/history").get_json()["history"]
    changed = {change["field"] for change in history[-1]["diff"]}
    assert {"primary_metric.cap", "primary_metric.catalogue_version"} <= changed


def test_a_new_experiment_gets_the_latest_version(api: Api) -> None:
    """Without a version and with nothing pinned yet, the latest version is used."""
    put(api, REVENUE)
    put(api, {**REVENUE, "cap": 800})
    created = api.create_experiment(
        simple_config(secondary_metrics=[{"catalogue": "revenue"}]), start=False
    )
    assert created["config"]["secondary_metrics"][0]["catalogue_version"] == 2


@pytest.mark.parametrize(
    ("metric", "field", "text"),
    [
        ({"catalogue": "revenu"}, "primary_metric.catalogue", "did you mean 'revenue'"),
        ({"catalogue": "revenue", "version": 7}, "primary_metric.version", "no version 7"),
        ({"catalogue": "revenue", "type": "sum"}, "primary_metric.type", "takes only"),
        ({"catalogue": "revenue", "version": 0}, "primary_metric.version", "whole number"),
        (
            {
                **{k: v for k, v in REVENUE.items() if k != "description"},
                "margin": None,
                "catalogue_version": 1,
                "cap": 10,
            },
            "primary_metric.cap",
            "differs from version 1",
        ),
    ],
)
def test_bad_references_are_refused_naming_the_field(
    api: Api, metric: dict[str, Any], field: str, text: str
) -> None:
    """An unknown name, version or field, or a pinned copy edited by hand, is a 422."""
    put(api, REVENUE)
    response = api.call("POST", "/v1/experiments", simple_config(primary_metric=metric))
    assert response.status_code == 422, response.get_json()
    problems = response.get_json()["error"]["problems"]
    assert problems[0]["field"] == field and text in problems[0]["message"]
    assert api.call("GET", "/v1/experiments").get_json()["experiments"] == []


def test_a_stored_config_sent_back_unchanged_is_accepted(api: Api) -> None:
    """GET then PUT of the same config keeps the pinned metric as it is."""
    put(api, REVENUE)
    created = api.create_experiment(simple_config(primary_metric={"catalogue": "revenue"}),
                                    start=False)  # fmt: skip
    response = api.call("PUT", "/v1/experiments/exp", created["config"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["config"]["primary_metric"] == created["config"]["primary_metric"]


def api_with(mode: str, redis_url: str, partitions: dict[str, int]) -> Api:
    """The API of an app configured with UNKNOWN_METRICS=``mode``."""
    app = create_app({"TESTING": True, "REDIS_URL": redis_url, "UNKNOWN_METRICS": mode,
                      "EVENT_PARTITIONS": partitions["event_partitions"]})  # fmt: skip
    return Api(app.test_client(), app.extensions["abtest"].store)


@pytest.fixture
def counting_api(redis_url: str, redis_client: redis.Redis, partitions: dict[str, int]) -> Api:
    """The API of an app configured with UNKNOWN_METRICS=count."""
    return api_with("count", redis_url, partitions)


def test_events_for_catalogue_metrics_are_known_without_any_experiment(
    api: Api, redis_client: redis.Redis
) -> None:
    """A catalogue entry makes its event names known at once (both parts of a ratio, the
    base of a quantile); by default a typo is refused with the closest known name, and
    nothing is stored."""
    put(api, REVENUE)
    put(api, {"name": "clicks/searches", "type": "ratio"})
    put(api, {"name": "latency_ms:p95", "type": "quantile"})
    names = ["revenue", "clicks", "searches", "latency_ms"]
    ok = api.send_events([_event(i, n) for i, n in enumerate(names)])
    assert ok.status_code == 202 and ok.get_json()["accepted"] == 4
    response = api.send_events([_event(10, "revenue"), _event(11, "revenu")])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "events[1].metric"
    assert "'revenu'" in error["message"] and "did you mean 'revenue'" in error["message"]
    assert len(outcome_entries(redis_client)) == 4


def test_unknown_metrics_are_counted_and_reported_when_configured(counting_api: Api) -> None:
    """UNKNOWN_METRICS=count keeps the events, counts them per name (not the known ones, not
    duplicates refused by the batch) and GET /v1/metrics reports the counts."""
    api = counting_api
    put(api, REVENUE)
    api.create_experiment(simple_config(primary_metric="purchase:binomial"))
    events = [_event(0, "revenue"), _event(1, "purchase"), _event(2, "purchse"),
              _event(3, "purchse"), _event(4, "revenu")]  # fmt: skip
    response = api.send_events(events)
    assert response.status_code == 202 and response.get_json()["accepted"] == 5
    assert api.call("GET", "/v1/metrics").get_json()["unknown"] == {"purchse": 2, "revenu": 1}


def test_accept_mode_neither_refuses_nor_counts(
    redis_url: str, redis_client: redis.Redis, partitions: dict[str, int]
) -> None:
    """UNKNOWN_METRICS=accept keeps every name and counts none."""
    accepting = api_with("accept", redis_url, partitions)
    assert accepting.send_events([_event(0, "purchse")]).status_code == 202
    assert accepting.call("GET", "/v1/metrics").get_json()["unknown"] == {}


@pytest.mark.parametrize("value", ["drop", 1, None])
def test_the_unknown_metrics_setting_is_checked(value: object) -> None:
    """A value other than refuse, count or accept stops the app from being built."""
    from abtest.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        create_app({"UNKNOWN_METRICS": value})
    assert raised.value.field == "UNKNOWN_METRICS"


@pytest.mark.parametrize("redis_topology", ["single"], indirect=True)
def test_the_console_shows_the_catalogue_and_unknown_metrics(
    counting_api: Api, redis_topology: str
) -> None:
    """/catalogue lists each definition with its version and who changed it, and the unknown
    event names (UNKNOWN_METRICS=count) with their counts and the closest known name;
    without a session it redirects to sign-in."""
    from tests.test_console import Console

    api, client = counting_api, counting_api.client
    assert client.get("/catalogue").status_code == 302
    put(api, {**REVENUE, "reason": "launch"})
    api.send_events([_event(0, "revenu"), _event(1, "revenu"), _event(2, "zzz")])
    console = Console(client)
    assert console.login(api.admin_key).status_code == 302
    page = client.get("/catalogue").get_data(as_text=True)
    assert 'data-name="revenue"' in page and "EUR" in page and "v1" in page
    assert "launch" in page
    unknown = page[page.index('id="unknown-metrics"') :]
    assert "<code>revenu</code></td><td>2</td><td>revenue</td>" in unknown
    assert "<code>zzz</code></td><td>1</td><td>–</td>" in unknown


@pytest.mark.parametrize("redis_topology", ["single"], indirect=True)
def test_the_console_says_unknown_metrics_are_refused_by_default(
    client: Any, api: Api, redis_topology: str
) -> None:
    """With the default setting a typo is refused, not counted, and the page says so."""
    from tests.test_console import Console

    put(api, REVENUE)
    assert api.send_events([_event(0, "revenu")]).status_code == 400
    assert api.call("GET", "/v1/metrics").get_json()["unknown"] == {}
    assert Console(client).login(api.admin_key).status_code == 302
    page = client.get("/catalogue").get_data(as_text=True)
    assert 'id="unknown-refused"' in page and 'id="unknown-metrics"' not in page


def test_a_metric_another_worker_declared_is_known_at_its_first_event(
    redis_url: str, redis_client: redis.Redis, partitions: dict[str, int]
) -> None:
    """Two apps on one store stand for two gunicorn workers: the one that did not store the
    experiment has cached names without its metric, and still accepts its first events."""
    worker_a, worker_b = (
        api_with("refuse", redis_url, partitions),
        api_with("refuse", redis_url, partitions),
    )
    assert worker_a.send_events([_event(0, "signup")]).status_code == 400  # caches the names
    worker_b.create_experiment(simple_config(primary_metric="signup:binomial"))
    time.sleep(0.15)  # past the recheck interval, well within the 5 s cache
    assert worker_a.send_events([_event(1, "signup")]).status_code == 202
    assert worker_a.send_events([_event(2, "signpu")]).status_code == 400
