"""Default settings; each can be overridden by an ``ABTEST_<NAME>`` environment variable
(``ABTEST_REDIS_URL=redis://...``) or by the mapping given to `create_app`."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from flask import Config

from abtest.errors import InvalidInput
from abtest.redis_client import SCHEMES
from service.known_metrics import MODES as UNKNOWN_METRIC_MODES
from service.monitor.clock import clock_mode


def defaults() -> dict[str, Any]:
    """The defaults, read when an app is built (never at import time)."""
    return {
        # Redis: ABTEST_REDIS_URL only.  A host's plain REDIS_URL may name another app's
        # Redis, and one name for the service and the CLI means one store.
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "REDIS_SOCKET_TIMEOUT": 2.0,  # seconds; past it a request fails with 503, not hangs
        # Partitions (hash tags) for events and for each new experiment's per-unit state;
        # on Redis Cluster a few per shard spread the load (see abtest.keys).
        "EVENT_PARTITIONS": 1,
        "UNIT_PARTITIONS": 1,
        # Writes wait for this many replicas (Redis WAIT) before they are acknowledged.
        "REDIS_WAIT_REPLICAS": 0,
        "REDIS_WAIT_TIMEOUT_MS": 100,
        # Bodies over this many bytes are refused with 413 before they are parsed.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # A verified API key is trusted this long per worker: a revocation takes effect in
        # other workers after at most this delay (at once in the worker that revoked it).
        "KEY_CACHE_SECONDS": 5.0,
        # A console sign-in ends after this long without a request (and on sign-out).
        "CONSOLE_SESSION_SECONDS": 8 * 3600,
        # Each unit's observation window for the always-valid verdict of the results
        # endpoint and the console: a unit counts once this long has passed since its
        # first exposure, with its outcomes of that span.
        "OBSERVATION_HOURS": 24.0,
        # "controlled": the clock of demo and test mode, set by the client through
        # POST /v1/clock and shared in Redis (service.monitor.clock); refused otherwise.
        "CLOCK": "system",
        # An event whose metric neither the catalogue nor any experiment knows: "refuse"
        # (a 400 suggesting the closest name: 'purchse' -> 'purchase'), "count" (kept and
        # counted per name, shown by GET /v1/metrics and the console) or "accept" (kept).
        # Refusing is the default: a typo is told to the sender at once instead of being
        # stored and never analysed; "count" suits apps that send events before defining.
        "UNKNOWN_METRICS": "refuse",
        # The older spelling of UNKNOWN_METRICS=refuse (true wins over UNKNOWN_METRICS).
        "REFUSE_UNDECLARED_METRICS": False,
    }


# The numeric settings and whether 0 is allowed (a key cache of 0 s means "no cache").
_NUMBERS: Final = {
    "REDIS_SOCKET_TIMEOUT": False,
    "MAX_CONTENT_LENGTH": False,
    "KEY_CACHE_SECONDS": True,
    "CONSOLE_SESSION_SECONDS": False,
    "OBSERVATION_HOURS": False,
}
# The integer settings and their smallest allowed value.
_COUNTS: Final = {
    "EVENT_PARTITIONS": 1,
    "UNIT_PARTITIONS": 1,
    "REDIS_WAIT_REPLICAS": 0,
    "REDIS_WAIT_TIMEOUT_MS": 1,
}
_FLAGS: Final = ("REFUSE_UNDECLARED_METRICS",)


def load(overrides: Mapping[str, Any] | None = None) -> Config:
    """The defaults, then ``ABTEST_*`` environment variables, then ``overrides``, checked."""
    config = Config(root_path=os.curdir)
    config.from_mapping(defaults())
    config.from_prefixed_env("ABTEST")  # values are read as JSON where they parse
    if overrides is not None:
        config.from_mapping(overrides)
    check(config)
    return config


def check(config: Mapping[str, Any]) -> None:
    """`InvalidInput` naming the first setting the service could not run with.

    Checked when the app is built, so `abtest serve` reports a bad value in one line
    before any worker starts, instead of each worker failing to boot.
    """
    for name, zero_allowed in _NUMBERS.items():
        value = config.get(name)
        usable = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value >= 0 if zero_allowed else value > 0)
        )
        if not usable:
            wanted = "a number >= 0" if zero_allowed else "a number > 0"
            raise InvalidInput(f"must be {wanted} (env ABTEST_{name}), got {value!r}", name)
    for name, least in _COUNTS.items():
        value = config.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidInput(
                f"must be a whole number >= {least} (env ABTEST_{name}), got {value!r}", name
            )
    clock_mode(config.get("CLOCK"))
    for name in _FLAGS:
        if not isinstance(config.get(name), bool):
            raise InvalidInput(f"must be true or false (env ABTEST_{name})", name)
    if config.get("UNKNOWN_METRICS") not in UNKNOWN_METRIC_MODES:
        raise InvalidInput(
            f"must be {', '.join(UNKNOWN_METRIC_MODES[:-1])} or {UNKNOWN_METRIC_MODES[-1]} "
            "(env ABTEST_UNKNOWN_METRICS)",
            "UNKNOWN_METRICS",
        )
    url = config.get("REDIS_URL")
    scheme = urlsplit(url).scheme if isinstance(url, str) else type(url).__name__
    if scheme not in SCHEMES:
        # Only the scheme is echoed: the URL may carry the Redis password.
        raise InvalidInput(
            "must be a redis://, rediss://, unix:// or redis+cluster:// URL "
            f"(env ABTEST_REDIS_URL), got {scheme or 'no'} scheme",
            "REDIS_URL",
        )
