"""The assignment request bodies (``POST /v1/assign`` and ``/v1/assign/batch``) as pydantic
models, shared by the service, which validates and publishes them, and `abtest.client`,
which checks a request with them before it is sent or queued."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, StringConstraints

from abtest.assign_calls import MAX_BATCH_ASSIGNMENTS, MAX_EXPOSURE_DELAY_US
from abtest.attributes import (
    MAX_ATTRIBUTES,
    MAX_VALUE_LENGTH,
    NAME_PATTERN,
    check_attribute_name,
    segment_value,
)
from abtest.errors import InvalidInput
from abtest.experiment_schema import anchored
from abtest.json_input import unsafe_value
from abtest.schemas import WHOLE_NUMBER, ExperimentKey, Strict, UnitId, validate


def _known_value(value: object) -> object:
    # One clear error per bad value (a union would report one per member type).
    try:
        segment_value(value, "")
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return value


def _bounded(value: object) -> object:
    if isinstance(value, dict):
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"{len(value)} attributes; at most {MAX_ATTRIBUTES} are allowed")
        for name in value:
            try:
                check_attribute_name(name, "")
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
    return value


AttributeName = Annotated[str, StringConstraints(pattern=anchored(NAME_PATTERN))]
AttributeValue = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]
    | bool
    | Annotated[int, Field(ge=-(2**53 - 1), le=2**53 - 1)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | None,
    BeforeValidator(_known_value),
]

_MIN_TIME_US: Final = 946_684_800_000_000  # 2000-01-01T00:00:00Z
_MAX_SAFE_INTEGER: Final = 2**53 - 1  # the largest integer every JSON reader keeps exactly


class AssignBody(Strict):
    """``POST /v1/assign``: one unit in one experiment."""

    experiment: ExperimentKey
    unit_id: UnitId
    attributes: Annotated[
        dict[AttributeName, AttributeValue],
        Field(max_length=MAX_ATTRIBUTES),
        BeforeValidator(_bounded),
    ] = Field(
        default_factory=dict,
        description=(
            "The unit's attributes (country, platform, app version...): read by targeting, "
            "and kept with the first exposure as text for the analysis by segment "
            "(`abtest analyze --segment country`); null means not known and is not kept"
        ),
        examples=[{"country": "DE", "platform": "ios", "app_version": 500}],
        # Names outside the pattern are refused, which patternProperties alone does not say.
        json_schema_extra={"additionalProperties": False},
    )


class BatchItem(AssignBody):
    """One unit of ``POST /v1/assign/batch``."""

    assigned_at: (
        Annotated[int, Field(ge=_MIN_TIME_US, le=_MAX_SAFE_INTEGER), WHOLE_NUMBER] | None
    ) = Field(
        default=None,
        description=(
            "When the caller assigned the unit itself (epoch microseconds; the client's "
            "local evaluation sends it). A first exposure is stamped with the earlier of "
            "this and the request's arrival, but never more than "
            f"{MAX_EXPOSURE_DELAY_US // 60_000_000} minutes before arrival."
        ),
    )


class AssignBatchBody(Strict):
    """``POST /v1/assign/batch``: up to `MAX_BATCH_ASSIGNMENTS` units, all or nothing."""

    requests: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH_ASSIGNMENTS)]


def check_assign_request(
    experiment: str, unit_id: str, attributes: Mapping[str, Any] | None
) -> None:
    """`InvalidInput` naming the field when the service would refuse this assignment request
    (also for a lone surrogate, NaN or infinity anywhere in the attributes)."""
    body = {"experiment": experiment, "unit_id": unit_id, "attributes": dict(attributes or {})}
    problem = unsafe_value(body)
    if problem is not None:
        raise InvalidInput(problem.message, problem.field)
    validate(AssignBody, body)
