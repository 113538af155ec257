"""Input shapes as pydantic models: one definition both validates and documents a request.

The field types here are shared by the core (`abtest.events`, `abtest.client`) and the
service (`service.schemas`), whose OpenAPI document renders them with
``model_json_schema``; a constraint added here is enforced and published at once.  Models
are strict (no "1" for 1, no unknown fields) and every text field is length-bound, which
also makes pydantic refuse a lone surrogate in it.

`validate` turns pydantic's errors into the project's `InvalidInput` (a 400) naming the
field as the API always has (``events[3].unit_id``), and a list over its size limit into
`PayloadTooLarge` (a 413).  Not on the assignment hot path: `abtest.assignment` never
imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails

from abtest.alerts import KIND_PATTERN, WEBHOOK_URL_PATTERN
from abtest.errors import AbtestError, InvalidInput, PayloadTooLarge
from abtest.experiment import (
    MAX_UNIT_ID_LENGTH,
    METRIC_NAME_PATTERN,
    SLUG_PATTERN,
    UNIT_ID_PATTERN,
)
from abtest.experiment_schema import anchored
from abtest.json_input import ROOT, field_name

__all__ = [
    "NOT_BLANK",
    "WHOLE_NUMBER",
    "ExperimentKey",
    "FiniteNumber",
    "MetricName",
    "Strict",
    "UnitId",
    "field_path",
    "union_message",
    "validate",
]

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """Base of every input model: strict types, unknown fields refused, frozen."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


ExperimentKey = Annotated[
    str, StringConstraints(pattern=anchored(SLUG_PATTERN)), Field(examples=["ranker-v2"])
]
UnitId = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_UNIT_ID_LENGTH, pattern=anchored(UNIT_ID_PATTERN)
    ),
    Field(examples=["user-7"]),
]
MetricName = Annotated[
    str, StringConstraints(pattern=anchored(METRIC_NAME_PATTERN)), Field(examples=["purchase"])
]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
NOT_BLANK: Final = r"\S"  # somewhere in the text: pydantic and JSON Schema patterns search


def _whole(value: object) -> object:
    # JSON has one number type: 2.0 is the integer 2 to JSON Schema, so to us too.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Goes after the ``Field`` with the bounds: ``Annotated[int, Field(ge=...), WHOLE_NUMBER]``
# (placed before them, the bounds are published as "ge"/"le", which JSON Schema ignores).
WHOLE_NUMBER: Final = BeforeValidator(_whole)

# What a pattern means, for messages a person can act on.
_PATTERN_NAMES: Final = {
    anchored(SLUG_PATTERN): "a slug (a-z, 0-9, '_', '-', '.'; up to 64 characters)",
    anchored(METRIC_NAME_PATTERN): "a metric name (letters, digits, '_', '-', '.')",
    anchored(WEBHOOK_URL_PATTERN): "an http:// or https:// URL with a host",
    anchored(KIND_PATTERN): "an alert kind (a-z, 0-9, '_')",
}
_PATTERN_MESSAGES: Final = {
    anchored(UNIT_ID_PATTERN): "must not contain the NUL character",
    NOT_BLANK: "must not be blank",
}


def validate(
    model: type[Model], data: object, *, where: str = ROOT, context: Mapping[str, Any] | None = None
) -> Model:
    """``data`` as ``model``; `InvalidInput` / `PayloadTooLarge` naming the first bad field.

    ``where`` is the path of ``data`` itself (``events[2]`` when one event is checked on
    its own); ``context`` reaches the models' validators (e.g. the current time).
    """
    try:
        return model.model_validate(data, context=context)
    except PydanticValidationError as exc:
        raise as_error(exc.errors(include_url=False)[0], where) from None


def as_error(error: ErrorDetails, where: str = ROOT) -> AbtestError:
    """One pydantic error as the project's error, with the field path and a plain message."""
    field = field_path(error["loc"], where)
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "too_long" and isinstance(value, list):
        limit = ctx.get("max_length")
        return PayloadTooLarge(f"{len(value)} items in one batch; the limit is {limit}", field)
    message = _MESSAGES.get(kind)
    return InvalidInput(error["msg"] if message is None else message(ctx, value), field)


def union_message(value: object, exc: PydanticValidationError, wrong_type: str) -> str:
    """One message for a value refused by every member of a ``str | number`` union: the
    string member's error for a string, the number member's for a number, else
    ``wrong_type``.  (pydantic reports one error per member, located at the member.)"""
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        return wrong_type
    errors = exc.errors(include_url=False)
    fits = [e for e in errors if isinstance(value, str) == str(e["loc"][-1]).endswith("str")]
    return as_error((fits or errors)[0]).message


def _pattern_message(ctx: dict[str, Any], value: object) -> str:
    pattern = str(ctx.get("pattern", ""))
    if pattern in _PATTERN_MESSAGES:
        return _PATTERN_MESSAGES[pattern]
    shown = str(value)[:80].encode("utf-8", "backslashreplace").decode()
    return f"'{shown}' is not {_PATTERN_NAMES.get(pattern, 'of the form ' + pattern)}"


_MESSAGES: Final[dict[str, Callable[[dict[str, Any], object], str]]] = {
    "missing": lambda _c, _v: "required",
    "extra_forbidden": lambda _c, _v: "unknown field",
    "string_type": lambda _c, _v: "must be a string",
    "string_too_short": lambda _c, _v: "must be a non-empty string",
    "string_too_long": lambda c, _v: f"longer than {c.get('max_length')} characters",
    "string_pattern_mismatch": _pattern_message,
    "string_unicode": lambda _c, _v: "must be valid Unicode text (a lone surrogate is not)",
    "float_type": lambda _c, _v: "must be a number",
    "finite_number": lambda _c, _v: "must be a finite number",
    "int_type": lambda _c, _v: "must be an integer",
    "bool_type": lambda _c, _v: "must be true or false",
    "dict_type": lambda _c, _v: "must be an object",
    "model_type": lambda _c, _v: "must be an object",
    "list_type": lambda _c, _v: "must be a list",
    "greater_than": lambda c, _v: f"must be more than {c.get('gt')}",
    "greater_than_equal": lambda c, _v: f"must be at least {c.get('ge')}",
    "less_than_equal": lambda c, _v: f"must be at most {c.get('le')}",
    "too_short": lambda c, _v: f"must hold at least {c.get('min_length')}",
    "value_error": lambda c, _v: str(c.get("error")),  # a validator's own message
}


def field_path(loc: tuple[int | str, ...], where: str = ROOT) -> str:
    """pydantic's ``("events", 3, "unit_id")`` as ``events[3].unit_id`` (under ``where``)."""
    path = where
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else field_name(path, part)
    return path
