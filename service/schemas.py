"""The JSON request bodies of the API as pydantic models: the views validate with them and
`service.openapi` publishes their JSON Schema, so the two cannot drift apart.

The assignment and event bodies are the core's own (`abtest.assign_requests`,
`abtest.events.EventBatch`), which `abtest.client.Client` checks its requests with too.
Experiment definitions are validated by `abtest.experiment.Experiment.from_dict`, which
reports every problem at once; their published schema is `abtest.experiment_schema`.
The webhook registration's rules beyond its shape (an http(s) URL, kind names) are
`service.monitor.webhooks.Webhooks.create_webhook`'s, which every caller goes through.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from abtest.alerts import KIND_PATTERN, WEBHOOK_URL_PATTERN
from abtest.assign_requests import AssignBatchBody, AssignBody
from abtest.catalogue import CATALOGUE_NAME_PATTERN, MAX_DESCRIPTION_LENGTH, MAX_UNIT_LENGTH
from abtest.events import EventBatch
from abtest.experiment_schema import anchored
from abtest.schemas import WHOLE_NUMBER, ExperimentKey, FiniteNumber, Strict
from abtest.store import MAX_REASON_LENGTH
from service.monitor.webhooks import (
    MAX_DESCRIPTION_LENGTH as MAX_WEBHOOK_DESCRIPTION_LENGTH,
)
from service.monitor.webhooks import (
    MAX_FILTER_ITEMS,
    MAX_SECRET_LENGTH,
    MAX_URL_LENGTH,
    MIN_SECRET_LENGTH,
)

__all__ = [
    "MODELS",
    "AssignBatchBody",
    "AssignBody",
    "ClockBody",
    "EventBatch",
    "KeyBody",
    "MetricBody",
    "ReasonBody",
    "ShipBody",
    "WebhookBody",
]


class ShipBody(Strict):
    """``POST /v1/experiments/{key}/ship``: the winning variant, and why (optional)."""

    variant: ExperimentKey = Field(description="A variant key of the experiment (a slug)")
    reason: Annotated[str, Field(max_length=MAX_REASON_LENGTH)] | None = Field(
        default=None,
        description="Kept in the audit entry (say why when shipping against "
        "the verdict); blank is the same as none",
    )


class KeyBody(Strict):
    """``POST /v1/keys``: a new API key's role and an optional label."""

    role: Literal["admin", "sdk"]
    name: Annotated[str, Field(max_length=100)] = ""


Reason = Annotated[str, Field(max_length=MAX_REASON_LENGTH)]


class ReasonBody(Strict):
    """``POST /v1/experiments/{key}/rollout/pause|resume|rollback``: why (optional)."""

    reason: Reason | None = Field(default=None, description="Kept in the audit entry")


_EARLIEST, _LATEST = 946_684_800, 4_102_444_800  # 2000 to 2100, epoch seconds


def clock_time(value: object) -> datetime:
    """An ISO-8601 time with a zone, or epoch seconds from 2000 to 2100, as a UTC time."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00", 1))
        except ValueError:
            raise ValueError("not an ISO-8601 time such as 2026-03-02T09:00:00Z") from None
        if moment.tzinfo is None:
            raise ValueError("an ISO-8601 time needs a time zone (e.g. 'Z')")
        return moment.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if not _EARLIEST <= value <= _LATEST:
            raise ValueError("must be epoch seconds between 2000 and 2100")
        return datetime.fromtimestamp(value, UTC)
    raise ValueError("required: an ISO-8601 time or epoch seconds")


ClockTime = Annotated[
    datetime,
    BeforeValidator(clock_time),
    WithJsonSchema({"oneOf": [
        {"type": "string", "format": "date-time", "maxLength": 64},
        {"type": "number", "minimum": _EARLIEST, "maximum": _LATEST},
    ]}),
]  # fmt: skip


class ClockBody(Strict):
    """``POST /v1/clock``: where the controlled clock moves (never backwards)."""

    now: ClockTime


Kind = Annotated[str, Field(pattern=anchored(KIND_PATTERN), examples=["exposure_drop"])]


class WebhookBody(Strict):
    """``POST /v1/webhooks``: where deliveries go and which alerts they carry."""

    url: Annotated[str, Field(max_length=MAX_URL_LENGTH, pattern=anchored(WEBHOOK_URL_PATTERN),
                              examples=["https://hooks.example.com/abtest"])]  # fmt: skip
    secret: Annotated[str, Field(min_length=MIN_SECRET_LENGTH, max_length=MAX_SECRET_LENGTH,
                                 json_schema_extra={"writeOnly": True})] | None = Field(
        default=None, description="Signs each delivery; generated (and returned once) when absent"
    )  # fmt: skip
    min_severity: Literal["warning", "critical"] = "warning"
    kinds: Annotated[list[Kind], Field(max_length=MAX_FILTER_ITEMS)] = Field(
        default_factory=list, description="Alert kinds (none: every kind)"
    )
    experiments: Annotated[list[ExperimentKey], Field(max_length=MAX_FILTER_ITEMS)] = Field(
        default_factory=list, description="Experiments (none: every experiment)"
    )
    description: Annotated[str, Field(max_length=MAX_WEBHOOK_DESCRIPTION_LENGTH)] = ""


_Positive = Annotated[FiniteNumber, Field(gt=0)]


class MetricBody(Strict):
    """``PUT /v1/metrics``: a catalogue definition (`abtest.catalogue.MetricDefinition`),
    why it changes, and optionally the version it was read at."""

    name: Annotated[
        str,
        Field(
            pattern=anchored(CATALOGUE_NAME_PATTERN),
            examples=["revenue", "clicks/searches", "latency_ms:p95"],
        ),
    ]
    type: Literal["binomial", "count", "sum", "ratio", "quantile"] = Field(
        description="binomial (a proportion), count or sum (a mean of a per-unit count or "
        "total), ratio (num/den), quantile (name:pNN)"
    )
    unit: Annotated[str, Field(max_length=MAX_UNIT_LENGTH)] = ""
    higher_is_better: bool = True
    cap: _Positive | None = Field(
        default=None, description="Each unit's value is capped at this (count and sum metrics)"
    )
    attribution_window_hours: _Positive | None = Field(
        default=None, description="Only a unit's events this long after its first exposure count"
    )
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_LENGTH)] = ""
    reason: Annotated[str, Field(max_length=MAX_REASON_LENGTH)] | None = Field(
        default=None, description="Why it changes, kept in the metric's audit trail"
    )
    base_version: Annotated[int, Field(ge=0), WHOLE_NUMBER] | None = Field(
        default=None, description="The version this change was made from (0: a new metric); "
        "409 when the catalogue has moved on",
    )  # fmt: skip


# Every request model, for the OpenAPI document's components.
MODELS: Final = (
    AssignBody, AssignBatchBody, EventBatch, ShipBody, KeyBody, ReasonBody, ClockBody,
    WebhookBody, MetricBody,
)  # fmt: skip
