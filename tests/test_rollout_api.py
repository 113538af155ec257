"""The rollout over HTTP: ``GET /v1/experiments/{key}/rollout`` and the pause, resume and
rollback actions, their errors, the AdminClient methods and ``abtest rollout``."""

from __future__ import annotations

import pytest

from abtest.admin_client import AdminClient
from abtest.cli import main
from abtest.errors import Conflict
from tests.conftest import simple_config
from tests.monitor_traffic import rollout_experiment

KEY = "ranker-v3"
BASE = f"/v1/experiments/{KEY}/rollout"


@pytest.fixture
def rolling(api):
    """A running guarded rollout."""
    api.create_experiment(rollout_experiment())
    return api


def test_status_shows_the_plan_and_where_the_rollout_stands(rolling):
    """Step 1 of 3 after the start, each step with its traffic and state."""
    doc = rolling.call("GET", BASE).get_json()
    assert (doc["status"], doc["step"], doc["steps_total"], doc["share"]) == ("running", 1, 3, 0.1)
    assert [s["state"] for s in doc["steps"]] == ["current", "pending", "pending"]
    assert [s["traffic"] for s in doc["steps"]] == pytest.approx([0.2, 1.0, 1.0])
    assert doc["steps"][0]["entered_at"] is not None
    assert doc["plan"]["guardrails"] == ["latency_ms", "error"]
    assert doc["checks"] == [] and [a["action"] for a in doc["actions"]] == ["start"]


def test_pause_resume_and_roll_back_are_audited_with_the_key(rolling):
    """Each action answers the rollout after it; the audit trail names the caller's key."""
    paused = rolling.call("POST", f"{BASE}/pause", {"reason": "on-call busy"}).get_json()
    assert (paused["status"], paused["paused"], paused["paused_reason"]) == (
        "paused", True, "on-call busy")  # fmt: skip
    assert rolling.call("POST", f"{BASE}/resume").get_json()["status"] == "running"
    done = rolling.call("POST", f"{BASE}/rollback", {"reason": "errors up"}).get_json()
    assert (done["status"], done["share"]) == ("rolled_back", 0.0)
    assert [s["state"] for s in done["steps"]] == ["rolled back", "not reached", "not reached"]
    admin = next(k.id for k in rolling.store.list_api_keys() if k.name == "tests")
    entries = rolling.store.history(KEY)[-3:]
    assert [(e["action"], e["key_id"]) for e in entries] == [
        ("rollout_pause", admin), ("rollout_resume", admin), ("rollback", admin)]  # fmt: skip
    assert rolling.call("POST", "/v1/assign", {"experiment": KEY, "unit_id": "u1"},
                        role="sdk").get_json()["reason"] == "rolled_back"  # fmt: skip


@pytest.mark.parametrize(
    ("call", "status", "field"),
    [
        (("GET", f"{BASE}?limit=0", None), 400, "limit"),
        (("GET", f"{BASE}?limit=x", None), 400, "limit"),
        (("GET", "/v1/experiments/nope/rollout", None), 404, "experiment"),
        (("GET", "/v1/experiments/exp/rollout", None), 409, "rollout"),
        (("GET", "/v1/experiments/Bad!/rollout", None), 400, "key"),
        (("POST", f"{BASE}/pause", {"why": "x"}), 400, "why"),
        (("POST", f"{BASE}/pause", {"reason": 5}), 400, "reason"),
        (("POST", f"{BASE}/pause", {"reason": "x" * 2001}), 400, "reason"),
        (("POST", f"{BASE}/resume", None), 409, "rollout"),
        (("POST", "/v1/experiments/exp/rollout/rollback", None), 409, "rollout"),
        (("POST", f"{BASE}/restart", None), 404, None),
    ],
)
def test_each_bad_request_is_a_clear_4xx(rolling, call, status, field):
    """Bad input, an unknown or plan-less experiment, an action out of turn: 4xx naming it."""
    rolling.create_experiment(simple_config())
    response = rolling.call(*call)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["field"] == field


def test_only_admin_keys_see_or_act(rolling):
    """An sdk key gets 403 on the rollout endpoints."""
    assert rolling.call("GET", BASE, role="sdk").status_code == 403
    assert rolling.call("POST", f"{BASE}/pause", role="sdk").status_code == 403


def test_admin_client_and_cli_over_http(rolling, url, capsys, monkeypatch):
    """AdminClient methods and ``abtest rollout`` reach the same endpoints."""
    with AdminClient(url, rolling.admin_key) as admin:
        assert admin.rollout(KEY, limit=1)["step"] == 1
        assert admin.pause_rollout(KEY, reason="look")["paused"] is True
        with pytest.raises(Conflict):
            admin.pause_rollout(KEY)
        assert admin.resume_rollout(KEY)["paused"] is False
    monkeypatch.setenv("ABTEST_URL", url)
    monkeypatch.setenv("ABTEST_API_KEY", rolling.admin_key)
    assert main(["rollout", "status", KEY]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == f"{KEY}: running, step 1 of 3 (10.0% of units get v2; traffic 20.0%) "
        "(config version 4)"
    )
    assert out[1].startswith("  step 1   10.0%  current")
    assert main(["rollout", "rollback", KEY, "--yes", "--reason", "cli"]) == 0
    assert capsys.readouterr().out.startswith(f"{KEY}: rolled back, step 1 of 3 (0.0% of units")
    assert main(["rollout", "rollback", KEY, "--yes"]) == 2
    assert "cannot roll back a rolled_back experiment" in capsys.readouterr().err


def test_pushing_the_rollout_file_again_leaves_the_traffic_to_the_rollout(
    rolling, url, capsys, monkeypatch, tmp_path
):
    """``abtest push`` of the plan's file while it runs stores a version and keeps the
    step's traffic (the file's traffic belongs to the rollout)."""
    import json

    path = tmp_path / "rollout.json"
    path.write_text(json.dumps({**rollout_experiment(), "description": "v2 of the text"}))
    monkeypatch.setenv("ABTEST_URL", url)
    monkeypatch.setenv("ABTEST_API_KEY", rolling.admin_key)
    assert main(["push", str(path)]) == 0
    assert capsys.readouterr().out == f"{KEY}: running (config version 3)\n"
    stored = rolling.store.get_experiment(KEY).experiment
    assert (stored.description, stored.traffic) == ("v2 of the text", pytest.approx(0.2))
