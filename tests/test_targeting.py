"""Targeting operators, including missing attributes and type mismatches."""

from __future__ import annotations

import pytest

from abtest import Rule
from abtest.targeting import matches_all


@pytest.mark.parametrize(
    ("op", "value", "attributes", "expected"),
    [
        ("eq", "DE", {"country": "DE"}, True),
        ("eq", "DE", {"country": "FR"}, False),
        ("eq", 1, {"country": "1"}, False),  # string vs number: no coercion
        ("eq", 1, {"country": True}, False),  # bool is not a number
        ("eq", "DE", {}, False),  # missing
        ("ne", "DE", {"country": "FR"}, True),
        ("ne", "DE", {"country": "DE"}, False),
        ("ne", "1", {"country": 1}, True),
        ("ne", "DE", {}, False),  # missing fails every operator but exists
        ("in", ["DE", "FR"], {"country": "FR"}, True),
        ("in", ["DE", "FR"], {"country": "US"}, False),
        ("in", [1, 2], {"country": "1"}, False),
        ("in", ["DE"], {}, False),
        ("not_in", ["DE", "FR"], {"country": "US"}, True),
        ("not_in", ["DE", "FR"], {"country": "DE"}, False),
        ("not_in", ["DE"], {}, False),
        ("gt", 10, {"country": 11}, True),
        ("gt", 10, {"country": 10}, False),
        ("gte", 10, {"country": 10}, True),
        ("gte", 10.5, {"country": 10}, False),
        ("lt", 10, {"country": 9.5}, True),
        ("lt", 10, {"country": 10}, False),
        ("lte", 10, {"country": 10}, True),
        ("lte", 10, {"country": "9"}, False),  # string vs number: no match, no error
        ("gt", "b", {"country": "c"}, True),  # strings compare with strings
        ("gt", "b", {"country": 5}, False),
        ("gt", 1, {"country": None}, False),
        ("gt", 0, {"country": True}, False),
        ("lt", 5, {"country": [1]}, False),
        ("gt", 5, {}, False),
        ("exists", True, {"country": None}, True),
        ("exists", True, {}, False),
        ("exists", False, {}, True),
        ("exists", False, {"country": "DE"}, False),
    ],
)
def test_operator_semantics(op, value, attributes, expected):
    """Each operator matches exactly as the module docstring specifies."""
    assert Rule.build("country", op, value).matches(attributes) is expected


def test_all_rules_must_hold():
    """A unit is targeted only when every rule holds; no rules target everyone."""
    rules = (Rule.build("country", "eq", "DE"), Rule.build("age", "gte", 18))
    assert matches_all(rules, {"country": "DE", "age": 30})
    assert not matches_all(rules, {"country": "DE", "age": 17})
    assert not matches_all(rules, {"country": "DE"})
    assert matches_all((), {})


@pytest.mark.parametrize(
    ("op", "value"),
    [("in", "DE"), ("gt", [1]), ("lt", None), ("gte", float("nan")), ("exists", 1), ("like", 1)],
)
def test_build_rejects_values_the_operator_cannot_use(op, value):
    """Rule.build refuses a value of the wrong shape for its operator."""
    with pytest.raises(ValueError, match=op if op == "like" else "needs"):
        Rule.build("country", op, value)
