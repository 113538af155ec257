"""POST /v1/assign and GET /v1/assignments over the real app and Redis."""

from __future__ import annotations

import pytest

from abtest.assignment import assign as assign_pure
from abtest.experiment import Experiment
from tests.conftest import example_config, simple_config
from tests.stored import exposure_rows

REDIS_TOPOLOGIES = ("single", "cluster")


def test_assign_answers_the_documented_fields(api, redis_client):
    """The answer has exactly the documented fields, and the exposure is logged once."""
    api.create_experiment()
    body = api.assign("exp", "user-1")
    assert list(body) == ["experiment", "unit_id", "variant", "payload", "in_experiment",
                          "reason", "config_version"]  # fmt: skip
    assert body["experiment"] == "exp"
    assert body["unit_id"] == "user-1"
    assert body["reason"] == "assigned"
    assert body["in_experiment"] is True
    assert body["config_version"] == 2
    assert (
        body["payload"]
        == {"control": {"color": "blue"}, "treatment": {"color": "green"}}[body["variant"]]
    )
    assert api.assign("exp", "user-1") == body
    assert len(exposure_rows(redis_client, "exp")) == 1


def test_assign_matches_the_pure_function_on_the_example(api, redis_client):
    """Every reason of examples/ranker-v2.json comes out as the pure function says."""
    api.create_experiment(example_config())
    experiment = Experiment.from_dict(example_config())
    cases = [("qa-alice", {}), ("u1", {"country": "US", "app_version": 500})]
    cases += [(f"u{i}", {"country": "DE", "app_version": 500}) for i in range(60)]
    reasons = set()
    for unit, attributes in cases:
        body = api.assign("ranker-v2", unit, attributes)
        expected = assign_pure(experiment, unit, attributes)
        assert (body["variant"], body["reason"]) == (expected.variant, expected.reason.value)
        reasons.add(body["reason"])
    assert reasons == {"forced", "not_targeted", "layer_excluded", "not_in_traffic", "assigned"}
    exposed = {e["unit_id"] for e in exposure_rows(redis_client, "ranker-v2")}
    assigned = {u for u, a in cases if assign_pure(experiment, u, a).reason.value == "assigned"}
    assert exposed == assigned


def test_batch_assign_answers_in_order_like_single_calls(api, redis_client):
    """POST /v1/assign/batch: one answer per request, in order, each as /v1/assign gives it."""
    api.create_experiment()
    api.create_experiment(simple_config("other"))
    requests = [{"experiment": "exp", "unit_id": f"u{i}"} for i in range(30)]
    requests += [{"experiment": "other", "unit_id": "u1", "attributes": {"country": "DE"}},
                 {"experiment": "exp", "unit_id": "u2"}]  # fmt: skip
    response = api.call("POST", "/v1/assign/batch", {"requests": requests}, role="sdk")
    assert response.status_code == 200, response.get_json()
    answers = response.get_json()["assignments"]
    singles = [api.assign(r["experiment"], r["unit_id"], r.get("attributes")) for r in requests]
    assert answers == singles
    assert len(exposure_rows(redis_client, "exp")) == 30
    assert len(exposure_rows(redis_client, "other")) == 1


def test_sticky_across_a_weight_change_over_http(api):
    """PUT new weights: already-assigned units keep their variant, config_version moves on."""
    api.create_experiment()
    before = {f"u{i}": api.assign("exp", f"u{i}")["variant"] for i in range(100)}
    heavy = simple_config(
        variants=[{"key": "control", "weight": 1}, {"key": "treatment", "weight": 9}]
    )
    assert api.call("PUT", "/v1/experiments/exp", heavy).status_code == 200
    after = {u: api.assign("exp", u) for u in before}
    assert {u: a["variant"] for u, a in after.items()} == before
    assert {a["config_version"] for a in after.values()} == {3}


def test_shipped_and_forced_units_get_variants_without_exposure(api, redis_client):
    """Shipped experiments give everyone the winner; none of it is an exposure."""
    api.create_experiment(simple_config(overrides={"qa": "treatment"}))
    assert api.assign("exp", "qa")["reason"] == "forced"
    assert api.call("POST", "/v1/experiments/exp/ship", {"variant": "control"}).status_code == 200
    body = api.assign("exp", "anyone")
    assert (body["variant"], body["reason"], body["in_experiment"]) == ("control", "shipped", False)
    assert exposure_rows(redis_client, "exp") == []


def test_assignments_lists_every_live_experiment(api, client):
    """GET /v1/assignments answers for running and shipped experiments, reading attr.* params."""
    api.create_experiment(simple_config("a"))
    api.create_experiment(
        simple_config("b", targeting=[{"attribute": "age", "op": "gte", "value": 18}])
    )
    api.create_experiment(simple_config("c"), start=False)
    response = client.get("/v1/assignments?unit_id=u1&attr.age=30", headers=api.headers("sdk"))
    assert response.status_code == 200
    body = response.get_json()
    assert [a["experiment"] for a in body["assignments"]] == ["a", "b"]
    assert all(a["reason"] == "assigned" for a in body["assignments"])
    assert body["assignments"][0] == api.assign("a", "u1")
    minors = client.get("/v1/assignments?unit_id=u2&attr.age=12", headers=api.headers("sdk"))
    assert [a["reason"] for a in minors.get_json()["assignments"]] == ["assigned", "not_targeted"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "unit_id"), ("unit_id=", "unit_id"), ("unit_id=u1&country=DE", "country"),
     ("unit_id=" + "x" * 257, "unit_id"), ("unit_id=u1&attr.c=%22%5Cud800%22", "attr.c"),
     ("unit_id=u1&attr.c=NaN", "attr.c"), ("unit_id=u1&attr.c=[1e999]", "attr.c[0]")],
)  # fmt: skip
def test_assignments_bad_query(api, client, query, field):
    """Bad query strings are 400 with the field named."""
    response = client.get(f"/v1/assignments?{query}", headers=api.headers("sdk"))
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
