"""The monitor, the health checks, the alert book and the webhooks together, on a real
Redis with a controllable clock and a real local webhook receiver: an automatic rollback is
an alert delivered to a webhook; a running experiment whose client breaks raises an
exposure alert that resolves when traffic returns; after the ship the units' events keep
being watched; the alerts are deduplicated and kept with their history."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from abtest.alerts import Severity
from abtest.events import Event
from abtest.experiment import Status
from abtest.store import Store
from abtest.webhook_signature import verify_signature
from service.monitor.alerts import AlertBook
from service.monitor.clock import to_us
from service.monitor.runner import Monitor, MonitorSettings
from service.monitor.webhooks import Webhooks
from tests.monitor_traffic import Traffic, clocked_store, rollout_experiment
from tests.webhook_receiver import receiver

SECRET = "s" * 32


@pytest.fixture
def store(redis_client, clock) -> Store:
    """A store dated by the test's clock."""
    return clocked_store(redis_client, clock)


def test_an_automatic_rollback_is_an_alert_delivered_to_a_webhook(store, redis_client, clock):
    """Latency +30% on the new variant: the monitor rolls it back, raises a critical
    ``rollout_rolled_back`` alert with the decision's numbers, and a one-shot drain
    delivers it, signed, to the receiver."""
    store.create_experiment(rollout_experiment(), key_id="rm")
    store.start_experiment("ranker-v3", key_id="rm")
    mon = Monitor(redis_client, clock, MonitorSettings(instance="m1"))
    traffic = Traffic(store, clock, latency={"v1": 200.0, "v2": 260.0})
    with receiver() as sink:
        hooks = Webhooks(redis_client)
        hooks.create_webhook(sink.url, secret=SECRET, min_severity=Severity.CRITICAL)
        for _ in range(10):
            traffic.hour(200)
            mon.run_once()
            if store.get_experiment("ranker-v3").experiment.status is Status.ROLLED_BACK:
                break
        assert store.get_experiment("ranker-v3").experiment.status is Status.ROLLED_BACK
        (alert,) = [a for a in AlertBook(redis_client).active("ranker-v3")
                    if a.kind == "rollout_rolled_back"]  # fmt: skip
        assert alert.severity.value == "critical" and alert.subject == "v2"
        assert alert.numbers["guardrails"][0]["metric"] == "latency_ms"
        assert "rolled back at step" in alert.message
        assert mon.deliver(seconds=5) >= 1
        (got,) = sink.wait_for(1)
    body = json.loads(got.body)
    assert body["event"] == "alert.raised" and body["alert"]["id"] == alert.id
    assert body["text"].startswith("[CRITICAL] ranker-v3: rollout_rolled_back")
    assert verify_signature(SECRET, got.body, got.headers["x-abtest-timestamp"],
                            got.headers["x-abtest-signature"])  # fmt: skip
    # Checked again while rolled back: the alert stays, refreshed by no one, not doubled.
    clock.set(clock.now() + timedelta(days=1))
    mon.run_once()
    assert [a.id for a in AlertBook(redis_client).active("ranker-v3")
            if a.kind == "rollout_rolled_back"] == [alert.id]  # fmt: skip


def _plain_experiment() -> dict:
    config = rollout_experiment("feed-v2")
    del config["rollout"]
    return config


def _day(traffic: Traffic, mon: Monitor, units_per_hour: int) -> list[str]:
    """A day of traffic (none with 0), then a check; the active alerts' kind(subject)."""
    if units_per_hour:
        for _ in range(24):
            traffic.hour(units_per_hour)
    else:
        traffic.clock.set(traffic.clock.now() + timedelta(days=1))
    report = mon.run_once()
    assert report.errors == ()
    return sorted(f"{a.kind}({a.subject})" for a in AlertBook(mon.redis).active("feed-v2"))


def _late_events(store: Store, clock, units: int, day: int) -> None:
    """A day of latency events from units exposed before the ship (no new exposure)."""
    start = clock.now()
    events = [Event(f"late-{day}-{i}", f"feed-v2-user-{i}", "latency_ms", 200.0,
                    to_us(start + timedelta(hours=24) * (i + 0.5) / units))
              for i in range(units)]  # fmt: skip
    store.record_events(events)
    clock.set(start + timedelta(days=1))


@pytest.mark.slow
def test_health_alerts_are_raised_resolved_and_kept_both_before_and_after_the_ship(
    store, redis_client, clock
):
    """Nine steady days raise nothing; a day without exposures (a broken client) raises
    ``exposure_drop`` once, delivered; the day traffic returns resolves it into the
    history.  After the ship the exposure-side alerts do not apply, and the units' events
    stopping raises ``event_drop``."""
    store.create_experiment(_plain_experiment(), key_id="rm")
    store.start_experiment("feed-v2", key_id="rm")
    mon = Monitor(redis_client, clock, MonitorSettings(instance="m1", interval_seconds=3600,
                                                       observation_hours=0.5))  # fmt: skip
    traffic = Traffic(store, clock, experiment="feed-v2", seed=3)
    book = AlertBook(redis_client)
    with receiver() as sink:
        Webhooks(redis_client).create_webhook(sink.url, secret=SECRET)
        steady = [_day(traffic, mon, 12) for _ in range(9)]
        assert steady == [[]] * 9  # steady traffic: no alert
        broken = _day(traffic, mon, 0)
        assert "exposure_drop(all)" in broken
        (raised,) = [a for a in book.active("feed-v2") if a.subject == "all"
                     and a.kind == "exposure_drop"]  # fmt: skip
        assert raised.severity.value == "critical" and raised.numbers["observed"] == 0
        assert "exposure_drop(all)" not in _day(traffic, mon, 12)
        (resolved,) = [a for a in book.history("feed-v2") if a.id == raised.id]
        assert resolved.status == "resolved" and resolved.resolved_at is not None
        mon.deliver(seconds=5)
        events = [json.loads(r.body)["event"] for r in sink.wait_for(2)
                  if json.loads(r.body)["alert"]["id"] == raised.id]  # fmt: skip
        assert events == ["alert.raised", "alert.resolved"]
    store.ship_experiment("feed-v2", "v2", key_id="rm")
    for day in range(2):
        _late_events(store, clock, 150, day)
        mon.run_once()
    assert not [a for a in book.active("feed-v2") if a.kind == "exposure_drop"]
    clock.set(clock.now() + timedelta(days=1))  # the units' events stop
    mon.run_once()
    kinds = {(a.kind, a.subject) for a in book.active("feed-v2")}
    assert ("event_drop", "latency_ms") in kinds
