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
from abtest.events import EventBatch
from abtest.schemas import ExperimentKey, Strict
from abtest.store import MAX_REASON_LENGTH

__all__ = ["MODELS", "AssignBatchBody", "AssignBody", "EventBatch", "KeyBody", "ShipBody"]


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


# Every request model, for the OpenAPI document's components.
MODELS: Final = (AssignBody, AssignBatchBody, EventBatch, ShipBody, KeyBody)
