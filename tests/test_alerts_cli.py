"""`abtest alerts`, `abtest webhooks ...` and the `AdminClient`'s alert and webhook methods,
against the real app served over HTTP on a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from abtest.admin_client import AdminClient
from abtest.alerts import Severity
from abtest.cli import main
from abtest.errors import Forbidden, InvalidInput, NotFound
from analysis.statistics.health import HealthSignal
from service.monitor.alerts import AlertBook
from service.monitor.webhooks import RetryPolicy, Webhooks
from tests.conftest import Api, simple_config
from tests.test_client import serve
from tests.webhook_receiver import receiver

T0 = datetime(2024, 5, 1, tzinfo=UTC)
SECRET = "a-secret-of-some-length"


@pytest.fixture
def service(app: Any, api: Api, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app on a real loopback port, with ABTEST_URL and ABTEST_API_KEY set."""
    server, thread = serve(app)
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("ABTEST_URL", url)
    monkeypatch.setenv("ABTEST_API_KEY", api.admin_key)
    monkeypatch.delenv("ABTEST_WEBHOOK_SECRET", raising=False)
    yield url
    server.shutdown()
    thread.join()


@pytest.fixture
def book(api: Api, redis_client: Any) -> AlertBook:
    """'exp' with an active critical alert and a resolved one."""
    api.create_experiment()
    api.create_experiment(simple_config("quiet"))
    book = AlertBook(redis_client)
    stopped = HealthSignal(kind="exposure_drop", severity=Severity.CRITICAL, subject="all",
                           numbers={"observed": 0}, message="exposures stopped")  # fmt: skip
    jump = HealthSignal(kind="metric_jump", severity=Severity.WARNING, subject="purchase[v2]",
                        numbers={"z": 6.0}, message="purchase jumped +40%")  # fmt: skip
    book.record("exp", [stopped, jump], judged=(), now=T0)
    book.record("exp", [stopped], judged={"metric_jump"}, now=T0 + timedelta(hours=2))
    return book


def test_abtest_alerts_prints_active_then_all(service: str, book: AlertBook, capsys: Any):
    """`abtest alerts` lists active alerts; --all adds resolved ones; --json is the API's."""
    assert main(["alerts"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CRITICAL  exp  exposure_drop (all)  since 2024-05-01T00:00:00.000Z")
    assert "exposures stopped" in out and "metric_jump" not in out
    assert main(["alerts", "--all", "--experiment", "exp"]) == 0
    out = capsys.readouterr().out
    assert "resolved  exp  metric_jump (purchase[v2])  resolved 2024-05-01T02:00:00.000Z" in out
    assert main(["alerts", "--experiment", "quiet"]) == 0
    assert capsys.readouterr().out.strip() == "no active alerts"
    assert main(["alerts", "--json", "--since", "2024-04-30T00:00:00Z"]) == 0
    assert [a["kind"] for a in json.loads(capsys.readouterr().out)["alerts"]] == ["exposure_drop"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["alerts", "--experiment", "missing"], "no experiment 'missing'"),
        (["alerts", "--since", "last week"], "since: an ISO 8601 time"),
        (["webhooks", "add", "ftp://example.com"], "is not an http:// or https:// URL"),
        (["webhooks", "remove", "wnothere"], "no webhook 'wnothere'"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(service: str, book: AlertBook, capsys: Any,
                                                  argv: list[str], message: str):  # fmt: skip
    """Bad input is one line on stderr naming the problem, exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("abtest: error: ") and message in err and err.count("\n") == 1


def test_abtest_webhooks_add_list_deliveries_remove(service: str, book: AlertBook,
                                                    redis_client: Any, capsys: Any,
                                                    monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    """add (secret from the environment), list with counts, deliveries with the error,
    remove."""
    monkeypatch.setenv("ABTEST_WEBHOOK_SECRET", SECRET)
    with receiver(statuses=[503]) as sink:
        assert main(["webhooks", "add", sink.url, "--min-severity", "critical",
                     "--kind", "sample_ratio_mismatch", "--description", "pager"]) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert "secret" not in out and f"sends critical and above to {sink.url}" in out
        hook_id = out.split(":")[0]
        hooks = Webhooks(redis_client, policy=RetryPolicy(max_attempts=1))
        signal = HealthSignal(kind="sample_ratio_mismatch", severity=Severity.CRITICAL,
                              subject="all", numbers={}, message="srm")  # fmt: skip
        hooks.notify(book.record("exp", [signal], judged=(), now=T0), now=T0)
        assert hooks.send_due() == 1
        (got,) = sink.received
    assert main(["webhooks", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{hook_id}  {sink.url}  critical+; kinds sample_ratio_mismatch" in out
    assert "0 delivered, 1 failed, 0 pending" in out
    assert main(["webhooks", "deliveries", hook_id]) == 0
    out = capsys.readouterr().out
    assert "alert.raised  exp  failed  1 attempt(s)" in out and "HTTP 503" in out
    assert main(["webhooks", "remove", hook_id]) == 0
    assert capsys.readouterr().out.startswith(f"removed {hook_id}")
    assert main(["webhooks", "list"]) == 0
    assert capsys.readouterr().out.strip() == "no webhooks"
    assert json.loads(got.body)["alert"]["kind"] == "sample_ratio_mismatch"


def test_webhooks_add_prints_a_generated_secret_once(service: str, capsys: Any):
    """Without $ABTEST_WEBHOOK_SECRET the service generates the secret; add prints it."""
    assert main(["webhooks", "add", "https://hooks.example.com/x"]) == 0
    out = capsys.readouterr().out
    assert "secret (shown once" in out and "whsec_" in out
    assert main(["webhooks", "list", "--json"]) == 0
    assert "whsec_" not in capsys.readouterr().out


def test_admin_client_alerts_and_webhooks(service: str, api: Api, book: AlertBook):
    """The AdminClient reads alerts as records and manages webhooks with typed errors."""
    with AdminClient(service, api.admin_key) as admin:
        (active,) = admin.alerts()
        assert (active.kind, active.severity, active.experiment) == (
            "exposure_drop", Severity.CRITICAL, "exp")  # fmt: skip
        assert [a.kind for a in admin.experiment_alerts("exp", status="all")] == [
            "exposure_drop", "metric_jump"]  # fmt: skip
        assert admin.alerts(status="resolved", since=T0 + timedelta(days=1)) == []
        with pytest.raises(NotFound):
            admin.experiment_alerts("missing")
        with pytest.raises(InvalidInput) as caught:
            admin.alerts(status="open")
        assert caught.value.field == "status"
        webhook, secret = admin.create_webhook("https://hooks.example.com/x", secret=SECRET,
                                               kinds=["exposure_drop"])  # fmt: skip
        assert secret is None and webhook.kinds == ("exposure_drop",)
        _, generated = admin.create_webhook("https://hooks.example.com/y")
        assert generated is not None and generated.startswith("whsec_")
        assert [w.url for w in admin.list_webhooks()] == [
            "https://hooks.example.com/x", "https://hooks.example.com/y"]  # fmt: skip
        assert admin.get_webhook(webhook.id) == webhook
        assert admin.webhook_deliveries(webhook.id) == []
        assert admin.delete_webhook(webhook.id) == webhook
        with pytest.raises(NotFound):
            admin.get_webhook(webhook.id)
    with AdminClient(service, api.sdk_key) as app, pytest.raises(Forbidden):
        app.alerts()
