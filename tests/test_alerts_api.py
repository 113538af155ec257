"""The alert and webhook endpoints, and their Prometheus series, through the real app on a
real redis-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from abtest.alerts import Severity
from analysis.statistics.health import HealthSignal
from service.monitor.alerts import AlertBook
from service.monitor.webhooks import RetryPolicy, Webhooks
from tests.conftest import Api, simple_config
from tests.webhook_receiver import receiver

REDIS_TOPOLOGIES = ("single", "cluster")  # the same alerts and deliveries on Redis Cluster
T0 = datetime(2024, 5, 1, tzinfo=UTC)
SECRET = "a-secret-of-some-length"


def _signal(kind: str, subject: str = "all", severity: Severity = Severity.WARNING) -> HealthSignal:
    return HealthSignal(kind=kind, severity=severity, subject=subject, numbers={"observed": 2},
                        message=f"{kind} of {subject}")  # fmt: skip


@pytest.fixture
def book(api: Api, redis_client: Any) -> AlertBook:
    """'exp': an active critical and a resolved warning; 'other': an active warning."""
    api.create_experiment()
    api.create_experiment(simple_config("other"))
    book = AlertBook(redis_client)
    stopped = _signal("exposure_drop", severity=Severity.CRITICAL)
    book.record("exp", [stopped, _signal("metric_jump", "purchase[treatment]")], judged=(),
                now=T0)  # fmt: skip
    book.record("exp", [_signal("exposure_drop", severity=Severity.CRITICAL)],
                judged={"metric_jump"}, now=T0 + timedelta(days=1))  # fmt: skip
    book.record("other", [_signal("event_drop", "purchase")], judged=(), now=T0)
    return book


def _kinds(response: Any) -> list[tuple[str, str, str]]:
    assert response.status_code == 200, response.get_json()
    return [(a["experiment"], a["kind"], a["status"]) for a in response.get_json()["alerts"]]


def test_alerts_default_to_the_active_ones(api: Api, book: AlertBook):
    """GET /v1/alerts: every experiment's active alerts, critical first, as JSON records."""
    response = api.call("GET", "/v1/alerts")
    assert _kinds(response) == [("exp", "exposure_drop", "active"),
                                ("other", "event_drop", "active")]  # fmt: skip
    alert = response.get_json()["alerts"][0]
    assert alert["severity"] == "critical" and alert["numbers"] == {"observed": 2}
    assert alert["first_seen"] == "2024-05-01T00:00:00.000Z" and alert["checks"] == 2


def test_alert_filters(api: Api, book: AlertBook):
    """?experiment=, ?status= and ?since= narrow the list; the experiment route does too."""
    assert _kinds(api.call("GET", "/v1/alerts?experiment=exp&status=resolved")) == [
        ("exp", "metric_jump", "resolved")]  # fmt: skip
    assert len(_kinds(api.call("GET", "/v1/alerts?status=all"))) == 3
    assert _kinds(api.call("GET", "/v1/alerts?status=resolved&since=2024-05-03T00:00:00Z")) == []
    assert _kinds(api.call("GET", "/v1/alerts?status=resolved&since=2024-05-01T12:00")) == [
        ("exp", "metric_jump", "resolved")]  # fmt: skip
    response = api.call("GET", "/v1/experiments/exp/alerts?status=all")
    assert response.get_json()["experiment"] == "exp"
    assert [k for _, k, _ in _kinds(response)] == ["exposure_drop", "metric_jump"]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/v1/alerts?status=open", 400, "status"),
        ("/v1/alerts?since=yesterday", 400, "since"),
        ("/v1/alerts?experiment=Not%20A%20Key", 400, "experiment"),
        ("/v1/alerts?experiment=missing", 404, "experiment"),
        ("/v1/experiments/missing/alerts", 404, "experiment"),
        ("/v1/experiments/exp/alerts?status=closed", 400, "status"),
    ],
)
def test_bad_alert_queries_name_the_field(api: Api, book: AlertBook, path: str, status: int,
                                          field: str):  # fmt: skip
    """Each bad filter is a 4xx JSON error naming the parameter."""
    response = api.call("GET", path)
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field


def test_webhook_registration_lifecycle(api: Api):
    """POST registers (secret write-only), GET lists and reads, DELETE removes."""
    created = api.call("POST", "/v1/webhooks", {
        "url": "https://hooks.example.com/abtest", "secret": SECRET, "min_severity": "critical",
        "kinds": ["exposure_drop"], "experiments": ["exp"], "description": "pager"})  # fmt: skip
    assert created.status_code == 201
    body = created.get_json()
    assert "secret" not in body and body["min_severity"] == "critical"
    assert body["kinds"] == ["exposure_drop"] and body["experiments"] == ["exp"]
    listed = api.call("GET", "/v1/webhooks").get_json()["webhooks"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert listed[0]["deliveries"] == {"pending": 0, "delivered": 0, "failed": 0}
    assert SECRET not in str(listed)
    assert api.call("GET", f"/v1/webhooks/{body['id']}").get_json()["url"] == body["url"]
    assert api.call("DELETE", f"/v1/webhooks/{body['id']}").get_json()["id"] == body["id"]
    assert api.call("GET", f"/v1/webhooks/{body['id']}").status_code == 404
    assert api.call("DELETE", f"/v1/webhooks/{body['id']}").status_code == 404


def test_a_generated_secret_is_in_the_creation_answer_only(api: Api):
    """Without a secret, the POST answer carries the generated one; nothing else shows it."""
    body = api.call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/x"}).get_json()
    assert body["secret"].startswith("whsec_")
    assert body["secret"] not in str(api.call("GET", "/v1/webhooks").get_json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": 7}, "url"),
        ({"url": "mailto:ops@example.com"}, "url"),
        ({"url": "https://x.example", "secret": "short"}, "secret"),
        ({"url": "https://x.example", "secret": 12345678901234567}, "secret"),
        ({"url": "https://x.example", "min_severity": "info"}, "min_severity"),
        ({"url": "https://x.example", "kinds": "exposure_drop"}, "kinds"),
        ({"url": "https://x.example", "kinds": [1]}, "kinds[0]"),
        ({"url": "https://x.example", "experiments": ["A B"]}, "experiments[0]"),
        ({"url": "https://x.example", "description": ["x"]}, "description"),
        ({"url": "https://x.example", "colour": "red"}, "colour"),
    ],
)
def test_bad_webhook_bodies_name_the_field(api: Api, body: dict[str, Any], field: str):
    """Each bad registration is a 400 naming its field, and nothing is stored."""
    response = api.call("POST", "/v1/webhooks", body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["field"] == field
    assert api.call("GET", "/v1/webhooks").get_json()["webhooks"] == []


def test_deliveries_show_failures(api: Api, book: AlertBook, redis_client: Any):
    """A delivery refused by the receiver is listed with its status and error, and counted."""
    with receiver(statuses=[500]) as sink:
        hook = api.call("POST", "/v1/webhooks", {"url": sink.url, "secret": SECRET}).get_json()
        hooks = Webhooks(redis_client, policy=RetryPolicy(max_attempts=1))
        changes = book.record("exp", [_signal("sample_ratio_mismatch")], judged=(), now=T0)
        hooks.notify(changes, now=T0)
        assert hooks.send_due() == 1
    response = api.call("GET", f"/v1/webhooks/{hook['id']}/deliveries")
    (delivery,) = response.get_json()["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("failed", 1, 500)
    assert "HTTP 500" in delivery["last_error"]
    listed = api.call("GET", "/v1/webhooks").get_json()["webhooks"][0]
    assert listed["deliveries"]["failed"] == 1
    assert api.call("GET", f"/v1/webhooks/{hook['id']}/deliveries?limit=0").status_code == 400
    assert api.call("GET", "/v1/webhooks/wmissing/deliveries").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/alerts"),
        ("GET", "/v1/experiments/exp/alerts"),
        ("GET", "/v1/webhooks"),
        ("POST", "/v1/webhooks"),
        ("DELETE", "/v1/webhooks/w1"),
    ],
)
def test_alerts_and_webhooks_need_an_admin_key(api: Api, method: str, path: str):
    """An sdk key is refused (403) on every alert and webhook endpoint."""
    api.create_experiment()
    assert api.call(method, path, {"url": "https://x.example"}, role="sdk").status_code == 403


def test_metrics_expose_active_alerts_and_deliveries(api: Api, book: AlertBook,
                                                     redis_client: Any, client: Any):  # fmt: skip
    """/metrics reads the alert book and the delivery logs from Redis at scrape time."""
    hook = api.call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/x", "secret": SECRET})
    Webhooks(redis_client).notify(
        book.record("other", [_signal("missing_events", "purchase[control]", Severity.CRITICAL)],
                    judged=(), now=T0), now=T0)  # fmt: skip
    text = client.get("/metrics").get_data(as_text=True)
    assert "# TYPE abtest_alerts_active gauge" in text
    gauge = "abtest_alerts_active"
    assert f'{gauge}{{experiment="exp",kind="exposure_drop",severity="critical"}} 1.0' in text
    assert f'{gauge}{{experiment="other",kind="event_drop",severity="warning"}} 1.0' in text
    assert 'kind="metric_jump"' not in text  # resolved
    webhook = hook.get_json()["id"]
    assert f'abtest_webhook_deliveries{{status="pending",webhook="{webhook}"}} 1.0' in text
    assert f'abtest_webhook_deliveries{{status="failed",webhook="{webhook}"}} 0.0' in text
