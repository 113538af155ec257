"""Outcome events: their schema, validation and documented limits. Pure.

An event is ``{event_id, unit_id, metric, value?, timestamp?}``:

* ``event_id``: the client's idempotency key, a non-empty string of at most
  `MAX_EVENT_ID_LENGTH` characters; a retry with the same id is counted once.
* ``unit_id``: as in assignment (non-empty, at most 256 characters, no NUL).
* ``metric``: a metric name (letters, digits, ``_``, ``-``, ``.``; at most 64 characters).
  Ratio and quantile metrics are computed from plain events (``clicks``, ``latency_ms``).
* ``value``: a finite number, default 1.
* ``timestamp``: when it happened, as epoch seconds (a number) or an ISO-8601 string with a
  time zone; default: now.  It must lie between 2000-01-01 and the end of tomorrow (UTC):
  a fixed bound for a whole day, so the published schema states exactly what is accepted.

A batch holds at most `MAX_BATCH_EVENTS` events and is accepted or refused as a whole.
Idempotency memory is bounded: an event id is remembered for `DEDUPE_WINDOW_DAYS` full days
after the UTC day it was accepted (one Redis set per day, expiring on its own), so a retry
within 7 days is always recognised, and memory holds at most about eight days of ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from abtest.schemas import FiniteNumber, MetricName, Strict, UnitId, union_message, validate

MAX_BATCH_EVENTS: Final = 1000
MAX_EVENT_ID_LENGTH: Final = 128
DEDUPE_WINDOW_DAYS: Final = 7
_MIN_TIMESTAMP_US: Final = 946_684_800_000_000  # 2000-01-01T00:00:00Z
_DAY_US: Final = 86_400_000_000
_NOW: Final = "now_us"  # the validation context's key for the current time


def _publish_latest(schema: dict[str, Any]) -> None:
    schema["maximum"] = latest_us(now_us()) / 1e6  # today's bound, as the validator has it


EpochSeconds = Annotated[
    float,
    Field(ge=_MIN_TIMESTAMP_US / 1e6, allow_inf_nan=False, json_schema_extra=_publish_latest),
]
IsoTime = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]


class EventInput(Strict):
    """One event as sent to ``POST /v1/events`` or given to `Client.track` (see the module
    docstring); `parse_event` turns it into an `Event`."""

    event_id: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)]
    unit_id: UnitId
    metric: MetricName
    value: FiniteNumber = 1.0
    timestamp: EpochSeconds | IsoTime | None = Field(
        default=None,
        validate_default=True,  # the default is "now", filled in by the validator
        description="Epoch seconds or ISO-8601 with a time zone, between 2000-01-01 and the "
        "end of tomorrow (UTC); default: now",
    )

    @field_validator("timestamp", mode="wrap")
    @classmethod
    def _known_time(
        cls, value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> int:
        try:
            checked = handler(value)
        except ValidationError as exc:
            # One error at the field, rather than one per member of the union.
            message = union_message(value, exc, "must be epoch seconds or an ISO-8601 string")
            raise PydanticCustomError("timestamp", message) from None
        now = (info.context or {}).get(_NOW) or now_us()
        return _parse_timestamp(checked, now)


class EventBatch(Strict):
    """The body of ``POST /v1/events``: 1 to `MAX_BATCH_EVENTS` events, all or nothing."""

    events: Annotated[list[EventInput], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


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


def latest_us(now: int) -> int:
    """The latest event time accepted at ``now``: the last second of tomorrow, UTC (epoch µs;
    a whole second, so the published schema's bound in seconds is exact)."""
    return (now // _DAY_US + 2) * _DAY_US - 1_000_000


def now_us() -> int:
    """Current time in integer epoch microseconds."""
    return time.time_ns() // 1000


def parse_event(data: object, *, where: str = "event", now: int | None = None) -> Event:
    """Validate one event mapping; raise `InvalidInput` naming the field at fault."""
    return _event(validate(EventInput, data, where=where, context={_NOW: now}))


def parse_event_batch(body: object) -> list[Event]:
    """Validate a batch body ``{"events": [...]}`` (`EventBatch`); all or nothing.

    `InvalidInput` names the first bad field (``events[3].unit_id``); more than
    `MAX_BATCH_EVENTS` events is `PayloadTooLarge`.
    """
    batch = validate(EventBatch, body, context={_NOW: now_us()})
    return [_event(item) for item in batch.events]


def parse_events(items: object) -> list[Event]:
    """`parse_event_batch` of ``{"events": items}``: a list of 1 to `MAX_BATCH_EVENTS`."""
    return parse_event_batch({"events": items})


def _event(item: EventInput) -> Event:
    assert isinstance(item.timestamp, int)  # the validator's result
    return Event(item.event_id, item.unit_id, item.metric, item.value, item.timestamp)


def _parse_timestamp(value: float | str | None, now: int) -> int:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00", 1))
        except ValueError:
            raise ValueError("not an ISO-8601 time such as 2024-05-01T12:00:00Z") from None
        if parsed.tzinfo is None:
            raise ValueError("an ISO-8601 time needs a time zone (e.g. 'Z')")
        micros = int(parsed.timestamp()) * 1_000_000 + parsed.microsecond
    elif value > latest_us(now) / 1e6:  # compared in seconds: exactly the schema's maximum
        raise ValueError("must lie between 2000-01-01 and the end of tomorrow (UTC)")
    else:
        micros = round(value * 1_000_000)
    if not _MIN_TIMESTAMP_US <= micros <= latest_us(now):
        raise ValueError("must lie between 2000-01-01 and the end of tomorrow (UTC)")
    return micros
