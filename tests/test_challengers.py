"""Challengers over HTTP against a real Redis: a model version enters a test against the
champion with one call, idempotently, every step audited; the lineage follows the rounds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from abtest.admin_client import AdminClient
from abtest.cli import main
from abtest.errors import Conflict
from service.monitor.clock import SettableClock
from service.monitor.runner import Monitor, MonitorSettings
from tests.conftest import simple_config
from tests.monitor_traffic import Traffic, rollout_experiment

REDIS_TOPOLOGIES = ("single", "cluster")

RANKER = {
    "key": "ranker",
    "primary_metric": "purchase:binomial",
    "guardrail_metrics": [{"name": "latency_ms:p95", "type": "quantile",
                           "higher_is_better": False, "margin": 0.05}],
    "variants": [{"key": "ranker-v1", "weight": 1, "payload": {"model": "ranker",
                                                               "model_version": "1"}},
                 {"key": "ranker-v2", "weight": 1, "payload": {"model": "ranker",
                                                               "model_version": "2"}}],
}  # fmt: skip


def _challenge(api: Any, key: str, version: Any, **extra: Any) -> Any:
    body = {"model": {"name": "ranker", "version": version}, **extra}
    return api.call("POST", f"/v1/experiments/{key}/challengers", body)


def test_a_challenger_of_a_shipped_experiment_starts_a_new_one_against_the_winner(api):
    """v3 against the shipped v2: a new running experiment (champion as control, a fresh
    seed, the parent's metrics), the parent's trail names its successor; again: no change."""
    api.create_experiment(RANKER)
    api.call("POST", "/v1/experiments/ranker/ship", {"variant": "ranker-v2"})
    body = {"payload": {"endpoint": "http://models/ranker/3"}}
    response = _challenge(api, "ranker", 3, **body)
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    assert (answer["experiment"], answer["variant"], answer["champion"], answer["created"]) == (
        "ranker.ranker-v3", "ranker-v3", "ranker-v2", True)  # fmt: skip
    config = answer["stored"]["config"]
    assert answer["stored"]["status"] == "running"
    assert config["control"] == "ranker-v2" and config["seed"] == "ranker.ranker-v3"
    assert [v["key"] for v in config["variants"]] == ["ranker-v2", "ranker-v3"]
    assert config["variants"][1]["payload"] == {
        "endpoint": "http://models/ranker/3",
        "model": "ranker",
        "model_version": "3",
    }
    assert (
        config["guardrail_metrics"]
        == api.call("GET", "/v1/experiments/ranker").get_json()["config"]["guardrail_metrics"]
    )
    child = api.call("GET", "/v1/experiments/ranker.ranker-v3/history").get_json()["history"]
    assert [h["action"] for h in child] == ["create", "start"]
    assert child[0]["parent"] == "ranker"
    assert child[0]["challenger"] == {"model": "ranker", "version": "3", "variant": "ranker-v3"}
    parent = api.call("GET", "/v1/experiments/ranker/history").get_json()["history"]
    assert parent[-1]["action"] == "challenged"
    assert parent[-1]["successor"] == "ranker.ranker-v3"
    again = _challenge(api, "ranker", "3", **body)
    assert again.status_code == 200 and again.get_json()["created"] is False
    assert api.call("GET", "/v1/experiments/ranker/history").get_json()["history"] == parent
    assert len(api.call("GET", "/v1/experiments").get_json()["experiments"]) == 2


def test_the_lineage_moves_on_round_after_round(api):
    """Registering on the root key always reaches the head: v3 while v3 runs is a 409, v4
    after v3 shipped challenges v3; an already-tested version anywhere changes nothing."""
    api.create_experiment(RANKER)
    api.call("POST", "/v1/experiments/ranker/ship", {"variant": "ranker-v2"})
    assert _challenge(api, "ranker", 3).status_code == 201
    busy = _challenge(api, "ranker", 4)
    assert busy.status_code == 409 and busy.get_json()["error"]["field"] == "experiment"
    api.call("POST", "/v1/experiments/ranker.ranker-v3/ship", {"variant": "ranker-v3"})
    fourth = _challenge(api, "ranker", 4).get_json()
    assert (fourth["experiment"], fourth["champion"]) == ("ranker.ranker-v3.ranker-v4", "ranker-v3")
    assert _challenge(api, "ranker", 2).get_json()["created"] is False  # an old round's
    chain = api.call("GET", "/v1/experiments/ranker/lineage").get_json()
    assert chain["head"] == "ranker.ranker-v3.ranker-v4"
    assert [s["key"] for s in chain["lineage"]] == [
        "ranker",
        "ranker.ranker-v3",
        "ranker.ranker-v3.ranker-v4",
    ]


def test_a_draft_gets_the_challenger_as_a_new_version_and_starts(api):
    """A draft experiment (say, the champion against a baseline) takes the challenger as a
    new variant (action challenger), then starts."""
    api.create_experiment(simple_config("slot"), start=False)
    response = api.call("POST", "/v1/experiments/slot/challengers",
                        {"model": {"name": "ranker", "version": "9"}, "variant": "v9"})  # fmt: skip
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["stored"]["status"] == "running"
    history = api.call("GET", "/v1/experiments/slot/history").get_json()["history"]
    assert [h["action"] for h in history] == ["create", "challenger", "start"]
    assert [v["key"] for v in history[1]["config"]["variants"]] == ["control", "treatment", "v9"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 400, "model"),
        ({"model": {"name": "ranker"}}, 400, "model.version"),
        ({"model": {"name": " ", "version": "1"}}, 400, "model.name"),
        ({"model": {"name": "r", "version": True}}, 400, "model.version"),
        ({"model": {"name": "", "version": "1"}}, 400, "model.name"),
        ({"model": {"name": "r", "version": "x" * 65}}, 400, "model.version"),
        ({"model": {"name": "r", "version": "1"}, "payload": [1]}, 400, "payload"),
        ({"model": {"name": "r", "version": "1"}, "variant": "Bad Key"}, 400, "variant"),
        ({"model": {"name": "r", "version": "1"}, "variant": "ranker-v2"}, 400, "variant"),
        ({"model": {"name": "r", "version": "1"}, "experiment": "ranker"}, 409, "key"),
        ({"model": {"name": "r", "version": "1"}, "extra": 1}, 400, "extra"),
    ],
)
def test_bad_registrations_are_refused_and_change_nothing(api, body, status, field):
    """Each problem is a 4xx naming its field; no experiment gains a version."""
    api.create_experiment(RANKER)
    api.call("POST", "/v1/experiments/ranker/ship", {"variant": "ranker-v2"})
    response = api.call("POST", "/v1/experiments/ranker/challengers", body)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert api.call("GET", "/v1/experiments/ranker").get_json()["version"] == 3


def test_admin_client_and_cli_register_the_same_way(api, url, monkeypatch, capsys):
    """AdminClient.challenge and ``abtest challenge`` are the same call; unknown key is 404."""
    api.create_experiment(RANKER)
    api.call("POST", "/v1/experiments/ranker/stop")
    with AdminClient(url, api.admin_key) as admin:
        answer = admin.challenge("ranker", "ranker", 3, payload={"endpoint": "e3"})
        assert answer["champion"] == "ranker-v1"  # stopped: control is the champion
        assert admin.challenge("ranker", "ranker", "3")["created"] is False
        chain = [s.experiment.key for s in admin.lineage("ranker")]
        assert chain == ["ranker", "ranker.ranker-v3"]
        with pytest.raises(Conflict):
            admin.challenge("ranker", "ranker", 4)
    monkeypatch.setenv("ABTEST_API_KEY", api.admin_key)
    monkeypatch.setenv("ABTEST_URL", url)
    assert main(["challenge", "ranker", "--model", "ranker", "--version", "3"]) == 0
    assert "already registered (nothing changed)" in capsys.readouterr().out
    assert main(["challenge", "missing", "--model", "m", "--version", "1"]) == 2
    assert "no experiment 'missing'" in capsys.readouterr().err
    assert main(["challenge", "ranker", "--model", "m", "--version", "1",
                 "--payload", "[1]"]) == 2  # fmt: skip


def test_an_interrupted_registration_is_finished_by_the_next_call(api):
    """Stopped after the head named its successor: the same version completes it (created,
    started), another version is a 409 until then; a draft left unstarted is started."""
    api.create_experiment(RANKER)
    api.call("POST", "/v1/experiments/ranker/ship", {"variant": "ranker-v2"})
    head = api.store.get_experiment("ranker")
    note = {"challenger": {"model": "ranker", "version": "3", "variant": "ranker-v3"},
            "successor": "ranker.ranker-v3"}  # fmt: skip
    api.store.write_version(head, head.experiment, key_id="job", action="challenged", note=note)
    other = _challenge(api, "ranker", 4)
    assert other.status_code == 409 and "interrupted" in other.get_json()["error"]["message"]
    assert [s["key"] for s in api.call("GET", "/v1/experiments/ranker/lineage").get_json()[
        "lineage"]] == ["ranker"]  # fmt: skip
    finished = _challenge(api, "ranker", 3)
    assert finished.status_code == 201 and finished.get_json()["stored"]["status"] == "running"
    assert [h["action"] for h in api.call("GET", "/v1/experiments/ranker/history").get_json()[
        "history"]].count("challenged") == 1  # fmt: skip
    api.create_experiment(simple_config("slot"), start=False)
    slot = api.store.get_experiment("slot")
    config = slot.experiment.to_dict()
    config["variants"].append({"key": "v9", "weight": 1,
                               "payload": {"model": "ranker", "model_version": "9"}})  # fmt: skip
    api.store.write_version(slot, type(slot.experiment).from_dict(config), key_id="job",
                            action="challenger", note={"challenger": {
                                "model": "ranker", "version": "9", "variant": "v9"}})  # fmt: skip
    resumed = api.call("POST", "/v1/experiments/slot/challengers",
                       {"model": {"name": "ranker", "version": "9"}, "variant": "v9"})  # fmt: skip
    assert resumed.status_code == 201 and resumed.get_json()["stored"]["status"] == "running"
    again = api.call("POST", "/v1/experiments/slot/challengers",
                     {"model": {"name": "ranker", "version": "9"}, "variant": "v9"})  # fmt: skip
    assert again.status_code == 200 and again.get_json()["stored"]["status"] == "running"


@pytest.mark.parametrize(
    ("version", "expected"), [(7, "7"), (7.0, "7"), ("7", "7"), (-1, None), (7.5, None)]
)
def test_a_version_number_is_a_whole_non_negative_number(api, version, expected):
    """Registries number versions: 7, 7.0 (one JSON number type) and "7" are one version;
    -1 and 7.5 are refused naming model.version, as /openapi.json states."""
    api.create_experiment(RANKER)
    api.call("POST", "/v1/experiments/ranker/ship", {"variant": "ranker-v2"})
    response = _challenge(api, "ranker", version)
    if expected is None:
        assert response.status_code == 400
        assert response.get_json()["error"]["field"] == "model.version"
    else:
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["stored"]["config"]["variants"][1]["payload"][
            "model_version"] == expected  # fmt: skip


def test_a_challenger_of_a_guarded_rollout_enters_as_a_guarded_rollout(api, redis_client):
    """The rolled-back v2 had a plan: v3 gets it (pointing at v3, the champion's and the new
    variant's weights kept), starts at step 1's share, and the monitor's first due check
    advances it like any rollout."""
    parent = rollout_experiment("ranker")
    parent["variants"] = [{"key": "v1", "weight": 1}, {"key": "v2", "weight": 3}]
    api.create_experiment(parent)
    api.call("POST", "/v1/experiments/ranker/rollout/rollback", {"reason": "errors up"})
    response = _challenge(api, "ranker", 3)
    assert response.status_code == 201, response.get_json()
    answer = response.get_json()
    key = answer["experiment"]
    assert (key, answer["champion"]) == ("ranker.ranker-v3", "v1")
    config = answer["stored"]["config"]
    assert config["rollout"]["variant"] == "ranker-v3"
    assert config["rollout"]["steps"] == [0.1, 0.5, 1]
    assert [(v["key"], v["weight"]) for v in config["variants"]] == [("v1", 1), ("ranker-v3", 3)]
    assert config["traffic"] == pytest.approx(0.1 / 0.75)
    rollout = api.call("GET", f"/v1/experiments/{key}/rollout").get_json()
    assert (rollout["status"], rollout["step"], rollout["share"]) == ("running", 1, 0.1)
    assert api.call("GET", "/v1/experiments/ranker").get_json()["status"] == "rolled_back"

    clock = SettableClock(datetime.now(UTC))  # the service's clock is the system's
    monitor = Monitor(redis_client, clock, MonitorSettings(instance="m"))
    traffic = Traffic(monitor.store, clock, experiment=key, seed=5,
                      latency={"v1": 200.0, "ranker-v3": 200.0})  # fmt: skip
    for _ in range(2):  # the plan's 2 h at a step
        traffic.hour(150)
    assert monitor.run_once().to_dict()["actions"] == {key: "advance"}
    rollout = api.call("GET", f"/v1/experiments/{key}/rollout").get_json()
    assert (rollout["step"], rollout["share"]) == (2, 0.5)
    entry = api.call("GET", f"/v1/experiments/{key}/history").get_json()["history"][-1]
    assert (entry["action"], entry["key_id"]) == ("rollout_advance", "monitor:m")


def test_a_draft_guarded_rollout_ramps_the_challenger_in_its_new_variants_place(api):
    """A guarded rollout compares one new variant with control: in a draft the challenger
    takes the plan's variant's place and weight (recorded), and starts at the first step."""
    draft = rollout_experiment("slot", steps=[0.2, 1])
    draft["variants"][1]["weight"] = 3
    draft["overrides"] = {"qa-1": "v2", "qa-2": "v1"}
    api.create_experiment(draft, start=False)
    response = api.call("POST", "/v1/experiments/slot/challengers",
                        {"model": {"name": "ranker", "version": "9"}, "variant": "v9"})  # fmt: skip
    assert response.status_code == 201, response.get_json()
    config = response.get_json()["stored"]["config"]
    assert [(v["key"], v["weight"]) for v in config["variants"]] == [("v1", 1), ("v9", 3)]
    assert config["rollout"]["variant"] == "v9" and config["overrides"] == {"qa-2": "v1"}
    assert config["traffic"] == pytest.approx(0.2 / 0.75)
    rollout = api.call("GET", "/v1/experiments/slot/rollout").get_json()
    assert (rollout["status"], rollout["step"], rollout["share"]) == ("running", 1, 0.2)
    history = api.call("GET", "/v1/experiments/slot/history").get_json()["history"]
    assert [h["action"] for h in history] == ["create", "challenger", "start"]
    assert history[1]["replaces"] == "v2"
