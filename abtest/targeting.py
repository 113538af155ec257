"""Targeting rules on unit attributes. Pure.

Semantics, chosen so that a rule never raises on odd input and never matches by accident:

* a missing attribute fails every operator except ``exists`` (``exists: false`` matches it);
* ``eq``/``ne``/``in``/``not_in`` compare JSON values strictly: ``"1"`` is not ``1`` and
  ``true`` is not ``1``; ``ne`` and ``not_in`` match any present value that differs;
* ``gt``/``gte``/``lt``/``lte`` compare numbers with numbers and strings with strings; any
  other pairing (a string against a number, a boolean, null) does not match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

OPERATORS: Final = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists")
_ORDER_OPS: Final = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _kind(value: object) -> str:
    """The JSON type of a value, keeping bool apart from number."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "other"


def _same(a: object, b: object) -> bool:
    return _kind(a) == _kind(b) and a == b


@dataclass(frozen=True)
class Rule:
    """``attribute op value``; build it with `Rule.build`, which checks the value's type."""

    attribute: str
    op: str
    value: Any

    @classmethod
    def build(cls, attribute: str, op: str, value: Any) -> Rule:
        """Validate the value for the operator; raise ValueError saying what is expected."""
        if op in ("in", "not_in"):
            if not isinstance(value, list | tuple):
                raise ValueError(f"'{op}' needs a list of values")
            value = tuple(value)
        elif op in _ORDER_OPS:
            if _kind(value) not in ("number", "string") or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise ValueError(f"'{op}' needs a finite number or a string")
        elif op == "exists":
            if not isinstance(value, bool):
                raise ValueError("'exists' needs true or false")
        elif op not in OPERATORS:
            raise ValueError(f"unknown operator '{op}'")
        return cls(attribute, op, value)

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether the unit's attributes satisfy this rule."""
        present = self.attribute in attributes
        if self.op == "exists":
            return present is self.value
        if not present:
            return False
        actual = attributes[self.attribute]
        if self.op == "eq":
            return _same(actual, self.value)
        if self.op == "ne":
            return not _same(actual, self.value)
        if self.op == "in":
            return any(_same(actual, v) for v in self.value)
        if self.op == "not_in":
            return not any(_same(actual, v) for v in self.value)
        if _kind(actual) != _kind(self.value):
            return False
        return bool(_ORDER_OPS[self.op](actual, self.value))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"attribute": self.attribute, "op": self.op, "value": value}


def matches_all(rules: tuple[Rule, ...], attributes: Mapping[str, Any]) -> bool:
    """True when every rule holds (an empty rule list matches everyone)."""
    return all(rule.matches(attributes) for rule in rules)
