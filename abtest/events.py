"""Outcome events: their schema, validation and documented limits. Pure.

An event is ``{event_id, unit_id, metric, value?, timestamp?}``:

* ``event_id``: the client's idempotency key, a non-empty string of at most
  `MAX_EVENT_ID_LENGTH` characters; a retry with the same id is counted once.
* ``unit_id``: as in assignment (non-empty, at most 256 characters, no NUL).
* ``metric``: a metric name (letters, digits, ``_``, ``-``, ``.``; at most 64 characters).
  Ratio and quantile metrics are computed from plain events (``clicks``, ``latency_ms``).
* ``value``: a finite number, default 1.
* ``timestamp``: when it happened, as epoch seconds (a number) or an ISO-8601 string with a
  time zone; default: now.  It must lie between 2000-01-01 and one day ahead of now.

A batch holds at most `MAX_BATCH_EVENTS` events and is accepted or refused as a whole.
Idempotency memory is bounded: an event id is remembered for `DEDUPE_WINDOW_DAYS` full days
after the UTC day it was accepted (one Redis set per day, expiring on its own), so a retry
within 7 days is always recognised, and memory holds at most about eight days of ids.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from abtest.errors import InvalidInput, PayloadTooLarge
from abtest.experiment import MetricType, metric_name_problem, validate_unit_id

MAX_BATCH_EVENTS: Final = 1000
MAX_EVENT_ID_LENGTH: Final = 128
DEDUPE_WINDOW_DAYS: Final = 7
_MIN_TIMESTAMP_US: Final = 946_684_800_000_000  # 2000-01-01T00:00:00Z
_MAX_FUTURE_US: Final = 86_400_000_000  # one day
_FIELDS: Final = frozenset({"event_id", "unit_id", "metric", "value", "timestamp"})


@dataclass(frozen=True, slots=True)
class Event:
    """One validated outcome event; ``timestamp`` in integer epoch microseconds (UTC)."""

    event_id: str
    unit_id: str
    metric: str
    value: float
    timestamp: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {
            "event_id": self.event_id,
            "unit_id": self.unit_id,
            "metric": self.metric,
            "value": self.value,
            "timestamp": self.timestamp,
        }


def now_us() -> int:
    """Current time in integer epoch microseconds."""
    return time.time_ns() // 1000


def parse_event(data: object, *, where: str = "event", now: int | None = None) -> Event:
    """Validate one event mapping; raise `InvalidInput` naming the field at fault."""
    if not isinstance(data, Mapping):
        raise InvalidInput("must be an object", where)
    for name in data:
        if name not in _FIELDS:
            raise InvalidInput("unknown field", f"{where}.{name}")
    event_id = data.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidInput("required: a non-empty string", f"{where}.event_id")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        raise InvalidInput(f"longer than {MAX_EVENT_ID_LENGTH} characters", f"{where}.event_id")
    problem = validate_unit_id(data.get("unit_id"), f"{where}.unit_id")
    if problem:
        raise InvalidInput(problem.message, problem.field)
    metric = data.get("metric")
    if not isinstance(metric, str):
        raise InvalidInput("required: a metric name", f"{where}.metric")
    message = metric_name_problem(metric, MetricType.COUNT)
    if message:
        raise InvalidInput(message, f"{where}.metric")
    value = data.get("value", 1)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("must be a number", f"{where}.value")
    value = float(value) if abs(value) < 1e308 else math.inf  # huge ints overflow float
    if not math.isfinite(value):
        raise InvalidInput("must be a finite number", f"{where}.value")
    current = now_us() if now is None else now
    timestamp = _parse_timestamp(data.get("timestamp"), f"{where}.timestamp", current)
    return Event(event_id, str(data["unit_id"]), metric, value, timestamp)


def parse_events(items: object, *, field: str = "events") -> list[Event]:
    """Validate a batch: a list of 1 to `MAX_BATCH_EVENTS` events; all or nothing."""
    if not isinstance(items, list):
        raise InvalidInput("required: a list of events", field)
    if not items:
        raise InvalidInput("must hold at least one event", field)
    if len(items) > MAX_BATCH_EVENTS:
        raise PayloadTooLarge(
            f"{len(items)} events in one batch; the limit is {MAX_BATCH_EVENTS}", field
        )
    now = now_us()
    return [parse_event(item, where=f"{field}[{i}]", now=now) for i, item in enumerate(items)]


def _parse_timestamp(value: object, field: str, now: int) -> int:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00", 1))
        except ValueError:
            raise InvalidInput("not an ISO-8601 time such as 2024-05-01T12:00:00Z", field) from None
        if parsed.tzinfo is None:
            raise InvalidInput("an ISO-8601 time needs a time zone (e.g. 'Z')", field)
        micros = int(parsed.timestamp()) * 1_000_000 + parsed.microsecond
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or abs(value) > 1e12:
            raise InvalidInput("must be epoch seconds between 2000 and tomorrow", field)
        micros = round(value * 1_000_000)
    else:
        raise InvalidInput("must be epoch seconds or an ISO-8601 string", field)
    if not _MIN_TIMESTAMP_US <= micros <= now + _MAX_FUTURE_US:
        raise InvalidInput("must lie between 2000-01-01 and one day from now", field)
    return micros
