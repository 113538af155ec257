"""Unit attributes sent at assignment: the rules they must meet, and the form kept with the
unit's first exposure (its segments).  Pure: no I/O.

An app sends attributes such as ``{"country": "DE", "platform": "ios", "app_version":
500}``; targeting reads them as sent, and the first exposure keeps them as short strings, so
that the analysis can break every metric down by segment (``abtest analyze --segment
country``).  Every exposure carries them, so they are bounded:

* at most `MAX_ATTRIBUTES` attributes per unit;
* a name is 1 to `MAX_NAME_LENGTH` characters: a letter, then letters, digits, ``_``,
  ``-`` or ``.``;
* a value is a string of at most `MAX_VALUE_LENGTH` characters, a finite number or a
  boolean; it is kept as text (``500`` as ``"500"``, ``true`` as ``"true"``), so that a
  segment is one label whatever type the app sent;
* ``null`` means "not known": targeting sees it, the exposure does not keep it.

Lists, objects and longer strings are refused (`InvalidInput` naming
``attributes.<name>``) rather than cut: a truncated segment label would silently merge
different segments.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from abtest.errors import InvalidInput

MAX_ATTRIBUTES: Final = 20
MAX_NAME_LENGTH: Final = 40
MAX_VALUE_LENGTH: Final = 64
NAME_PATTERN: Final = rf"[A-Za-z][A-Za-z0-9_.\-]{{0,{MAX_NAME_LENGTH - 1}}}"
_NAME: Final = re.compile(NAME_PATTERN)


def check_attribute_name(name: object, field: str) -> str:
    """``name`` if it is a valid attribute name, else `InvalidInput` naming ``field``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"attribute names are 1 to {MAX_NAME_LENGTH} characters: a letter, then letters, "
            f"digits, '_', '-' or '.'; got {name!r}"[:200],
            field,
        )
    return name


def segment_value(value: object, field: str) -> str | None:
    """The text a value is kept as (None for null); `InvalidInput` naming ``field`` if bad."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput("must be a finite number", field)
        # JSON has one number type: 500.0 is the segment 500 (as `abtest.schemas` reads it).
        whole = value.is_integer() and abs(value) <= 2**53
        text = str(int(value)) if whole else json.dumps(value)
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidInput(
            f"must be a string, a number, a boolean or null, not {type(value).__name__}", field
        )
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"must be at most {MAX_VALUE_LENGTH} characters", field)
    return text


def segment_attributes(attributes: object, field: str = "attributes") -> dict[str, str]:
    """Validate attributes sent at assignment; return what the first exposure keeps.

    Parameters
    ----------
    attributes : object
        The request's attributes (None for none).
    field : str
        The request field they came from, for error messages (``requests[3].attributes``).

    Raises
    ------
    InvalidInput
        Not an object, too many attributes, a bad name or a bad value; ``field`` names it
        (``attributes.country``).

    Examples
    --------
    >>> segment_attributes({"country": "DE", "app_version": 500, "beta": True, "x": None})
    {'country': 'DE', 'app_version': '500', 'beta': 'true'}
    """
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise InvalidInput("must be an object of attribute values", field)
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidInput(
            f"{len(attributes)} attributes; at most {MAX_ATTRIBUTES} are allowed", field
        )
    kept: dict[str, str] = {}
    for name, value in attributes.items():
        check_attribute_name(name, field)
        text = segment_value(value, f"{field}.{name}")
        if text is not None:
            kept[name] = text
    return kept


def encode(kept: Mapping[str, str]) -> str:
    """The compact JSON an exposure entry stores (``""`` for none)."""
    if not kept:
        return ""
    return json.dumps(dict(kept), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def decode(text: str) -> dict[str, str]:
    """`encode`'s inverse; ValueError if ``text`` is not such an object."""
    if not text:
        return {}
    value: Any = json.loads(text)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("attributes must be an object of strings")
    return value


__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_NAME_LENGTH",
    "MAX_VALUE_LENGTH",
    "NAME_PATTERN",
    "check_attribute_name",
    "decode",
    "encode",
    "segment_attributes",
    "segment_value",
]
