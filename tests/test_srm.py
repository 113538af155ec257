"""Sample-ratio mismatch: agrees with scipy.stats.chisquare and flags broken splits."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from abtest.errors import InvalidInput
from analysis import srm_test


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        ({"control": 5000, "treatment": 5000}, {"control": 50, "treatment": 50}),
        ({"control": 50_000, "treatment": 50_900}, {"control": 1, "treatment": 1}),
        ({"a": 1000, "b": 1100, "c": 950}, {"a": 1, "b": 1, "c": 1}),
        ({"control": 9000, "treatment": 1040}, {"control": 90, "treatment": 10}),
        ({"a": 30, "b": 17, "c": 60, "d": 4}, {"a": 0.3, "b": 0.2, "c": 0.4, "d": 0.1}),
    ],
)
def test_matches_scipy_chisquare(observed, weights):
    """Statistic and p-value equal scipy.stats.chisquare against N·w/Σw."""
    result = srm_test(observed=observed, weights=weights)
    keys = list(weights)
    total = sum(observed.values())
    expected = [total * weights[k] / sum(weights.values()) for k in keys]
    ref = stats.chisquare([observed[k] for k in keys], expected)
    assert result.statistic == pytest.approx(ref.statistic, rel=1e-12, abs=1e-12)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert result.expected == pytest.approx(dict(zip(keys, expected, strict=True)))
    assert result.ok == (ref.pvalue >= 0.001)


def test_known_mismatch_is_not_ok():
    """821,588 vs 815,482 units on a 50/50 split is a textbook SRM (p ≈ 1.8e-6)."""
    result = srm_test(observed={"a": 821_588, "b": 815_482}, weights={"a": 1, "b": 1})
    assert not result.ok
    assert result.p_value == pytest.approx(1.8e-6, rel=0.05)


def test_threshold_is_configurable():
    """A p-value of about 0.004 passes at 0.001 and fails at 0.01."""
    observed = {"a": 10_000, "b": 10_410}
    assert srm_test(observed=observed, weights={"a": 1, "b": 1}).ok
    assert not srm_test(observed=observed, weights={"a": 1, "b": 1}, threshold=0.01).ok


def test_missing_variant_counts_as_zero():
    """A configured variant with no units at all is a mismatch, not ignored."""
    result = srm_test(observed={"a": 1000}, weights={"a": 1, "b": 1})
    assert result.observed == {"a": 1000, "b": 0}
    assert not result.ok


def test_zero_weight_variant():
    """A zero-weight variant is left out when empty and is an outright SRM with units."""
    empty = srm_test(observed={"a": 500, "b": 520, "off": 0}, weights={"a": 1, "b": 1, "off": 0})
    assert empty.ok
    assert empty.df == 1
    leaked = srm_test(observed={"a": 500, "b": 520, "off": 3}, weights={"a": 1, "b": 1, "off": 0})
    assert leaked.p_value == 0.0
    assert not leaked.ok
    assert json.loads(json.dumps(leaked.to_dict(), allow_nan=False))["statistic"] is None


@pytest.mark.parametrize(
    ("observed", "weights", "field"),
    [
        ({"a": 10, "x": 3}, {"a": 1, "b": 1}, "observed"),
        ({"a": 0, "b": 0}, {"a": 1, "b": 1}, "observed"),
        ({"a": -1, "b": 5}, {"a": 1, "b": 1}, "observed"),
        ({"a": 1, "b": 5}, {"a": -1, "b": 1}, "weights"),
        ({"a": 1, "b": 5}, {"a": 0, "b": 0}, "weights"),
    ],
)
def test_bad_input(observed, weights, field):
    """Unknown variants, no units, negative counts or bad weights raise InvalidInput."""
    with pytest.raises(InvalidInput) as info:
        srm_test(observed=observed, weights=weights)
    assert info.value.field == field


def test_bad_threshold():
    """A threshold outside [0, 1] is rejected."""
    with pytest.raises(InvalidInput):
        srm_test(observed={"a": 1, "b": 1}, weights={"a": 1, "b": 1}, threshold=5)
