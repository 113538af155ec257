"""Effects from aggregates agree with scipy/statsmodels and keep their invariants.

Tolerances: the same formula computed by scipy or statsmodels agrees to 1e-9 relative
(floating-point only).  Our default normal reference distribution differs from Welch's t
by O(1/df); at 2,000 units per arm the two p-values differ by less than 2e-3 absolute,
which the test pins.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from scipy import stats
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abtest.errors import InvalidInput
from analysis import (
    PairedStats,
    SampleStats,
    mean_difference,
    non_inferiority,
    proportion_difference,
    ratio_difference,
)
from tests.strategies import alternatives, confidence_levels, conversions, unit_values

SM_ALT = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}


def _arms(seed: int, n_c: int = 2000, n_v: int = 1800, shift: float = 0.1):
    rng = np.random.default_rng(seed)
    return rng.lognormal(0.0, 0.8, n_c), rng.lognormal(shift, 0.9, n_v)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_t_matches_scipy(seed, alternative):
    """With distribution="t", statistic, p-value and CI equal scipy's Welch t-test."""
    c, v = _arms(seed)
    ours = mean_difference(
        control=SampleStats.from_values(c),
        variant=SampleStats.from_values(v),
        alternative=alternative,
        distribution="t",
    )
    ref = stats.ttest_ind(v, c, equal_var=False, alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert ours.df == pytest.approx(ref.df, rel=1e-9)
    ci = ref.confidence_interval(0.9)
    assert ours.confidence_interval(0.9) == pytest.approx((ci.low, ci.high), rel=1e-9)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("seed", [4, 5])
def test_normal_matches_statsmodels_ztest(seed, alternative):
    """The default z test equals statsmodels' unequal-variance ztest_ind and its CI."""
    c, v = _arms(seed)
    ours = mean_difference(
        control=SampleStats.from_values(c),
        variant=SampleStats.from_values(v),
        alternative=alternative,
    )
    cm = CompareMeans(DescrStatsW(v), DescrStatsW(c))
    z, p = cm.ztest_ind(alternative=SM_ALT[alternative], usevar="unequal")
    assert ours.statistic == pytest.approx(z, rel=1e-9)
    assert ours.p_value == pytest.approx(p, rel=1e-9)
    lo, hi = cm.zconfint_diff(alpha=0.05, alternative=SM_ALT[alternative], usevar="unequal")
    assert ours.absolute_ci == pytest.approx((lo, hi), rel=1e-9)


def test_normal_and_t_p_values_are_close_at_large_n():
    """At 2,000 units per arm the normal approximation is within 2e-3 of Welch's t p."""
    c, v = _arms(7, n_c=2000, n_v=2000, shift=0.05)
    kw = {"control": SampleStats.from_values(c), "variant": SampleStats.from_values(v)}
    z = mean_difference(**kw)
    t = mean_difference(**kw, distribution="t")
    assert abs(z.p_value - t.p_value) < 2e-3
    assert z.p_value <= t.p_value  # the normal has lighter tails


@pytest.mark.parametrize(
    ("x_c", "n_c", "x_v", "n_v"),
    [(100, 1000, 130, 1000), (5_000, 50_000, 5_210, 49_000), (3, 40, 9, 35), (0, 500, 4, 500)],
)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_unpooled_z_matches_statsmodels_wald(x_c, n_c, x_v, n_v, alternative):
    """The unpooled two-proportion test and CI equal statsmodels' Wald method."""
    ours = proportion_difference(
        control=SampleStats(n_c, x_c, x_c),
        variant=SampleStats(n_v, x_v, x_v),
        alternative=alternative,
    )
    # statsmodels also forms p1/p2 internally, which warns when the control has 0.
    with np.errstate(divide="ignore"):
        ref = sm_proportion.test_proportions_2indep(
            x_v, n_v, x_c, n_c, method="wald", compare="diff", alternative=SM_ALT[alternative]
        )
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    if alternative == "two-sided":
        lo, hi = sm_proportion.confint_proportions_2indep(
            x_v, n_v, x_c, n_c, method="wald", alpha=0.05
        )
        assert ours.absolute_ci == pytest.approx((lo, hi), rel=1e-9)


@pytest.mark.parametrize(("x_c", "n_c", "x_v", "n_v"), [(100, 1000, 130, 1000), (40, 900, 25, 800)])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_pooled_z_matches_statsmodels_proportions_ztest(x_c, n_c, x_v, n_v, alternative):
    """With pooled=True the test statistic equals statsmodels' classic proportions_ztest."""
    ours = proportion_difference(
        control=SampleStats(n_c, x_c, x_c),
        variant=SampleStats(n_v, x_v, x_v),
        alternative=alternative,
        pooled=True,
    )
    z, p = sm_proportion.proportions_ztest([x_v, x_c], [n_v, n_c], alternative=SM_ALT[alternative])
    assert ours.statistic == pytest.approx(z, rel=1e-9)
    assert ours.p_value == pytest.approx(p, rel=1e-9)


def test_relative_effect_uses_delta_method():
    """The relative SE is the first-order delta-method SE of the ratio of means."""
    c, v = _arms(8)
    eff = mean_difference(control=SampleStats.from_values(c), variant=SampleStats.from_values(v))
    m_c, m_v = c.mean(), v.mean()
    var_c, var_v = c.var(ddof=1) / c.size, v.var(ddof=1) / v.size
    expected_se = math.sqrt(var_v / m_c**2 + m_v**2 * var_c / m_c**4)
    assert eff.relative_effect == pytest.approx(m_v / m_c - 1, rel=1e-12)
    assert eff.relative_se == pytest.approx(expected_se, rel=1e-12)
    lo, hi = eff.relative_ci
    assert (lo + hi) / 2 == pytest.approx(eff.relative_effect, rel=1e-12)


def test_relative_effect_against_negative_control_keeps_direction():
    """With a negative control mean the relative effect divides by |mean|: up stays up."""
    c = SampleStats.from_values(np.array([-12.0, -8.0, -10.0, -10.0]))
    v = SampleStats.from_values(np.array([-6.0, -4.0, -5.0, -5.0]))
    eff = mean_difference(control=c, variant=v)
    assert eff.absolute_effect == pytest.approx(5.0)
    assert eff.relative_effect == pytest.approx(0.5)


def test_relative_effect_refused_when_control_mean_is_zero():
    """A zero control mean gives no relative effect, with the reason, and valid JSON."""
    c = SampleStats.from_values(np.array([-1.0, 1.0, 0.0]))
    v = SampleStats.from_values(np.array([1.0, 2.0, 3.0]))
    eff = mean_difference(control=c, variant=v)
    assert eff.relative_effect is None
    assert eff.relative_ci is None
    assert "control mean is 0" in (eff.relative_reason or "")
    out = eff.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["relative_ci"] is None
    assert out["relative_reason"] == eff.relative_reason


def test_one_sided_ci_serialises_open_end_as_null():
    """A one-sided interval has an infinite end that to_dict turns into null."""
    c, v = _arms(9)
    eff = mean_difference(
        control=SampleStats.from_values(c),
        variant=SampleStats.from_values(v),
        alternative="greater",
    )
    assert eff.absolute_ci[1] == math.inf
    assert json.loads(json.dumps(eff.to_dict(), allow_nan=False))["absolute_ci"][1] is None


def test_zero_variance_arms_give_p_one_without_difference():
    """Identical constant arms (e.g. no conversions anywhere) give p = 1 and a zero CI."""
    eff = proportion_difference(control=SampleStats(500, 0, 0), variant=SampleStats(400, 0, 0))
    assert eff.p_value == 1.0
    assert eff.absolute_ci == (0.0, 0.0)


def test_ratio_with_unit_denominators_equals_mean_difference():
    """When every denominator is 1 the ratio metric is the plain mean and so is its SE."""
    c, v = _arms(10)
    ratio = ratio_difference(
        control=PairedStats.from_values(c, np.ones_like(c)),
        variant=PairedStats.from_values(v, np.ones_like(v)),
    )
    mean = mean_difference(control=SampleStats.from_values(c), variant=SampleStats.from_values(v))
    assert ratio.absolute_effect == pytest.approx(mean.absolute_effect, rel=1e-12)
    assert ratio.absolute_se == pytest.approx(mean.absolute_se, rel=1e-9)
    assert ratio.p_value == pytest.approx(mean.p_value, rel=1e-9)


def test_ratio_delta_se_matches_the_sampling_spread():
    """Over 4,000 seeded replicates the delta-method SE of Σy/Σx matches its real spread."""
    rng = np.random.default_rng(11)
    sessions = rng.poisson(3.0, size=(4000, 400)) + 1
    clicks = rng.binomial(sessions, rng.beta(2, 8, size=(4000, 400)))
    ratios = clicks.sum(axis=1) / sessions.sum(axis=1)
    ses = []
    for row in range(0, 4000, 40):
        arm = PairedStats.from_values(clicks[row], sessions[row])
        ses.append(ratio_difference(control=arm, variant=arm).absolute_se / math.sqrt(2))
    assert np.mean(ses) == pytest.approx(ratios.std(ddof=1), rel=0.05)


@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize("margin", [0.02, 0.2])
def test_non_inferiority_matches_statsmodels_shifted_ztest(higher_is_better, margin):
    """The guardrail test is statsmodels' one-sided z test against the shifted null."""
    c, v = _arms(12, shift=0.0)
    eff = mean_difference(control=SampleStats.from_values(c), variant=SampleStats.from_values(v))
    ours = non_inferiority(eff, margin=margin, higher_is_better=higher_is_better)
    cm = CompareMeans(DescrStatsW(v), DescrStatsW(c))
    value, alt = (-margin, "larger") if higher_is_better else (margin, "smaller")
    z, p = cm.ztest_ind(alternative=alt, usevar="unequal", value=value)
    assert ours.statistic == pytest.approx(z, rel=1e-9)
    assert ours.p_value == pytest.approx(p, rel=1e-9)
    assert ours.non_inferior == (p < 0.05)
    # The one-sided bound sits on the safe side of the margin exactly when significant.
    safe = ours.bound > -margin if higher_is_better else ours.bound < margin
    assert safe == ours.non_inferior


def test_non_inferiority_flags_real_harm():
    """A variant 10 % worse fails a 2 % relative guardrail; an equal one passes."""
    rng = np.random.default_rng(13)
    c = SampleStats.from_values(rng.normal(100, 10, 5000))
    worse = SampleStats.from_values(rng.normal(90, 10, 5000))
    same = SampleStats.from_values(rng.normal(100, 10, 5000))
    bad = non_inferiority(mean_difference(control=c, variant=worse), margin=0.02, relative=True)
    ok = non_inferiority(mean_difference(control=c, variant=same), margin=0.02, relative=True)
    assert not bad.non_inferior
    assert ok.non_inferior
    assert json.dumps(ok.to_dict(), allow_nan=False)


S, P = SampleStats, PairedStats
OK = S(5, 5.0, 6.0)
BAD_CALLS = [
    (lambda: mean_difference(control=S(1, 1.0, 1.0), variant=OK), "control"),
    (lambda: mean_difference(control=OK, variant=OK, alternative="both"), "alternative"),
    (lambda: mean_difference(control=OK, variant=OK, level=95), "level"),
    (lambda: mean_difference(control=OK, variant=OK, distribution="cauchy"), "distribution"),
    (lambda: proportion_difference(control=S(10, 11, 11), variant=S(10, 1, 1)), "control"),
    (lambda: proportion_difference(control=S(0, 0, 0), variant=S(10, 1, 1)), "control"),
    (lambda: ratio_difference(control=P(3, 1, 0, 1, 0, 0), variant=P(3, 1, 1, 1, 1, 1)), "den"),
    (lambda: non_inferiority(mean_difference(control=OK, variant=OK), margin=0), "margin"),
    (
        lambda: non_inferiority(
            mean_difference(control=S(3, 0, 2), variant=S(3, 3, 5)), margin=0.1, relative=True
        ),
        "relative",
    ),
]


@pytest.mark.parametrize(("call", "field"), BAD_CALLS)
def test_bad_input_raises_invalid_input_naming_the_field(call, field):
    """Each malformed call raises InvalidInput whose field names the culprit."""
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field


@given(c=unit_values, v=unit_values, alternative=alternatives, level=confidence_levels)
def test_mean_difference_properties(c, v, alternative, level):
    """p in [0, 1]; the CIs contain their estimates; swapping arms flips the effect."""
    sc, sv = SampleStats.from_values(np.array(c)), SampleStats.from_values(np.array(v))
    eff = mean_difference(control=sc, variant=sv, alternative=alternative, level=level)
    assert 0.0 <= eff.p_value <= 1.0
    lo, hi = eff.absolute_ci
    assert lo <= eff.absolute_effect <= hi
    if eff.relative_ci is not None:
        rlo, rhi = eff.relative_ci
        assert rlo <= eff.relative_effect <= rhi
    swapped = mean_difference(control=sv, variant=sc, level=level)
    two = mean_difference(control=sc, variant=sv, level=level)
    assert swapped.absolute_effect == pytest.approx(-two.absolute_effect, abs=1e-9)
    assert swapped.p_value == pytest.approx(two.p_value, abs=1e-9)


@given(c=conversions, v=conversions, alternative=alternatives)
def test_proportion_difference_properties(c, v, alternative):
    """p in [0, 1]; the CI contains the estimate; swapping arms flips the sign."""
    sc, sv = SampleStats(c[0], c[1], c[1]), SampleStats(v[0], v[1], v[1])
    eff = proportion_difference(control=sc, variant=sv, alternative=alternative)
    assert 0.0 <= eff.p_value <= 1.0
    lo, hi = eff.absolute_ci
    assert lo <= eff.absolute_effect <= hi
    flipped = {"two-sided": "two-sided", "greater": "less", "less": "greater"}[alternative]
    swapped = proportion_difference(control=sv, variant=sc, alternative=flipped)
    assert swapped.absolute_effect == pytest.approx(-eff.absolute_effect, abs=1e-12)
    assert swapped.p_value == pytest.approx(eff.p_value, abs=1e-12)
