"""Experiment endpoints: create, read, update (409/force), lifecycle, history, exposures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from abtest import keys
from abtest.experiment import Experiment
from tests.conftest import example_config, simple_config

REDIS_TOPOLOGIES = ("single", "cluster")


def test_create_get_list(api):
    """POST creates a draft (version 1) whose config round-trips; GET and list show it."""
    response = api.call("POST", "/v1/experiments", example_config())
    assert response.status_code == 201
    assert response.headers["Location"] == "/v1/experiments/ranker-v2"
    created = response.get_json()
    assert (created["key"], created["status"], created["version"]) == ("ranker-v2", "draft", 1)
    expected = Experiment.from_dict({**example_config(), "status": "draft"}).to_dict()
    assert created["config"] == expected
    got = api.call("GET", "/v1/experiments/ranker-v2", role="sdk").get_json()
    assert got == created
    listed = api.call("GET", "/v1/experiments", role="sdk").get_json()["experiments"]
    assert listed == [created]
    assert api.call("GET", "/v1/experiments?status=running").get_json()["experiments"] == []


def test_lifecycle_and_history(api):
    """start, update, stop and ship each add a version with the admin key id and a diff."""
    api.create_experiment()
    assert (
        api.call("PUT", "/v1/experiments/exp", simple_config(description="new")).status_code == 200
    )
    assert api.call("POST", "/v1/experiments/exp/stop").get_json()["status"] == "stopped"
    body = {"variant": "treatment", "reason": "ops review: latency budget met"}
    shipped = api.call("POST", "/v1/experiments/exp/ship", body).get_json()
    assert (shipped["status"], shipped["config"]["winner"], shipped["version"]) == (
        "shipped",
        "treatment",
        5,
    )
    history = api.call("GET", "/v1/experiments/exp/history").get_json()["history"]
    assert [h["action"] for h in history] == ["create", "start", "update", "stop", "ship"]
    admin_id = api.store.verify_api_key(api.admin_key).id
    assert {h["key_id"] for h in history} == {admin_id}
    assert history[1]["diff"] == [{"field": "status", "old": "draft", "new": "running"}]
    assert history[2]["diff"] == [{"field": "description", "old": "", "new": "new"}]
    assert history[4]["reason"] == "ops review: latency budget met"
    assert all("reason" not in h for h in history[:4])


def test_put_that_moves_units_is_409_unless_forced(api):
    """Removing a variant of a running experiment with assigned units needs ?force=true."""
    api.create_experiment()
    api.assign("exp", "u1")
    three = simple_config(variants=[{"key": "control"}, {"key": "b"}])
    refused = api.call("PUT", "/v1/experiments/exp", three)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["field"] == "variants"
    assert api.call("GET", "/v1/experiments/exp").get_json()["version"] == 2
    forced = api.call("PUT", "/v1/experiments/exp?force=true", three)
    assert forced.status_code == 200
    assert forced.get_json()["version"] == 3


def test_layer_overlap_is_409(api):
    """Two running experiments may not overlap in one layer."""
    api.create_experiment(simple_config("a", layer={"name": "l", "range": [0, 0.5]}))
    api.create_experiment(simple_config("b", layer={"name": "l", "range": [0.4, 1]}), start=False)
    response = api.call("POST", "/v1/experiments/b/start")
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "layer.range"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/v1/experiments", {"key": "Bad Key", "variants": []}, 422, "key"),
        ("POST", "/v1/experiments", {**simple_config(), "colour": 1}, 422, "colour"),
        ("POST", "/v1/experiments", [1, 2], 400, "$"),
        ("POST", "/v1/experiments", simple_config(), 409, "key"),
        ("GET", "/v1/experiments/missing", None, 404, "experiment"),
        ("GET", "/v1/experiments/Bad%20Key", None, 400, "key"),
        ("GET", "/v1/experiments?status=paused", None, 400, "status"),
        ("PUT", "/v1/experiments/exp", simple_config(status="stopped"), 409, "status"),
        ("PUT", "/v1/experiments/exp", simple_config("other"), 400, "key"),
        ("PUT", "/v1/experiments/exp?force=maybe", simple_config(), 400, "force"),
        ("PUT", "/v1/experiments/missing", simple_config("missing"), 404, "experiment"),
        ("POST", "/v1/experiments/exp/start", None, 409, "status"),
        ("POST", "/v1/experiments/exp/ship", {}, 400, "variant"),
        ("POST", "/v1/experiments/exp/ship", {"variant": "nope"}, 400, "variant"),
        ("POST", "/v1/experiments/exp/ship", {"variant": "control", "x": 1}, 400, "x"),
        ("POST", "/v1/experiments/exp/ship", {"variant": "control", "reason": 1}, 400, "reason"),
        ("GET", "/v1/experiments/missing/history", None, 404, "experiment"),
        ("GET", "/v1/experiments/missing/exposures", None, 404, "experiment"),
    ],
)
def test_experiment_errors(api, method, path, body, status, field):  # noqa: PLR0917 - table columns
    """Each bad request is a 4xx JSON error naming the field, and changes nothing."""
    api.create_experiment()
    before = api.call("GET", "/v1/experiments/exp/history").get_json()
    response = api.call(method, path, body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["field"] == field
    assert set(error) >= {"code", "message", "field"}
    assert api.call("GET", "/v1/experiments/exp/history").get_json() == before


def test_exposures_per_variant_and_day_with_srm(api):
    """Counts match the assigned units and the SRM p-value is scipy's chi-square."""
    api.create_experiment(simple_config(variants=[{"key": "control", "weight": 1},
                                                  {"key": "treatment", "weight": 3}]))  # fmt: skip
    variants = [api.assign("exp", f"u{i}")["variant"] for i in range(300)]
    body = api.call("GET", "/v1/experiments/exp/exposures").get_json()
    observed = [variants.count("control"), variants.count("treatment")]
    assert body["variants"] == {"control": observed[0], "treatment": observed[1]}
    assert body["total"] == 300
    [day] = body["daily"]
    assert day["variants"] == body["variants"]
    expected = chisquare(observed, [75, 225]).pvalue
    assert body["srm"]["p_value"] == pytest.approx(expected)
    assert body["srm"]["expected"] == {"control": 75.0, "treatment": 225.0}


def test_srm_p_value_is_small_for_a_broken_split(api, store):
    """A 1:3 configured split observed as 1:1 gives a tiny p-value; no exposures give null."""
    api.create_experiment(simple_config(variants=[{"key": "control", "weight": 1},
                                                  {"key": "treatment", "weight": 3}]))  # fmt: skip
    assert api.call("GET", "/v1/experiments/exp/exposures").get_json()["srm"]["p_value"] is None
    rng = np.random.default_rng(7)
    counts = rng.multinomial(2000, [0.5, 0.5])
    faked = {"v:control": int(counts[0]), "v:treatment": int(counts[1])}
    partitions = api.store.unit_partitions
    api.store.redis.hset(keys.exposure_counts("exp", partitions - 1, partitions), mapping=faked)
    body = api.call("GET", "/v1/experiments/exp/exposures").get_json()
    assert body["srm"]["p_value"] < 1e-10
