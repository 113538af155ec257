"""The JSON request bodies of the API as pydantic models: the views validate with them and
`service.openapi` publishes their JSON Schema, so the two cannot drift apart.

The assignment and event bodies are the core's own (`abtest.assign_requests`,
`abtest.events.EventBatch`), which `abtest.client.Client` checks its requests with too.
Experiment definitions are validated by `abtest.experiment.Experiment.from_dict`, which
reports every problem at once; their published schema is `abtest.experiment_schema`.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field

from abtest.assign_requests import AssignBatchBody, AssignBody
from abtest.catalogue import CATALOGUE_NAME_PATTERN, MAX_DESCRIPTION_LENGTH, MAX_UNIT_LENGTH
from abtest.events import EventBatch
from abtest.experiment_schema import anchored
from abtest.schemas import WHOLE_NUMBER, ExperimentKey, FiniteNumber, Strict
from abtest.store import MAX_REASON_LENGTH

__all__ = [
    "MODELS", "AssignBatchBody", "AssignBody", "EventBatch", "KeyBody", "MetricBody", "ShipBody",
]  # fmt: skip


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
MODELS: Final = (AssignBody, AssignBatchBody, EventBatch, ShipBody, KeyBody, MetricBody)
