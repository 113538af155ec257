"""The per-app resources (Redis client, store, metrics, key cache, console sessions), kept in
``app.extensions``."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING

from flask import Flask, current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from abtest.auth import ApiKey, ConsoleSessions
from abtest.redis_client import connect
from abtest.store import Store
from service.errors import register_error_handlers
from service.known_metrics import KnownMetrics
from service.metrics import Metrics
from service.monitor.clock import RedisClock, make_clock
from service.security import register_auth

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient


class Abtest:
    """Builds and holds everything the views need; one per app, none at import time."""

    def __init__(self, app: Flask) -> None:
        config = app.config
        self.redis: RedisClient = connect(
            config["REDIS_URL"],
            decode_responses=True,
            socket_timeout=config["REDIS_SOCKET_TIMEOUT"],
            socket_connect_timeout=config["REDIS_SOCKET_TIMEOUT"],
            # One quick retry covers a dropped pooled connection; more would only delay
            # the 503 when Redis is really down.
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        )
        # The controlled clock (demo and test mode only) dates exposures, events and audit
        # entries; otherwise the store keeps its own system clock.
        self.clock = make_clock(config["CLOCK"], self.redis)
        clock_us = self.clock.now_us if isinstance(self.clock, RedisClock) else None
        self.store = Store(
            self.redis,
            unit_partitions=config["UNIT_PARTITIONS"],
            event_partitions=config["EVENT_PARTITIONS"],
            wait_replicas=config["REDIS_WAIT_REPLICAS"],
            wait_timeout_ms=config["REDIS_WAIT_TIMEOUT_MS"],
            **({} if clock_us is None else {"now_us": clock_us}),
        )
        self.metrics = Metrics()
        self.key_cache = KeyCache(float(app.config["KEY_CACHE_SECONDS"]))
        self.known_metrics = KnownMetrics()
        self.console_sessions = ConsoleSessions(
            self.redis, self.store.api_keys, float(app.config["CONSOLE_SESSION_SECONDS"])
        )
        app.extensions["abtest"] = self
        register_error_handlers(app)
        register_auth(app)
        self.metrics.register(app)


class KeyCache:
    """Verified keys by digest for a few seconds, so a request costs no extra round trip."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[ApiKey, float]] = {}
        self._lock = threading.Lock()

    def verify(self, store: Store, token: str) -> ApiKey:
        """The key's record, from the cache or from Redis; `Unauthorized` if invalid."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        record = store.verify_api_key(token)
        if self.seconds > 0:
            with self._lock:
                if len(self._entries) > 10_000:  # bounded: valid keys are few
                    self._entries.clear()
                self._entries[digest] = (record, now + self.seconds)
        return record

    def clear(self) -> None:
        """Forget every cached key (after a revocation)."""
        with self._lock:
            self._entries.clear()


def abtest() -> Abtest:
    """The current app's resources."""
    ext: Abtest = current_app.extensions["abtest"]
    return ext
