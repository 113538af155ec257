"""Webhooks (`service.monitor.webhooks`) against a real redis-server and a real local HTTP
receiver: signed JSON POSTs, filters, retries with backoff, failures kept visible."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime

import pytest

from abtest import keys
from abtest.alerts import Severity
from abtest.errors import InvalidInput, NotFound
from abtest.webhook_signature import verify_signature
from analysis.statistics.health import HealthSignal
from service.monitor.alerts import AlertBook, AlertChange
from service.monitor.webhooks import RetryPolicy, Webhooks, WebhookSender
from tests.webhook_receiver import receiver

REDIS_TOPOLOGIES = ("single", "cluster")  # the same alerts and deliveries on Redis Cluster
SECRET = "a-secret-of-some-length"
FAST = RetryPolicy(max_attempts=3, base_delay=0.02, max_delay=0.05, timeout=2.0)


@pytest.fixture
def hooks(redis_client):
    """Webhooks with quick retries and seeded jitter."""
    return Webhooks(redis_client, policy=FAST, rng=random.Random(1))


def raised(redis_client, experiment="ranker-v2", kind="exposure_drop",
           severity=Severity.CRITICAL) -> list[AlertChange]:  # fmt: skip
    """Raise one alert in the book and return its change."""
    message = "exposures stopped: 0 in the latest day against 120.0"
    signal = HealthSignal(kind=kind, severity=severity, subject="all",
                          numbers={"observed": 0, "expected": 120.0}, message=message)  # fmt: skip
    return AlertBook(redis_client).record(experiment, [signal], judged=(), now=datetime.now(UTC))


def drain(hooks: Webhooks, timeout: float = 10.0) -> None:
    """Send until nothing is pending (the sender thread's loop, run inline)."""
    deadline = time.monotonic() + timeout
    while hooks.redis.hlen(keys.webhook_pending()) and time.monotonic() < deadline:
        if not hooks.send_due():
            time.sleep(0.01)
    assert not hooks.redis.hlen(keys.webhook_pending())


def test_a_delivery_is_signed_json_with_slack_text(redis_client, hooks):
    """The receiver gets a JSON POST with a Slack ``text``, the structured alert, and an
    HMAC signature over its timestamp and body that verifies with the secret."""
    with receiver() as sink:
        webhook, secret = hooks.create_webhook(sink.url, secret=SECRET)
        assert secret == SECRET
        (queued,) = hooks.notify(raised(redis_client), now=datetime.now(UTC))
        drain(hooks)
        (got,) = sink.wait_for(1)
    body = json.loads(got.body)
    assert body["text"].startswith("[CRITICAL] ranker-v2: exposure_drop (all) - exposures stopped")
    assert body["event"] == "alert.raised" and body["delivery"] == queued.id
    assert body["alert"]["kind"] == "exposure_drop" and body["alert"]["numbers"]["expected"] == 120
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-abtest-delivery"] == queued.id
    assert got.headers["x-abtest-event"] == "alert.raised"
    stamp, signature = got.headers["x-abtest-timestamp"], got.headers["x-abtest-signature"]
    assert verify_signature(SECRET, got.body, stamp, signature)
    assert not verify_signature("another-secret-entirely", got.body, stamp, signature)
    assert not verify_signature(SECRET, got.body + b" ", stamp, signature)
    assert not verify_signature(SECRET, got.body, stamp, signature, now=int(stamp) + 3600)
    (delivery,) = hooks.deliveries(webhook.id)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("delivered", 1, 200)


def test_failed_attempts_are_retried_with_backoff(redis_client, hooks):
    """Two 500s, then a 200: delivered on the third attempt, the same body and delivery id
    each time, with time between attempts."""
    with receiver(statuses=[500, 500]) as sink:
        webhook, _ = hooks.create_webhook(sink.url, secret=SECRET)
        hooks.notify(raised(redis_client), now=datetime.now(UTC))
        drain(hooks)
        attempts = sink.wait_for(3)
    assert len({a.body for a in attempts}) == 1
    assert len({a.headers["x-abtest-delivery"] for a in attempts}) == 1
    (delivery,) = hooks.deliveries(webhook.id)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("delivered", 3, 200)
    assert hooks.failures() == []


def test_a_delivery_fails_visibly_after_its_last_attempt(redis_client, hooks):
    """Always 500: after `max_attempts` the delivery is failed, with the last status and the
    receiver's answer, in the webhook's log and the failure list."""
    with receiver(statuses=[500] * 10) as sink:
        webhook, _ = hooks.create_webhook(sink.url, secret=SECRET)
        hooks.notify(raised(redis_client), now=datetime.now(UTC))
        drain(hooks)
        assert len(sink.wait_for(3)) == 3
        time.sleep(0.1)
        assert len(sink.received) == 3  # no fourth attempt
    (delivery,) = hooks.deliveries(webhook.id)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("failed", 3, 500)
    assert "HTTP 500" in delivery.last_error and "receiver says no" in delivery.last_error
    assert [d.id for d in hooks.failures()] == [delivery.id]


def test_an_unreachable_receiver_fails_with_the_error(redis_client, hooks):
    """Nothing listening: each attempt fails with the connection error, then the delivery."""
    with receiver() as sink:
        url = sink.url
    webhook, _ = hooks.create_webhook(url, secret=SECRET)
    hooks.notify(raised(redis_client), now=datetime.now(UTC))
    drain(hooks)
    (delivery,) = hooks.deliveries(webhook.id)
    assert delivery.status == "failed" and delivery.last_status is None
    assert "refused" in delivery.last_error.lower()


def test_a_pending_retry_is_visible_before_it_ends(redis_client, redis_url):
    """Between attempts the delivery is pending, with its attempts, error and next time."""
    slow = Webhooks(redis_client, policy=RetryPolicy(max_attempts=5, base_delay=60.0))
    with receiver(statuses=[503]) as sink:
        webhook, _ = slow.create_webhook(sink.url, secret=SECRET)
        slow.notify(raised(redis_client), now=datetime.now(UTC))
        assert slow.send_due() == 1
        assert slow.send_due() == 0  # the retry is a minute away
    (delivery,) = slow.deliveries(webhook.id)
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("pending", 1, 503)
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > delivery.created_at
    assert [d.id for d in slow.failures()] == [delivery.id]


def test_filters_choose_the_webhooks(redis_client, hooks):
    """Severity, kind and experiment filters decide who is told about an alert."""
    with receiver() as sink:
        every, _ = hooks.create_webhook(sink.url, secret=SECRET)
        critical, _ = hooks.create_webhook(sink.url, secret=SECRET, min_severity=Severity.CRITICAL)
        srm, _ = hooks.create_webhook(sink.url, secret=SECRET, kinds=["sample_ratio_mismatch"])
        other, _ = hooks.create_webhook(sink.url, secret=SECRET, experiments=["other-exp"])
        warning = raised(redis_client, severity=Severity.WARNING, kind="metric_jump")
        queued = hooks.notify(warning, now=datetime.now(UTC))
    assert [d.webhook for d in queued] == [every.id]
    queued = hooks.notify(raised(redis_client, experiment="other-exp"), now=datetime.now(UTC))
    assert sorted(d.webhook for d in queued) == sorted([every.id, critical.id, other.id])
    assert srm.kinds == ("sample_ratio_mismatch",)


def test_notify_never_waits_for_the_receiver(redis_client, hooks):
    """Queueing is a Redis write: a receiver that takes seconds does not slow the check."""
    with receiver(delay=1.0) as sink:
        hooks.create_webhook(sink.url, secret=SECRET)
        sender = WebhookSender(hooks, poll=0.01).start()
        try:
            started = time.perf_counter()
            for _ in range(3):
                hooks.notify(raised(redis_client), now=datetime.now(UTC))
            assert time.perf_counter() - started < 0.5
            sink.wait_for(1)
        finally:
            sender.stop(timeout=10)


def test_the_sender_thread_delivers(redis_client, hooks):
    """A running `WebhookSender` sends what is queued, and stops when asked."""
    with receiver() as sink:
        hooks.create_webhook(sink.url, secret=SECRET)
        sender = WebhookSender(hooks, poll=0.01).start()
        try:
            hooks.notify(raised(redis_client), now=datetime.now(UTC))
            sink.wait_for(1)
        finally:
            sender.stop(timeout=10)
    assert sender._thread is not None and not sender._thread.is_alive()


def test_a_removed_webhook_gets_nothing_more(redis_client, hooks):
    """Deleting a webhook drops its log and its pending deliveries."""
    with receiver() as sink:
        webhook, _ = hooks.create_webhook(sink.url, secret=SECRET)
        hooks.notify(raised(redis_client), now=datetime.now(UTC))
        assert hooks.delete_webhook(webhook.id) == webhook
        drain(hooks)
        assert sink.received == []
    with pytest.raises(NotFound):
        hooks.deliveries(webhook.id)
    assert hooks.list_webhooks() == []


def test_a_claimed_delivery_is_retried_after_its_claim(redis_client):
    """A sender that dies after claiming leaves the delivery to be taken again later."""
    hooks = Webhooks(redis_client, policy=RetryPolicy(timeout=0.05, claim_seconds=0.05))
    with receiver() as sink:
        hooks.create_webhook(sink.url, secret=SECRET)
        hooks.notify(raised(redis_client), now=datetime.now(UTC))
        claimed = hooks._claim(keys=[keys.webhook_outbox()],
                               args=[int(time.time() * 1000), 100, 10])  # fmt: skip
        assert len(claimed) == 1 and hooks.send_due() == 0  # taken by the "dead" sender
        time.sleep(0.15)
        drain(hooks)
        assert len(sink.wait_for(1)) == 1


def test_a_generated_secret_is_returned_once(redis_client, hooks):
    """Without a secret one is generated and returned; listings never show it."""
    webhook, secret = hooks.create_webhook("https://hooks.example.com/abtest")
    assert secret.startswith("whsec_") and len(secret) > 30
    assert "secret" not in webhook.to_dict()
    assert secret not in json.dumps([w.to_dict() for w in hooks.list_webhooks()])


@pytest.mark.parametrize(
    ("url", "options", "field"),
    [
        ("ftp://example.com/x", {}, "url"),
        ("http://", {}, "url"),
        ("https://example.com/a b", {}, "url"),
        ("https://example.com/" + "x" * 2_000, {}, "url"),
        ("https://example.com/x", {"secret": "short"}, "secret"),
        ("https://example.com/x", {"kinds": ["Exposure Drop"]}, "kinds[0]"),
        ("https://example.com/x", {"experiments": ["Not A Slug"]}, "experiments[0]"),
        ("https://example.com/x", {"description": "d" * 201}, "description"),
    ],
)
def test_bad_registrations_name_the_field(hooks, url, options, field):
    """Each bad registration is refused with the field to blame, and nothing is stored."""
    with pytest.raises(InvalidInput) as caught:
        hooks.create_webhook(url, **options)
    assert caught.value.field == field
    assert hooks.list_webhooks() == []


def test_backoff_grows_with_equal_jitter():
    """The n-th retry waits between half and all of min(cap, base * 2^(n-1))."""
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    rng = random.Random(3)
    for failed, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        delays = [policy.delay(failed, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling


def test_send_pending_stops_when_nothing_is_due(redis_client, hooks):
    """A one-shot run sends what is due, and leaves a retry due later in the outbox."""
    with receiver(statuses=[500]) as sink:
        slow = Webhooks(redis_client, policy=RetryPolicy(max_attempts=3, base_delay=60.0))
        webhook, _ = slow.create_webhook(sink.url, secret=SECRET)
        slow.notify(raised(redis_client), now=datetime.now(UTC))
        started = time.monotonic()
        assert slow.send_pending(seconds=5) == 1
        assert time.monotonic() - started < 2
    (delivery,) = slow.deliveries(webhook.id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
