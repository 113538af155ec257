"""Request parsing shared by the views: the JSON body, checked against its model, and the
path and query values."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel

from abtest.errors import InvalidInput
from abtest.experiment import SLUG
from abtest.json_input import decode_bytes, loads
from abtest.schemas import validate

Model = TypeVar("Model", bound=BaseModel)


def json_object() -> dict[str, Any]:
    """The body as a JSON object; 400 for malformed JSON, and for a lone surrogate, NaN,
    Infinity, an overflowing number or an over-long integer anywhere in it (naming where)."""
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413 is raised here
    if not raw.strip():
        raise InvalidInput("a JSON object body is required", "$")
    text, raw_surrogates = decode_bytes(raw)
    body = loads(text, raw_surrogates=raw_surrogates)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", "$")
    return body


def json_body(model: type[Model]) -> Model:
    """The body validated as ``model`` (`service.schemas`); 4xx naming the first bad field."""
    return validate(model, json_object())


def experiment_key(value: object, field: str = "experiment") -> str:
    """A string that can name an experiment (a slug); else 400."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("required: an experiment key", field)
    if not SLUG.fullmatch(value):
        shown = value[:80].encode("utf-8", "backslashreplace").decode()
        raise InvalidInput(f"'{shown}' is not an experiment key (a slug)", field)
    return value


def flag(name: str) -> bool:
    """A boolean query parameter: true/1/yes or false/0/no (absent: false)."""
    raw = request.args.get(name, "false").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no", ""):
        return False
    raise InvalidInput("must be true or false", name)
