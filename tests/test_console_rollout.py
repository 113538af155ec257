"""The console's rollout section: plan, steps, checks and the timeline chart, and the pause,
resume and roll back actions behind their confirmation pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from abtest.rollout_store import Rollouts
from analysis.report.rollout_figures import rollout_figure
from service.monitor.clock import SettableClock
from service.monitor.runner import Monitor, MonitorSettings
from tests.conftest import Api
from tests.monitor_traffic import Traffic, rollout_experiment
from tests.rollout_simulation import ERROR, LATENCY
from tests.test_console import Console

KEY = "ranker-v3"


@pytest.fixture
def app(redis_url: str, redis_client: Any, tmp_path: Path) -> Any:
    """The real app, exporting into a temporary directory."""
    from service import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url,
                       "EXPORT_DIR": str(tmp_path / "export")})  # fmt: skip


@pytest.fixture
def console(client: Any, api: Api) -> Console:
    """A console session signed in with the admin key of `api`."""
    session = Console(client)
    assert session.login(api.admin_key).status_code == 302
    return session


def _rolled(api: Any, redis_client: Any, hours: int) -> None:
    api.call("POST", "/v1/experiments", rollout_experiment())
    api.call("POST", f"/v1/experiments/{KEY}/start")
    clock = SettableClock(datetime.now(UTC))
    monitor = Monitor(redis_client, clock, MonitorSettings(instance="m"))
    traffic = Traffic(monitor.store, clock, seed=3)
    for _ in range(hours):
        traffic.hour(100)
        monitor.run_once()


def test_the_page_shows_the_plan_the_steps_and_every_check(console, api, redis_client):
    """Status, a row per step, a row per check (newest first), the chart, the actions."""
    _rolled(api, redis_client, 3)
    page = console.client.get(f"/experiments/{KEY}").get_data(as_text=True)
    assert 'id="rollout"' in page
    assert re.search(r'id="rollout-status">.*step <strong>2</strong> of 3', page, re.S)
    states = re.findall(r'<tr data-state="([^"]+)">', page)
    assert states == ["passed", "current", "pending"]
    actions = re.findall(r'<tr data-action="([a-z_]+)">', page)
    assert len(actions) == 3 and "advance" in actions
    assert "Guardrails: cumulative effect of the new variant per day" in page
    assert 'id="action-pause"' in page and 'id="action-rollback"' in page
    assert 'id="action-resume"' not in page


def test_pause_resume_and_roll_back_from_the_console(console, api, redis_client):
    """Each action goes through its confirmation page, with a reason, into the audit trail."""
    _rolled(api, redis_client, 1)
    assert console.act(KEY, "pause", reason="checking a dashboard").status_code == 303
    page = console.client.get(f"/experiments/{KEY}").get_data(as_text=True)
    assert "Paused by" in page and "checking a dashboard" in page
    assert 'id="action-resume"' in page and 'id="action-pause"' not in page
    assert console.act(KEY, "resume").status_code == 303
    assert console.act(KEY, "rollback", reason="p99 alert").status_code == 303
    history = api.store.history(KEY)
    assert [h["action"] for h in history[-3:]] == ["rollout_pause", "rollout_resume", "rollback"]
    assert history[-1]["reason"] == "p99 alert"
    assert Rollouts(api.store).state(KEY).paused is False
    page = console.client.get(f"/experiments/{KEY}").get_data(as_text=True)
    assert 'class="badge status-rolled_back"' in page
    assert 'id="action-rollback"' not in page


def test_an_action_needs_its_confirmation(console, api, redis_client):
    """A POST without the confirmation's fields changes nothing."""
    _rolled(api, redis_client, 1)
    token = console.token(f"/experiments/{KEY}/rollback")
    response = console.client.post(f"/experiments/{KEY}/rollback", data={"csrf_token": token})
    assert response.status_code == 400
    assert api.store.get_experiment(KEY).experiment.status.value == "running"


def test_the_figure_draws_each_guardrail_and_says_when_there_is_no_look():
    """A panel per guardrail; one without a daily look says so instead of failing."""
    series = {"latency_ms": [
        {"day": "2026-03-02", "estimate": 3.0, "se": 2.0, "control_mean": 200.0},
        {"day": "2026-03-03", "estimate": 1.0, "se": 1.0, "control_mean": 201.0}]}  # fmt: skip
    figure = rollout_figure(series, [LATENCY, ERROR], alpha=0.05,
                            events=[("2026-03-03T10:00:00", "advance")])  # fmt: skip
    first, second = figure.axes
    assert len(first.lines) >= 3  # the effect, 0, the planned regression (and the event)
    assert any("no daily look yet" in t.get_text() for t in second.texts)
