"""Webhooks: registrations, and delivery of alert changes as signed JSON POSTs.

A delivery is a JSON POST whose ``text`` is a one-line summary, so a Slack (or Mattermost,
Teams workflow) incoming-webhook URL shows it as it is, and whose other fields carry the
structured alert: ``event`` (``alert.raised``, ``alert.escalated``, ``alert.resolved``),
``delivery`` (its id, the same on every retry), ``alert`` (`abtest.alerts.Alert.to_dict`).
Headers sign it (`abtest.webhook_signature`: HMAC-SHA256 of ``timestamp.body`` with the
webhook's secret, and the timestamp, so a captured delivery cannot be replayed later).

Delivery never blocks the monitor's checks: `Webhooks.notify` only writes the delivery to a
Redis outbox (a sorted set by due time plus the pending records), and a `WebhookSender`
thread sends what is due.  A failed attempt (no answer within the timeout, a connection
error, any status but 2xx; redirects are not followed) is retried with exponential backoff
and jitter (the n-th retry waits ``d/2 + U(0, d/2)`` with ``d = min(cap, base · 2^(n-1))``,
"equal jitter" in Brooker's "Exponential Backoff And Jitter", AWS Architecture Blog,
2015), up to ``max_attempts``; then the delivery is ``failed`` and stays in the webhook's
delivery log with its last status and error, which the API, the console and Prometheus
show.  The outbox survives a monitor restart; a sender that dies mid-attempt leaves the
delivery claimed only for ``claim_seconds`` past the timeout, after which it is retried
(at-least-once: receivers drop a repeated ``X-Abtest-Delivery``).
"""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import redis

from abtest import keys
from abtest.alerts import (
    DELIVERED,
    FAILED,
    KIND_PATTERN,
    PENDING,
    Delivery,
    Severity,
    Webhook,
)
from abtest.errors import Conflict, InvalidInput, NotFound
from abtest.experiment import SLUG
from abtest.redis_client import register_script
from abtest.webhook_signature import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from service.monitor.alerts import AlertChange, iso
from service.monitor.webhook_http import RetryPolicy, post, render

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

MAX_WEBHOOKS: Final = 100
MAX_URL_LENGTH: Final = 2_000
MIN_SECRET_LENGTH: Final = 16
MAX_SECRET_LENGTH: Final = 256
MAX_FILTER_ITEMS: Final = 100
MAX_DESCRIPTION_LENGTH: Final = 200
LOG_LIMIT: Final = 200  # ended deliveries kept per webhook
_KIND: Final = re.compile(KIND_PATTERN)
_log = logging.getLogger(__name__)


def _check_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise InvalidInput("required: an http(s) URL", "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("must be an http:// or https:// URL with a host", "url")
    if len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise InvalidInput(f"at most {MAX_URL_LENGTH} characters, no spaces", "url")
    return url


def _check_items(values: Iterable[str], field: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(values))
    if len(items) > MAX_FILTER_ITEMS:
        raise InvalidInput(f"at most {MAX_FILTER_ITEMS} items", field)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise InvalidInput("not a valid name", f"{field}[{i}]")
    return items


class Webhooks:
    """Webhook registrations and their deliveries in one Redis.

    Parameters
    ----------
    client : redis.Redis
        With ``decode_responses=True``.
    policy : RetryPolicy
        Attempts, backoff and timeout.
    rng : random.Random, optional
        The jitter's source (seed it in tests).
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = client
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        self._claim = register_script(client, keys.CLAIM_DELIVERIES_SCRIPT)
        self._record = register_script(client, keys.RECORD_DELIVERY_SCRIPT)

    # -- registrations ---------------------------------------------------------------------
    def create_webhook(
        self,
        url: str,
        *,
        secret: str | None = None,
        min_severity: Severity = Severity.WARNING,
        kinds: Iterable[str] = (),
        experiments: Iterable[str] = (),
        description: str = "",
    ) -> tuple[Webhook, str]:
        """Add a webhook; returns it and its secret (generated when none is given), which
        is never shown again."""
        url = _check_url(url)
        if secret is None:
            secret = "whsec_" + secrets.token_urlsafe(32)
        if not isinstance(secret, str) or not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
            raise InvalidInput(f"a secret of {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} "
                               "characters", "secret")  # fmt: skip
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidInput(f"at most {MAX_DESCRIPTION_LENGTH} characters", "description")
        if self.redis.hlen(keys.webhooks()) >= MAX_WEBHOOKS:
            raise Conflict(f"at most {MAX_WEBHOOKS} webhooks; remove one first", "url")
        webhook = Webhook(
            id="w" + secrets.token_hex(6)[:11], url=url, min_severity=min_severity,
            kinds=_check_items(kinds, "kinds", _KIND),
            experiments=_check_items(experiments, "experiments", SLUG),
            description=description, created_at=iso(datetime.now(UTC)),
        )  # fmt: skip
        record = {**webhook.to_dict(), "secret": secret}
        self.redis.hset(keys.webhooks(), webhook.id, json.dumps(record))
        return webhook, secret

    def _raw(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self.redis.hgetall(keys.webhooks()).items()}

    def list_webhooks(self) -> list[Webhook]:
        """Every webhook, oldest first (never the secrets)."""
        found = [Webhook.from_dict(v) for v in self._raw().values()]
        return sorted(found, key=lambda w: (w.created_at, w.id))

    def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook; `NotFound` when there is none."""
        raw = self.redis.hget(keys.webhooks(), webhook_id)
        if raw is None:
            raise NotFound(f"no webhook '{webhook_id[:40]}'", "webhook")
        return Webhook.from_dict(json.loads(raw))

    def delete_webhook(self, webhook_id: str) -> Webhook:
        """Delete a webhook and its delivery log; its pending deliveries are dropped."""
        webhook = self.get_webhook(webhook_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(keys.webhooks(), webhook_id)
        pipe.delete(keys.webhook_log(webhook_id))
        pipe.execute()
        return webhook

    # -- deliveries: the log ---------------------------------------------------------------
    def _pending(self) -> list[tuple[Delivery, str]]:
        out = []
        for text in self.redis.hvals(keys.webhook_pending()):
            item = json.loads(text)
            out.append((Delivery.from_dict(item["delivery"]), str(item["body"])))
        return out

    def deliveries(self, webhook_id: str, *, limit: int = LOG_LIMIT) -> list[Delivery]:
        """The webhook's pending deliveries (soonest first), then its ended ones (newest
        first); `NotFound` for an unknown webhook."""
        self.get_webhook(webhook_id)
        pending = sorted((d for d, _ in self._pending() if d.webhook == webhook_id),
                         key=lambda d: (d.next_attempt_at or "", d.id))  # fmt: skip
        ended = self.redis.lrange(keys.webhook_log(webhook_id), 0, max(limit, 1) - 1)
        return pending + [Delivery.from_dict(json.loads(t)) for t in ended]

    def failures(self, *, limit: int = 50) -> list[Delivery]:
        """Failed deliveries of every webhook, and pending ones that have failed at least
        once, newest attempt first."""
        found = [d for d, _ in self._pending() if d.attempts > 0]
        for webhook in self.list_webhooks():
            for text in self.redis.lrange(keys.webhook_log(webhook.id), 0, -1):
                delivery = Delivery.from_dict(json.loads(text))
                if delivery.status == FAILED:
                    found.append(delivery)
        found.sort(key=lambda d: (d.last_attempt_at or "", d.id), reverse=True)
        return found[:limit]

    def status_counts(self) -> dict[tuple[str, str], int]:
        """Deliveries per (webhook, status): pending ones, and those in each log; every
        webhook has its three counts, zeros included."""
        counts = {(w.id, status): 0 for w in self.list_webhooks()
                  for status in (PENDING, DELIVERED, FAILED)}  # fmt: skip
        for delivery, _ in self._pending():
            key = (delivery.webhook, PENDING)
            if key in counts:
                counts[key] += 1
        for webhook_id in {w for w, _ in counts}:
            for text in self.redis.lrange(keys.webhook_log(webhook_id), 0, -1):
                counts[(webhook_id, str(json.loads(text)["status"]))] += 1
        return counts

    # -- deliveries: queueing and sending --------------------------------------------------
    def notify(self, changes: Sequence[AlertChange], *, now: datetime) -> list[Delivery]:
        """Queue one delivery per change and interested webhook (Redis writes only).

        ``now`` (the monitor's clock) stamps the delivery; it is due at once on the wall
        clock, which the sender and its retries run on, so a delivery found under a
        controlled clock days ahead (the demo) is not held back until then."""
        if not changes:
            return []
        hooks = self.list_webhooks()
        queued = []
        stamp, due = iso(now), str(int(time.time() * 1000))
        for change in changes:
            for webhook in hooks:
                if not webhook.wants(change.alert):
                    continue
                delivery = Delivery(
                    id="d" + secrets.token_hex(6)[:11], webhook=webhook.id, event=change.event,
                    alert=change.alert.id, experiment=change.alert.experiment,
                    created_at=stamp, next_attempt_at=stamp,
                )  # fmt: skip
                body = render(change.event, change.alert, delivery.id)
                self._save(delivery, body, due)
                queued.append(delivery)
        return queued

    def _save(self, delivery: Delivery, body: str, due: str) -> None:
        text = json.dumps({"delivery": delivery.to_dict(), "body": body})
        if delivery.status != PENDING:
            text = json.dumps(delivery.to_dict())
        names = [keys.webhook_outbox(), keys.webhook_pending(), keys.webhook_log(delivery.webhook)]
        self._record(keys=names, args=[delivery.id, text, due, LOG_LIMIT])

    def send_due(self, *, limit: int = 20) -> int:
        """Attempt up to ``limit`` due deliveries (blocking: the sender thread's work);
        returns how many were attempted."""
        now = time.time()
        claim_ms = int((self.policy.timeout + self.policy.claim_seconds) * 1000)
        ids = self._claim(keys=[keys.webhook_outbox()], args=[int(now * 1000), claim_ms, limit])
        for delivery_id in ids:
            self._attempt(str(delivery_id))
        return len(ids)

    def send_pending(self, *, seconds: float) -> int:
        """Send what is due until nothing is or ``seconds`` have passed (``abtest monitor
        --once``: no thread outlives the run; a retry scheduled later waits for the next
        run, in the outbox).  Returns the attempts made."""
        deadline = time.monotonic() + seconds
        attempted = 0
        while time.monotonic() < deadline:
            sent = self.send_due()
            if not sent:
                break
            attempted += sent
        return attempted

    def _attempt(self, delivery_id: str) -> None:
        raw = self.redis.hget(keys.webhook_pending(), delivery_id)
        if raw is None:  # ended meanwhile; drop the stray outbox entry
            self.redis.zrem(keys.webhook_outbox(), delivery_id)
            return
        item = json.loads(raw)
        delivery, body = Delivery.from_dict(item["delivery"]), str(item["body"])
        hook = self.redis.hget(keys.webhooks(), delivery.webhook)
        if hook is None:  # the webhook was removed: nothing to send to, nothing to log
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(keys.webhook_outbox(), delivery_id)
            pipe.hdel(keys.webhook_pending(), delivery_id)
            pipe.execute()
            return
        registration = json.loads(hook)
        stamp = int(time.time())
        data = body.encode("utf-8")
        headers = {SIGNATURE_HEADER: sign(registration["secret"], stamp, data),
                   TIMESTAMP_HEADER: str(stamp), DELIVERY_HEADER: delivery.id,
                   EVENT_HEADER: delivery.event, "User-Agent": "abtest-webhooks"}  # fmt: skip
        status, error = post(registration["url"], data, headers, self.policy.timeout)
        attempts = delivery.attempts + 1
        ended_at = datetime.now(UTC)
        done = replace(delivery, attempts=attempts, last_attempt_at=iso(ended_at),
                       last_status=status, last_error=error)  # fmt: skip
        if status is not None and 200 <= status < 300:
            self._save(replace(done, status=DELIVERED, next_attempt_at=None, last_error=""),
                       body, "")  # fmt: skip
        elif attempts >= self.policy.max_attempts:
            _log.warning("webhook %s: delivery %s failed after %d attempts: %s",
                         delivery.webhook, delivery.id, attempts, error)  # fmt: skip
            self._save(replace(done, status=FAILED, next_attempt_at=None), body, "")
        else:
            wait = self.policy.delay(attempts, self._rng)
            due = ended_at.timestamp() + wait
            retry = replace(done, next_attempt_at=iso(datetime.fromtimestamp(due, UTC)))
            self._save(retry, body, str(int(due * 1000)))


class WebhookSender:
    """A daemon thread that sends due deliveries until `stop` (one per monitor process).

    Parameters
    ----------
    webhooks : Webhooks
        What to send.
    poll : float
        Seconds between looks at the outbox when nothing was due.
    """

    def __init__(self, webhooks: Webhooks, *, poll: float = 0.5) -> None:
        self.webhooks = webhooks
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookSender:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="abtest-webhooks",
                                            daemon=True)  # fmt: skip
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end after its current attempt, and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.webhooks.send_due()
            except redis.RedisError as exc:  # Redis away: try again later
                _log.warning("webhook sender: redis error: %s", exc)
                sent = 0
            if not sent:
                self._stop.wait(self.poll)


__all__ = [
    "LOG_LIMIT",
    "MAX_WEBHOOKS",
    "RetryPolicy",
    "WebhookSender",
    "Webhooks",
]
