"""Request parsing shared by the views: a JSON object body, typed fields, query flags."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final, NoReturn

from flask import request

from abtest.errors import InvalidInput
from abtest.experiment import SLUG


def _no_constant(name: str) -> NoReturn:
    raise InvalidInput(f"{name} is not valid JSON (numbers must be finite)", "$")


# Built once: json.loads(raw, parse_constant=...) builds a new decoder on every call.
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant)


def json_object(*, allowed: Iterable[str] | None = None) -> dict[str, Any]:
    """The body as a JSON object; malformed JSON, NaN/Infinity or unknown fields -> 400."""
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413 is raised here
    if not raw.strip():
        raise InvalidInput("a JSON object body is required", "$")
    try:
        # What json.loads does with bytes: detect UTF-8/16/32, then decode.
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 JSON"
        raise InvalidInput(f"malformed JSON: {message}", "$") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object", "$")
    if allowed is not None:
        only_fields(body, allowed)
    return body


def only_fields(body: dict[str, Any], allowed: Iterable[str], where: str = "") -> None:
    """400 naming the first field of ``body`` not in ``allowed`` (``where`` prefixes it)."""
    known = set(allowed)
    for name in body:
        if name not in known:
            raise InvalidInput("unknown field", where + str(name))


def experiment_key(value: object, field: str = "experiment") -> str:
    """A string that can name an experiment (a slug); else 400."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("required: an experiment key", field)
    if not SLUG.match(value):
        raise InvalidInput(f"'{value[:80]}' is not an experiment key (a slug)", field)
    return value


def flag(name: str) -> bool:
    """A boolean query parameter: true/1/yes or false/0/no (absent: false)."""
    raw = request.args.get(name, "false").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no", ""):
        return False
    raise InvalidInput("must be true or false", name)
