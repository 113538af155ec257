"""Untrusted JSON in: values Python's `json` accepts but nothing downstream can keep. Pure.

Python's `json` module reads four things that later break storage, rendering or arithmetic:

* a lone surrogate escape (``"\\ud800"``, or its raw bytes under ``surrogatepass``) gives a
  `str` that cannot be encoded as UTF-8: storing it works, but every page, export or log
  line that shows it fails later;
* an integer longer than `sys.get_int_max_str_digits` (4,300 digits by default) raises
  `ValueError` deep inside the parser, with no position;
* a number such as ``1e400`` silently becomes ``inf``;
* the ``NaN`` / ``Infinity`` literals that JSON itself does not allow.

`loads` refuses all four with `InvalidInput` naming the field where the first one sits
(``events[3].unit_id``, ``attributes.country``); `unsafe_value` finds them in a value built
in Python (a client's attributes, a config passed as a dict).  The walk only runs when the
text holds a surrogate escape or a parser hook saw a bad number, so ordinary bodies cost one
regular-expression scan more than `json.loads`.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, Final

from abtest.errors import InvalidInput, Problem

ROOT: Final = "$"
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


class _BadNumber:
    """Stands in for a number the parser read but Python cannot keep (found by the walk)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


_seen_bad_number = threading.local()  # the parser hooks run inside a shared decoder


def _parse_int(text: str) -> int | _BadNumber:
    limit = sys.get_int_max_str_digits()
    if limit and len(text.lstrip("-")) > limit:
        _seen_bad_number.flag = True
        return _BadNumber(f"an integer of {len(text.lstrip('-'))} digits; at most {limit}")
    return int(text)


def _parse_float(text: str) -> float | _BadNumber:
    value = float(text)
    if math.isfinite(value):
        return value
    _seen_bad_number.flag = True
    return _BadNumber(f"{text[:24]}... is too large for a number (about 1.8e308 at most)")


def _parse_constant(name: str) -> _BadNumber:
    _seen_bad_number.flag = True
    return _BadNumber(f"{name} is not valid JSON (numbers must be finite)")


# Built once: json.loads(text, parse_int=...) would build a new decoder on every call.
_DECODER: Final = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def decode_bytes(raw: bytes) -> tuple[str, bool]:
    """The text of a JSON body (UTF-8/16/32, as `json.loads` detects) and whether it held
    raw surrogate code points; `InvalidInput` when it is not text at all."""
    encoding = json.detect_encoding(raw)
    try:
        return raw.decode(encoding), False
    except UnicodeDecodeError:
        pass
    try:  # surrogates encoded as bytes: decode them, so the walk can name their field
        return raw.decode(encoding, "surrogatepass"), True
    except UnicodeDecodeError:
        raise InvalidInput("malformed JSON: not UTF-8 JSON", ROOT) from None


def loads(text: str, *, raw_surrogates: bool = True) -> Any:
    """Parse JSON text; `InvalidInput` for malformed JSON (field ``$``) or for a value that
    Python cannot keep (the field that holds it).

    ``raw_surrogates=False`` says the caller knows the text has no surrogate code points
    (it came from a strict decode), which spares a scan.
    """
    _seen_bad_number.flag = False
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc.msg}", ROOT) from None
    except (RecursionError, ValueError):  # nesting too deep for the parser
        raise InvalidInput("malformed JSON: nested too deeply", ROOT) from None
    if (
        _seen_bad_number.flag
        or _SURROGATE_ESCAPE.search(text)
        or (raw_surrogates and _SURROGATE.search(text))
    ):
        problem = unsafe_value(value)
        if problem is not None:
            raise InvalidInput(problem.message, problem.field)
    return value


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def unsafe_value(value: Any, path: str = ROOT) -> Problem | None:
    """The first string with a lone surrogate or number Python cannot keep, by field path.

    Covers dict keys, strings, floats (non-finite) and the parser's stand-ins above.
    """
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                return Problem(where, "must be valid Unicode text (a lone surrogate is not)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Problem(where, "must be a finite number")
        elif isinstance(item, _BadNumber):
            return Problem(where, item.message)
        elif isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                name = field_name(where, key)
                if isinstance(key, str) and has_surrogate(key):
                    return Problem(name, "the field name must be valid Unicode text")
                children.append((name, child))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def field_name(parent: str, key: object) -> str:
    """``parent.key`` (``key`` alone under the root), printable even for a bad key."""
    text = str(key).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if parent == ROOT else f"{parent}.{text}"


def load_stored(text: str) -> Any:
    """JSON that abtest itself wrote, with any lone surrogate shown as U+FFFD.

    Versions before the checks above stored what they were sent; a description with a
    ``"\\ud800"`` escape must not make every later read of it fail.
    """
    value = json.loads(text)
    if not _SURROGATE_ESCAPE.search(text):
        return value
    return _replace_surrogates(value)


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if has_surrogate(value) else value
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    return value
