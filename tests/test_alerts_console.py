"""The console's alerts page and the experiment page's active alerts, through the real app
and a real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from abtest.alerts import Severity
from analysis.statistics.health import HealthSignal
from service.monitor.alerts import AlertBook
from service.monitor.webhooks import RetryPolicy, Webhooks
from tests.conftest import Api, simple_config
from tests.test_console import Console
from tests.webhook_receiver import receiver

T0 = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture
def console(client: Any, api: Api) -> Console:
    """A console session signed in with the admin key."""
    session = Console(client)
    assert session.login(api.admin_key).status_code == 302
    return session


def _signal(kind: str, subject: str, severity: Severity) -> HealthSignal:
    return HealthSignal(kind=kind, severity=severity, subject=subject, numbers={"z": -7.5},
                        message=f"{subject}: something <b>odd</b>")  # fmt: skip


@pytest.fixture
def alerts(api: Api, redis_client: Any) -> AlertBook:
    """Two experiments: 'exp' with a critical and a warning alert, 'other' with a resolved one."""
    api.create_experiment()
    api.create_experiment(simple_config("other"))
    book = AlertBook(redis_client)
    book.record("exp", [_signal("exposure_drop", "all", Severity.CRITICAL),
                        _signal("metric_jump", "purchase[treatment]", Severity.WARNING)],
                judged=(), now=T0)  # fmt: skip
    book.record("other", [_signal("missing_events", "purchase[control]", Severity.CRITICAL)],
                judged=(), now=T0)  # fmt: skip
    book.record("other", [], judged={"missing_events"}, now=T0 + timedelta(hours=3))
    return book


def test_the_alerts_page_lists_active_alerts_by_default(console: Console, alerts: AlertBook):
    """Active alerts of every experiment, critical first, with message, times and numbers."""
    page = console.client.get("/alerts")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.index('data-kind="exposure_drop"') < html.index('data-kind="metric_jump"')
    assert "missing_events" not in html
    assert "something &lt;b&gt;odd&lt;/b&gt;" in html  # escaped, never markup
    assert "2024-05-01T00:00:00.000Z" in html and '"z": -7.5' in html


def test_the_alerts_page_filters_by_experiment_and_status(console: Console, alerts: AlertBook):
    """?experiment= and ?status= narrow the list; resolved alerts show when they ended."""
    html = console.client.get("/alerts?experiment=other&status=all").get_data(as_text=True)
    assert 'data-kind="missing_events" data-status="resolved"' in html
    assert "exposure_drop" not in html and "resolved 2024-05-01T03:00:00.000Z" in html
    html = console.client.get("/alerts?experiment=other").get_data(as_text=True)
    assert 'id="no-alerts"' in html


@pytest.mark.parametrize("query", ["status=open", "experiment=Not%20A%20Key"])
def test_a_bad_filter_is_a_400_page(console: Console, alerts: AlertBook, query: str):
    """An unknown status or a malformed experiment key is refused, naming the problem."""
    response = console.client.get(f"/alerts?{query}")
    assert response.status_code == 400
    assert "invalid input" in response.get_data(as_text=True)


def test_delivery_failures_are_on_the_alerts_page(console: Console, alerts: AlertBook,
                                                  redis_client: Any):  # fmt: skip
    """A webhook whose receiver answers 500 shows its failed delivery and the error."""
    hooks = Webhooks(redis_client, policy=RetryPolicy(max_attempts=1))
    with receiver(statuses=[500]) as sink:
        webhook, _ = hooks.create_webhook(sink.url, description="on-call channel")
        changes = alerts.record("exp", [_signal("sample_ratio_mismatch", "all",
                                                Severity.CRITICAL)], judged=(), now=T0)  # fmt: skip
        (queued,) = hooks.notify(changes, now=T0)
        assert hooks.send_due() == 1
    html = console.client.get("/alerts").get_data(as_text=True)
    assert f'data-delivery="{queued.id}"' in html and "HTTP 500" in html
    assert webhook.id in html and "on-call channel" in html


def test_the_experiment_page_shows_its_active_alerts(console: Console, alerts: AlertBook):
    """The experiment page lists its own active alerts and links to its full history."""
    html = console.client.get("/experiments/exp").get_data(as_text=True)
    section = html[html.index('id="alerts"') : html.index("Verdict")]
    assert 'data-kind="exposure_drop"' in section and 'data-kind="metric_jump"' in section
    assert "/alerts?experiment=exp&amp;status=all" in section
    html = console.client.get("/experiments/other").get_data(as_text=True)
    assert "No active alert." in html


def test_the_alerts_page_needs_a_session(client: Any, alerts: AlertBook):
    """Without signing in, the alerts page redirects to the sign-in form."""
    response = client.get("/alerts")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
