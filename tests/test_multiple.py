"""Holm and Benjamini-Hochberg agree with statsmodels and keep their invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from statsmodels.stats.multitest import multipletests

from abtest.errors import InvalidInput
from analysis import adjust_p_values
from tests.strategies import p_value_lists

SM_METHOD = {"holm": "holm", "bh": "fdr_bh"}


@pytest.mark.parametrize("method", ["holm", "bh"])
@pytest.mark.parametrize("size", [1, 2, 5, 20, 200])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_statsmodels_multipletests(method, size, seed):
    """Adjusted p-values equal statsmodels' multipletests on seeded p-values with ties."""
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, size) ** 3, [0.0, 1.0, 0.01, 0.01]])
    ours = adjust_p_values(p, method=method)
    reject, ref, _, _ = multipletests(p, alpha=0.05, method=SM_METHOD[method])
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(ours <= 0.05, reject)


def test_holm_is_the_default():
    """Without a method the adjustment is Holm's."""
    p = [0.01, 0.02, 0.03, 0.5]
    np.testing.assert_allclose(adjust_p_values(p), multipletests(p, method="holm")[1])


def test_keeps_shape_and_leaves_nan_out_of_the_family():
    """A 2-d table stays 2-d; nan entries stay nan and do not enlarge the family."""
    p = np.array([[0.01, np.nan], [0.04, 0.03]])
    out = adjust_p_values(p)
    assert out.shape == (2, 2)
    assert np.isnan(out[0, 1])
    np.testing.assert_allclose(
        out[~np.isnan(p)], multipletests([0.01, 0.04, 0.03], method="holm")[1]
    )
    assert np.isnan(adjust_p_values([np.nan])).all()


@pytest.mark.parametrize(
    ("p", "method", "field"),
    [([0.1, 1.2], "holm", "p_values"), ([-0.1], "bh", "p_values"), ([0.1], "bonferroni", "method")],
)
def test_bad_input(p, method, field):
    """P-values outside [0, 1] or an unknown method raise InvalidInput."""
    with pytest.raises(InvalidInput) as info:
        adjust_p_values(p, method=method)
    assert info.value.field == field


@pytest.mark.parametrize("method", ["holm", "bh"])
@given(p=p_value_lists)
def test_adjusted_are_at_least_raw_at_most_one_and_monotone(method, p):
    """Adjusted >= raw, <= 1, and ordered like the raw p-values."""
    raw = np.array(p)
    adj = adjust_p_values(raw, method=method)
    assert (adj >= raw - 1e-15).all()
    assert (adj <= 1.0).all()
    order = np.argsort(raw, kind="stable")
    assert (np.diff(adj[order]) >= -1e-15).all()
