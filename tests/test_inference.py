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
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abtest.errors import InvalidInput
from analysis import (
    PairedStats,
    SampleStats,
    effect_from_means,
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


def test_relative_se_is_the_delta_method_se():
    """The relative SE is the first-order delta-method SE of the ratio of means."""
    c, v = _arms(8)
    eff = mean_difference(control=SampleStats.from_values(c), variant=SampleStats.from_values(v))
    m_c, m_v = c.mean(), v.mean()
    var_c, var_v = c.var(ddof=1) / c.size, v.var(ddof=1) / v.size
    expected_se = math.sqrt(var_v / m_c**2 + m_v**2 * var_c / m_c**4)
    assert eff.relative_effect == pytest.approx(m_v / m_c - 1, rel=1e-12)
    assert eff.relative_se == pytest.approx(expected_se, rel=1e-12)


def _scaled_ztest(v: np.ndarray, c: np.ndarray, ratio: float, alternative: str) -> float:
    """statsmodels' Welch z-test p-value of mean(v) = ratio * mean(c)."""
    cm = CompareMeans(DescrStatsW(v), DescrStatsW(ratio * c))
    return float(cm.ztest_ind(alternative=SM_ALT[alternative], usevar="unequal")[1])


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
@pytest.mark.parametrize("seed", [8, 14])
def test_relative_ci_is_fieller_inverting_statsmodels_ztest(seed, level):
    """At each end of the relative CI, statsmodels' z-test of variant = (1 + end) * control
    has p = 1 - level: the interval is the test inverted (Fieller), not estimate ± z·SE."""
    c, v = _arms(seed, n_c=300, n_v=280)
    eff = mean_difference(
        control=SampleStats.from_values(c), variant=SampleStats.from_values(v), level=level
    )
    lo, hi = eff.relative_ci
    for end in (lo, hi):
        assert _scaled_ztest(v, c, 1 + end, "two-sided") == pytest.approx(1 - level, rel=1e-7)
    wald = (
        eff.relative_effect - 1.96 * eff.relative_se,
        eff.relative_effect + 1.96 * eff.relative_se,
    )
    assert (lo, hi) != pytest.approx(wald, rel=1e-3)  # really a different interval


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_one_sided_relative_ci_inverts_the_one_sided_ztest(alternative):
    """A one-sided relative CI's finite end is where the one-sided z-test has p = 0.05."""
    c, v = _arms(15, n_c=300, n_v=280)
    eff = mean_difference(
        control=SampleStats.from_values(c), variant=SampleStats.from_values(v),
        alternative=alternative,
    )  # fmt: skip
    lo, hi = eff.relative_ci
    end = lo if alternative == "greater" else hi
    assert (hi if alternative == "greater" else lo) == pytest.approx(
        math.inf if alternative == "greater" else -math.inf
    )
    assert _scaled_ztest(v, c, 1 + end, alternative) == pytest.approx(0.05, rel=1e-7)


def test_relative_ci_matches_fiellers_textbook_formula():
    """The stable-quadratic bounds equal Fieller's g-form (independent arms, 1954)."""
    m_c, se_c, m_v, se_v, z = 4.0, 0.9, 5.0, 1.3, 1.959963984540054
    eff = effect_from_means(
        kind="mean", n_control=100, n_variant=100, control_mean=m_c, control_var=se_c**2,
        variant_mean=m_v, variant_var=se_v**2,
    )  # fmt: skip
    g = z**2 * se_c**2 / m_c**2
    r = m_v / m_c
    half = z / m_c * math.sqrt(se_v**2 * (1 - g) + r**2 * se_c**2)
    assert eff.relative_ci == pytest.approx(((r - half) / (1 - g) - 1, (r + half) / (1 - g) - 1))


def test_relative_ci_with_a_negative_control_mean_is_one_minus_the_ratio_interval():
    """For a negative control mean the relative effect is 1 - ratio, and so is its CI."""
    rng = np.random.default_rng(16)
    c, v = rng.normal(-10, 4, 400), rng.normal(-8, 4, 400)
    eff = mean_difference(control=SampleStats.from_values(c), variant=SampleStats.from_values(v))
    lo, hi = eff.relative_ci
    assert lo < eff.relative_effect < hi
    assert eff.relative_effect == pytest.approx(0.2, abs=0.05)
    for end in (lo, hi):
        assert _scaled_ztest(v, c, 1 - end, "two-sided") == pytest.approx(0.05, rel=1e-7)


@given(c=unit_values, v=unit_values)
def test_relative_ci_of_swapped_arms_is_the_inverted_ratio(c, v):
    """Fieller's set is closed under inversion: swapping arms maps the ratio's CI [a, b]
    to [1/b, 1/a] (the delta method's is not)."""
    sc = SampleStats.from_values(np.abs(np.array(c)) + 1.0)
    sv = SampleStats.from_values(np.abs(np.array(v)) + 1.0)
    forward = mean_difference(control=sc, variant=sv).relative_ci
    backward = mean_difference(control=sv, variant=sc).relative_ci
    assert (forward is None) == (backward is None)
    if forward is not None and backward is not None:
        assert 1 + backward[0] == pytest.approx(1 / (1 + forward[1]), rel=1e-9)
        assert 1 + backward[1] == pytest.approx(1 / (1 + forward[0]), rel=1e-9)


def test_relative_ci_refused_with_too_few_non_zero_control_units():
    """Three buyers in 2,000 control units: a relative effect, but no relative CI, and the
    reason says why (Fieller's interval would be unbounded)."""
    c = SampleStats.from_values(np.r_[np.zeros(1997), 40.0, 55.0, 300.0])
    v = SampleStats.from_values(np.r_[np.zeros(1960), np.full(40, 50.0)])
    eff = mean_difference(control=c, variant=v)
    assert eff.relative_effect is not None
    assert eff.relative_ci is None
    assert "control mean is within 1.96 standard errors of 0" in eff.relative_reason
    assert "too few non-zero units" in eff.relative_reason
    assert eff.to_dict()["relative_reason"] == eff.relative_reason


def test_relative_ci_refused_when_the_variant_has_no_conversions():
    """No conversion in the variant gives a zero variance; rather than a [-100 %, -100 %]
    interval, the relative CI is refused naming the variant."""
    eff = proportion_difference(control=SampleStats(2000, 40, 40), variant=SampleStats(2000, 0, 0))
    assert eff.relative_effect == pytest.approx(-1.0)
    assert eff.relative_ci is None
    assert "variant mean is within" in eff.relative_reason
    assert eff.absolute_ci[0] < eff.absolute_ci[1]  # the absolute CI is still there


@given(
    values=st.lists(st.floats(min_value=0.01, max_value=1e6), min_size=1, max_size=3),
    zeros=st.integers(min_value=8, max_value=5000),
)
def test_three_or_fewer_non_zero_units_never_get_a_95_percent_relative_ci(values, zeros):
    """(n - 1) k / (n - k) < 1.96² for k <= 3 and n >= 11: refused, in either arm."""
    few = SampleStats.from_values(np.r_[np.zeros(zeros), values])
    many = SampleStats.from_values(np.r_[np.zeros(zeros), np.full(30, 10.0)])
    assert mean_difference(control=few, variant=many).relative_ci is None
    assert mean_difference(control=many, variant=few).relative_ci is None


def test_bias_corrected_relative_effect_divides_by_one_plus_the_control_cv_squared():
    """relative_effect_corrected = (m_v / m_c) / (1 + se_c² / m_c²) - 1."""
    eff = effect_from_means(
        kind="mean", n_control=10, n_variant=10, control_mean=4.0, control_var=0.8,
        variant_mean=5.0, variant_var=1.0,
    )  # fmt: skip
    assert eff.relative_effect == pytest.approx(0.25)
    assert eff.relative_effect_corrected == pytest.approx(1.25 / (1 + 0.8 / 16) - 1)
    assert eff.to_dict()["relative_effect_corrected"] == eff.relative_effect_corrected


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


@pytest.mark.parametrize("higher_is_better", [True, False])
@pytest.mark.parametrize(("margin", "shift"), [(0.05, 0.0), (0.05, -0.1), (0.2, 0.1)])
def test_relative_non_inferiority_is_statsmodels_ztest_against_the_scaled_control(
    higher_is_better, margin, shift
):
    """A relative margin m tests mean(v) = (1 -+ m) mean(c): statsmodels' one-sided z-test
    on the scaled control data gives the same statistic and p, and the bound is Fieller's,
    on the safe side of the margin exactly when p < alpha."""
    c, v = _arms(17, n_c=500, n_v=500, shift=shift)
    eff = mean_difference(control=SampleStats.from_values(c), variant=SampleStats.from_values(v))
    ours = non_inferiority(eff, margin=margin, higher_is_better=higher_is_better, relative=True)
    ratio, alt = (1 - margin, "larger") if higher_is_better else (1 + margin, "smaller")
    z, p = CompareMeans(DescrStatsW(v), DescrStatsW(ratio * c)).ztest_ind(
        alternative=alt, usevar="unequal"
    )
    assert ours.statistic == pytest.approx(z, rel=1e-9)
    assert ours.p_value == pytest.approx(p, rel=1e-9)
    assert ours.estimate == eff.relative_effect
    side = "greater" if higher_is_better else "less"
    one_sided = mean_difference(
        control=SampleStats.from_values(c), variant=SampleStats.from_values(v), alternative=side
    ).relative_ci
    assert ours.bound == pytest.approx(one_sided[0] if higher_is_better else one_sided[1])
    assert ours.confidence_interval() == pytest.approx(one_sided)
    safe = ours.bound > -margin if higher_is_better else ours.bound < margin
    assert safe == ours.non_inferior == (p < 0.05)


def test_relative_non_inferiority_refused_when_the_control_mean_may_be_zero():
    """With two buyers in control, no relative margin can be tested: InvalidInput naming
    the reason, which the analysis shows in the guardrail's row."""
    c = SampleStats.from_values(np.r_[np.zeros(998), 30.0, 80.0])
    v = SampleStats.from_values(np.r_[np.zeros(990), np.full(10, 50.0)])
    with pytest.raises(InvalidInput) as info:
        non_inferiority(mean_difference(control=c, variant=v), margin=0.05, relative=True)
    assert info.value.field == "relative"
    assert "no trustworthy relative test: the control mean is within 1.64" in info.value.message


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
