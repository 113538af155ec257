"""Planning (power, ratio metrics, duration): references, simulation, properties."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import power_proportions_2indep

import analysis
from abtest.errors import InvalidInput
from analysis import (
    duration_days,
    guardrail_adjusted_power,
    mde_by_duration,
    minimum_detectable_effect_mean,
    minimum_detectable_effect_proportion,
    minimum_detectable_effect_ratio,
    n_per_variant_after_days,
    power_mean,
    power_proportion,
    power_ratio,
    ratio_metric_variance,
    remaining_days,
    sample_size_mean,
    sample_size_proportion,
    sample_size_ratio,
)
from tests import strategies as s

SM_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}
# (d, alpha, power, ratio, alternative): ordinary, extreme alpha/power, unequal splits.
MEAN_CASES = [
    (0.5, 0.05, 0.8, 1.0, "two-sided"),
    (0.1, 0.5, 0.6, 2.0, "two-sided"),
    (0.3, 0.2, 0.5, 0.5, "two-sided"),
    (0.2, 0.05, 0.9, 1.0, "greater"),
    (0.2, 0.01, 0.9, 3.0, "less"),
    (2.0, 0.05, 0.8, 1.0, "two-sided"),
    (0.02, 0.001, 0.95, 0.25, "two-sided"),
]


def sm_effect(d: float, alternative: str) -> float:
    """statsmodels wants a negative effect size for alternative='smaller'."""
    return -d if alternative == "less" else d


# -- statsmodels: means --------------------------------------------------------------------


@pytest.mark.parametrize(("d", "alpha", "power", "ratio", "alternative"), MEAN_CASES)
def test_mean_z_sample_size_matches_normalindpower(d, alpha, power, ratio, alternative):
    """The z sample size is NormalIndPower's (and zt_ind_solve_power's) root, ceil identical."""
    kwargs = {"alpha": alpha, "power": power, "ratio": ratio}
    sm_alt = SM_ALTERNATIVE[alternative]
    reference = NormalIndPower().solve_power(
        sm_effect(d, alternative), alternative=sm_alt, **kwargs
    )
    functional = zt_ind_solve_power(sm_effect(d, alternative), alternative=sm_alt, **kwargs)
    ours = sample_size_mean(std=3.0, mde=3.0 * d, alternative=alternative, **kwargs)
    # statsmodels' brentq stops at ~1e-7 relative; our root solves its own equation exactly.
    assert float(ours.n_per_variant_exact) == pytest.approx(reference, rel=1e-6)
    at_root = NormalIndPower().power(
        sm_effect(d, alternative), float(ours.n_per_variant_exact), alpha, ratio, sm_alt
    )
    assert at_root == pytest.approx(power, abs=1e-12)
    assert int(ours.n_per_variant) == int(np.ceil(reference)) == int(np.ceil(functional))


@pytest.mark.parametrize(("d", "alpha", "power", "ratio", "alternative"), MEAN_CASES)
def test_mean_t_sample_size_matches_ttestindpower(d, alpha, power, ratio, alternative):
    """test='t' is TTestIndPower's exact noncentral-t root."""
    kwargs = {"alpha": alpha, "power": power, "ratio": ratio}
    reference = TTestIndPower().solve_power(
        sm_effect(d, alternative), alternative=SM_ALTERNATIVE[alternative], **kwargs
    )
    ours = sample_size_mean(std=1.0, mde=d, alternative=alternative, test="t", **kwargs)
    assert float(ours.n_per_variant_exact) == pytest.approx(reference, rel=1e-6)
    assert int(ours.n_per_variant) == int(np.ceil(reference))


@pytest.mark.parametrize("test", ["z", "t"])
@pytest.mark.parametrize("case", MEAN_CASES)
def test_mean_power_matches_statsmodels(test, case):
    """power_mean is NormalIndPower.power / TTestIndPower.power at the same n."""
    d, alpha, _, ratio, alternative = case
    engine = NormalIndPower() if test == "z" else TTestIndPower()
    n = 50.0
    reference = engine.power(
        sm_effect(d, alternative), n, alpha, ratio=ratio, alternative=SM_ALTERNATIVE[alternative]
    )
    ours = power_mean(
        std=2.0,
        effect=2.0 * d,
        n_per_variant=n,
        alpha=alpha,
        ratio=ratio,
        alternative=alternative,
        test=test,
    )
    if np.isnan(reference):
        # scipy's nctdtr underflows to nan in the far tail (statsmodels passes it on); we
        # fall back to a normal approximation there, where the power is ~1.
        assert float(ours) == pytest.approx(1.0, abs=1e-9)
    else:
        assert float(ours) == pytest.approx(reference, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("test", ["z", "t"])
@pytest.mark.parametrize("n", [10, 100, 5000])
@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_mean_mde_matches_statsmodels(test, n, alternative):
    """The MDE of a mean is statsmodels' solve_power(effect_size=None) times the std."""
    engine = NormalIndPower() if test == "z" else TTestIndPower()
    reference = engine.solve_power(
        None, nobs1=n, alpha=0.05, power=0.8, ratio=1.5, alternative=SM_ALTERNATIVE[alternative]
    )
    ours = minimum_detectable_effect_mean(
        std=4.0, n_per_variant=n, baseline=20.0, ratio=1.5, alternative=alternative, test=test
    )
    # statsmodels' brentq on the effect size stops ~1e-5 short; ours solves its equation.
    assert float(ours.absolute) == pytest.approx(4.0 * reference, rel=1e-4)
    at_mde = engine.power(
        float(ours.absolute) / 4.0, n, 0.05, ratio=1.5, alternative=SM_ALTERNATIVE[alternative]
    )
    assert at_mde == pytest.approx(0.8, abs=1e-12)
    assert float(ours.relative) == pytest.approx(float(ours.absolute) / 20.0)


# -- published values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "power", "published"),
    [
        (0.5, 0.80, 64),  # G*Power 3.1 and Cohen (1988) table 2.4.1
        (0.2, 0.80, 393),  # Cohen (1988) table 2.4.1 (exact noncentral t: 394)
        (0.8, 0.80, 26),  # Cohen (1988) table 2.4.1
        (0.5, 0.95, 105),  # G*Power 3.1 manual, two independent means example (total 210)
    ],
)
def test_t_sample_size_matches_published_tables(d, power, published):
    """Two-sided t-test sizes agree with Cohen's tables and G*Power within one unit."""
    n = int(sample_size_mean(std=1.0, mde=d, power=power, test="t").n_per_variant)
    assert abs(n - published) <= 1


def test_gpower_64_needs_the_t_test():
    """d = 0.5 gives G*Power's 64 exactly with test='t'; the z approximation gives 63."""
    assert int(sample_size_mean(std=10.0, mde=5.0, test="t").n_per_variant) == 64
    assert int(sample_size_mean(std=10.0, mde=5.0).n_per_variant) == 63
    assert float(power_mean(std=1.0, effect=0.5, n_per_variant=64, test="t")) == pytest.approx(
        0.8015, abs=5e-5
    )  # G*Power's "actual power"


# -- proportions ---------------------------------------------------------------------------

PROPORTION_CASES = [
    (0.10, 0.01, 0.05, 0.8, 1.0, "two-sided"),
    (0.02, 0.004, 0.05, 0.9, 1.0, "greater"),
    (0.50, 0.05, 0.1, 0.8, 3.0, "less"),
    (0.90, 0.05, 0.01, 0.8, 0.5, "two-sided"),
    (0.30, 0.20, 0.5, 0.6, 1.0, "two-sided"),
]


def fleiss_n(*, p1: float, p2: float, alpha: float, power: float, r: float, tails: int) -> float:
    """Fleiss' formula written out independently with scipy.stats (opposite tail ignored)."""
    z_a, z_b = stats.norm.ppf(1 - alpha / tails), stats.norm.ppf(power)
    pbar = (p1 + r * p2) / (1 + r)
    root0 = np.sqrt(pbar * (1 - pbar) * (1 + 1 / r))
    root1 = np.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / r)
    return float(((z_a * root0 + z_b * root1) / (p2 - p1)) ** 2)


@pytest.mark.parametrize("case", PROPORTION_CASES)
def test_proportion_power_matches_power_proportions_2indep(case):
    """power_proportion equals statsmodels' pooled-H0 / unpooled-H1 power at the same design."""
    p, mde, alpha, _, ratio, alternative = case
    n = 1234.0
    diff = -mde if alternative == "less" else mde
    # statsmodels' sample 1 is the treatment arm and its ratio is control / treatment.
    reference = power_proportions_2indep(
        diff,
        p,
        ratio * n,
        ratio=1 / ratio,
        alpha=alpha,
        alternative=SM_ALTERNATIVE[alternative],
        return_results=False,
    )
    ours = power_proportion(
        baseline=p, effect=mde, n_per_variant=n, alpha=alpha, ratio=ratio, alternative=alternative
    )
    assert float(ours) == pytest.approx(float(reference), rel=1e-9)


@pytest.mark.parametrize("case", PROPORTION_CASES)
def test_proportion_sample_size_is_smallest_powered_n(case):
    """n is the smallest integer whose statsmodels power reaches the target; Fleiss within 1."""
    p, mde, alpha, power, ratio, alternative = case
    result = sample_size_proportion(
        baseline=p, mde=mde, alpha=alpha, power=power, ratio=ratio, alternative=alternative
    )
    n = int(result.n_per_variant)
    diff = -mde if alternative == "less" else mde

    def sm_power(n_control: float) -> float:
        return float(
            power_proportions_2indep(
                diff,
                p,
                ratio * n_control,
                ratio=1 / ratio,
                alpha=alpha,
                alternative=SM_ALTERNATIVE[alternative],
                return_results=False,
            )
        )

    assert sm_power(n) >= power - 1e-9
    assert sm_power(n - 1) < power
    if alpha <= 0.1:  # at alpha 0.5 the opposite tail, which Fleiss ignores, matters
        tails = 2 if alternative == "two-sided" else 1
        fleiss = fleiss_n(p1=p, p2=p + diff, alpha=alpha, power=power, r=ratio, tails=tails)
        assert abs(n - np.ceil(fleiss)) <= 1


def test_proportion_reference_example():
    """10% baseline, +1 pp, alpha 0.05 two-sided, power 0.8: Fleiss' formula gives 14,751."""
    result = sample_size_proportion(baseline=0.10, mde=0.01)
    assert int(result.n_per_variant) == int(
        np.ceil(fleiss_n(p1=0.10, p2=0.11, alpha=0.05, power=0.8, r=1.0, tails=2))
    )
    assert int(result.n_per_variant) == 14751
    assert int(result.total_n) == 29502
    relative = sample_size_proportion(baseline=0.10, mde=0.10, relative=True)
    assert int(relative.n_per_variant) == 14751


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_proportion_mde_inverts_power(alternative):
    """At n(mde), the MDE is mde again; at the MDE the power is the target."""
    n = sample_size_proportion(baseline=0.2, mde=0.03, alternative=alternative).n_per_variant
    mde = minimum_detectable_effect_proportion(
        baseline=0.2, n_per_variant=n, alternative=alternative
    )
    assert 0.029 < float(mde.absolute) <= 0.03
    at_mde = power_proportion(
        baseline=0.2, effect=mde.absolute, n_per_variant=n, alternative=alternative
    )
    assert float(at_mde) == pytest.approx(0.8, abs=1e-9)
    assert float(mde.relative) == pytest.approx(float(mde.absolute) / 0.2)


def test_proportion_mde_is_nan_when_nothing_is_detectable():
    """With 3 units per arm no change of a 50% rate reaches 80% power at alpha 0.001."""
    mde = minimum_detectable_effect_proportion(baseline=0.5, n_per_variant=3, alpha=0.001)
    assert np.isnan(mde.absolute)


# -- options: non-inferiority, CUPED, variants, guardrails, allocation ----------------------


def test_non_inferiority_mean_matches_one_sided_normalindpower():
    """NI with margin m and true effect 0 is a one-sided z-test of effect size m / std."""
    reference = NormalIndPower().solve_power(0.1, alpha=0.05, power=0.9, alternative="larger")
    ours = sample_size_mean(
        std=5.0, non_inferiority_margin=0.5, alpha=0.05, power=0.9, alternative="greater"
    )
    assert float(ours.n_per_variant_exact) == pytest.approx(reference, rel=1e-9)


def test_non_inferiority_proportion_uses_unpooled_variance():
    """Proportion NI follows Chow, Shao & Wang: (z_a + z_b)^2 (p1q1 + p2q2/r) / (d + m)^2."""
    p, margin, effect = 0.3, 0.02, 0.005
    expected = (
        (stats.norm.ppf(0.95) + stats.norm.ppf(0.8)) ** 2
        * (p * (1 - p) + (p + effect) * (1 - p - effect))
        / (effect + margin) ** 2
    )
    ours = sample_size_proportion(
        baseline=p, mde=effect, non_inferiority_margin=margin, alternative="greater"
    )
    assert float(ours.n_per_variant_exact) == pytest.approx(expected, rel=1e-9)
    lower_is_better = sample_size_proportion(
        baseline=p, mde=effect, non_inferiority_margin=margin, alternative="less"
    )
    assert int(lower_is_better.n_per_variant) > 0


def test_cuped_scales_n_by_one_minus_rho_squared():
    """CUPED with correlation rho multiplies the (continuous) sample size by 1 - rho^2."""
    plain = sample_size_mean(std=5.0, mde=0.2)
    cuped = sample_size_mean(std=5.0, mde=0.2, cuped_rho=0.6)
    assert float(cuped.n_per_variant_exact) == pytest.approx(
        0.64 * float(plain.n_per_variant_exact), rel=1e-9
    )


@pytest.mark.parametrize("variants", [2, 3, 5])
def test_bonferroni_over_variants(variants):
    """k treatment arms use alpha / k per comparison and total n = n_c + k n_t."""
    many = sample_size_mean(std=1.0, mde=0.1, variants=variants)
    single = sample_size_mean(std=1.0, mde=0.1, alpha=0.05 / variants)
    assert int(many.n_per_variant) == int(single.n_per_variant)
    assert int(many.total_n) == int(many.n_per_variant) * (1 + variants)
    sidak = sample_size_mean(std=1.0, mde=0.1, variants=variants, correction="sidak")
    assert int(sidak.n_per_variant) <= int(many.n_per_variant)
    none = sample_size_mean(std=1.0, mde=0.1, variants=variants, correction="none")
    assert int(none.n_per_variant) == int(sample_size_mean(std=1.0, mde=0.1).n_per_variant)


def test_guardrail_power_correction_follows_spotify_confidence():
    """G guardrails raise each test's power to 1 - beta / (G + 1) (spotify-confidence)."""
    assert float(guardrail_adjusted_power(power=0.8, n_guardrails=0)) == pytest.approx(0.8)
    assert float(guardrail_adjusted_power(power=0.8, n_guardrails=4)) == pytest.approx(0.96)
    corrected = sample_size_proportion(baseline=0.1, mde=0.01, n_guardrails=4)
    direct = sample_size_proportion(baseline=0.1, mde=0.01, power=0.96)
    assert int(corrected.n_per_variant) == int(direct.n_per_variant)
    assert float(corrected.power) == pytest.approx(0.96)


def test_unequal_allocation_sizes_both_arms():
    """ratio = treatment / control: the treatment arm is ceil(ratio * exact n_control)."""
    result = sample_size_mean(std=1.0, mde=0.2, ratio=3.0)
    exact = float(result.n_per_variant_exact)
    assert int(result.n_treatment) == int(np.ceil(3.0 * exact))
    assert int(result.total_n) == int(result.n_per_variant) + int(result.n_treatment)


# -- ratio metrics -------------------------------------------------------------------------


def test_ratio_metric_variance_matches_simulated_ratio_estimates():
    """The delta-method variance predicts the spread of sum(Y)/sum(X) over 4,000 replications."""
    rng = np.random.default_rng(20240401)
    reps, units = 4000, 400
    sessions = rng.poisson(3.0, size=(reps, units)) + 1
    clicks = rng.binomial(sessions, 0.3)
    ratios = clicks.sum(axis=1) / sessions.sum(axis=1)
    x, y = sessions.ravel().astype(float), clicks.ravel().astype(float)
    per_unit = ratio_metric_variance(
        mean_numerator=y.mean(),
        mean_denominator=x.mean(),
        var_numerator=y.var(ddof=1),
        var_denominator=x.var(ddof=1),
        covariance=np.cov(y, x)[0, 1],
    )
    assert float(per_unit) / units == pytest.approx(ratios.var(ddof=1), rel=0.07)


def test_ratio_sample_size_is_mean_sample_size_on_delta_method_sd():
    """A ratio metric is sized as a mean with baseline mu_Y/mu_X and the delta-method sd."""
    moments = {
        "mean_numerator": 1.2,
        "mean_denominator": 4.0,
        "var_numerator": 1.5,
        "var_denominator": 3.0,
        "covariance": 1.1,
    }
    sd = float(np.sqrt(ratio_metric_variance(**moments)))
    ours = sample_size_ratio(**moments, mde=0.05, relative=True)
    as_mean = sample_size_mean(std=sd, baseline=0.3, mde=0.05, relative=True)
    assert int(ours.n_per_variant) == int(as_mean.n_per_variant)
    at_n = power_ratio(**moments, effect=0.015, n_per_variant=ours.n_per_variant)
    assert float(at_n) >= 0.8
    mde = minimum_detectable_effect_ratio(**moments, n_per_variant=ours.n_per_variant)
    assert float(mde.relative) == pytest.approx(0.05, rel=1e-3)


# -- simulation ----------------------------------------------------------------------------

REPLICATIONS = 40_000  # binomial SE of a power near 0.8 is 0.2 pp; the tolerance is 2 pp


def test_simulated_power_of_a_proportion_test_hits_the_target():
    """At the computed n, 40,000 simulated two-proportion z-tests reject ~80% of the time."""
    rng = np.random.default_rng(7)
    p, mde = 0.10, 0.02
    n = int(sample_size_proportion(baseline=p, mde=mde).n_per_variant)
    control = rng.binomial(n, p, size=REPLICATIONS) / n
    treatment = rng.binomial(n, p + mde, size=REPLICATIONS) / n
    pooled = (control + treatment) / 2
    z = (treatment - control) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    empirical = np.mean(np.abs(z) > stats.norm.ppf(0.975))
    assert abs(empirical - 0.8) < 0.02


@pytest.mark.parametrize(("test", "mde"), [("z", 0.4), ("t", 2.5)])
def test_simulated_power_of_a_mean_test_hits_the_target(test, mde):
    """Normal data at the computed n: Welch z (large n) / pooled t (n = 64) reject ~80%."""
    rng = np.random.default_rng(11)
    std = 5.0
    n = int(sample_size_mean(std=std, mde=mde, test=test).n_per_variant)
    # Sufficient statistics drawn exactly: x-bar ~ N(mu, s^2/n), (n-1) s^2 ~ s^2 chi2(n-1).
    means = rng.normal([0.0, mde], std / np.sqrt(n), size=(REPLICATIONS, 2))
    variances = std**2 * rng.chisquare(n - 1, size=(REPLICATIONS, 2)) / (n - 1)
    se = np.sqrt(variances.sum(axis=1) / n)
    statistic = (means[:, 1] - means[:, 0]) / se
    crit = stats.norm.ppf(0.975) if test == "z" else stats.t.ppf(0.975, 2 * n - 2)
    empirical = np.mean(np.abs(statistic) > crit)
    assert abs(empirical - 0.8) < 0.02


# -- vectorisation -------------------------------------------------------------------------


def test_grid_broadcasts_and_matches_scalar_calls():
    """A (3, 1) x (1, 4) grid returns a (3, 4) result equal to scalar calls, ceil'd to int."""
    baselines = np.array([[0.05], [0.1], [0.3]])
    mdes = np.array([[0.1, 0.2, 0.3, 0.5]])
    grid = sample_size_proportion(baseline=baselines, mde=mdes, relative=True, power=0.9)
    assert grid.n_per_variant.shape == (3, 4)
    assert grid.n_per_variant.dtype == np.int64
    for i in range(3):
        for j in range(4):
            one = sample_size_proportion(
                baseline=baselines[i, 0], mde=mdes[0, j], relative=True, power=0.9
            )
            assert grid.n_per_variant[i, j] == int(one.n_per_variant)
    assert isinstance(grid.to_dict()["n_per_variant"], list)
    assert isinstance(sample_size_proportion(baseline=0.1, mde=0.01).to_dict()["total_n"], int)


def test_ten_thousand_scenarios_in_one_call():
    """A 10,000-scenario t-test grid is solved in one call, monotone in the effect size."""
    d = np.linspace(0.05, 1.5, 10_000)
    n = sample_size_mean(std=1.0, mde=d, test="t").n_per_variant
    assert n.shape == (10_000,)
    assert np.all(np.diff(n) <= 0)


# -- duration ------------------------------------------------------------------------------


def test_duration_days_rounds_up():
    """Days = ceil(total_n / (daily_units * traffic)); a running test needs the remainder."""
    assert duration_days(total_n=[10_000, 10_001], daily_units=1000, traffic=0.5).tolist() == [
        20,
        21,
    ]
    assert (
        int(remaining_days(required_total_n=10_000, current_total_n=12_000, daily_units=100)) == 0
    )
    result = sample_size_proportion(baseline=0.1, mde=0.01)
    assert int(result.days(daily_units=1000)) == 30


def test_mde_by_duration_table():
    """The 7/14/21/28-day table shrinks the MDE like 1/sqrt(days) and splits units by arm."""
    table = mde_by_duration(
        metric="mean", std=10.0, baseline=50.0, daily_units=3000, traffic=0.5, variants=2
    )
    assert table["days"].tolist() == [7, 14, 21, 28]
    assert (
        table["n_per_variant"].tolist()
        == n_per_variant_after_days(
            days=[7, 14, 21, 28], daily_units=3000, traffic=0.5, variants=2
        ).tolist()
    )
    assert table["n_per_variant"].iloc[0] == 3500
    ratio = table["mde_absolute"].iloc[0] / table["mde_absolute"].iloc[3]
    assert ratio == pytest.approx(2.0, rel=1e-3)
    assert np.allclose(table["mde_relative"], table["mde_absolute"] / 50.0)


# -- invalid input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: sample_size_proportion(baseline=0.0, mde=0.01), "baseline"),
        (lambda: sample_size_proportion(baseline=1.2, mde=0.01), "baseline"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.0), "mde"),
        (lambda: sample_size_proportion(baseline=0.1, mde=-0.01), "mde"),
        (lambda: sample_size_proportion(baseline=0.95, mde=0.1), "mde"),
        (lambda: sample_size_proportion(baseline=0.05, mde=0.1, alternative="less"), "mde"),
        (
            lambda: sample_size_proportion(
                baseline=0.1, mde=1.5, relative=True, alternative="less"
            ),
            "mde",
        ),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, alpha=0.0), "alpha"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, alpha=0.6), "alpha"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, power=1.0), "power"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, power=0.0), "power"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, power=0.04), "power"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, ratio=0.0), "ratio"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, variants=0), "variants"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, cuped_rho=1.0), "cuped_rho"),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, n_guardrails=-1), "n_guardrails"),
        (
            lambda: sample_size_proportion(baseline=0.1, mde=0.01, alternative="bigger"),
            "alternative",
        ),
        (lambda: sample_size_proportion(baseline=0.1, mde=0.01, correction="holm"), "correction"),
        (lambda: sample_size_proportion(baseline=0.1), "mde"),
        (lambda: sample_size_proportion(baseline=0.1, non_inferiority_margin=0.01), "alternative"),
        (
            lambda: sample_size_proportion(
                baseline=0.1, non_inferiority_margin=-0.01, alternative="greater"
            ),
            "non_inferiority_margin",
        ),
        (lambda: sample_size_proportion(baseline=float("nan"), mde=0.01), "baseline"),
        (lambda: sample_size_proportion(baseline="ten", mde=0.01), "baseline"),
        (lambda: sample_size_mean(std=0.0, mde=1.0), "std"),
        (lambda: sample_size_mean(std=1.0, mde=0.1, relative=True), "baseline"),
        (lambda: sample_size_mean(std=1.0, mde=0.1, std_treatment=2.0, test="t"), "std_treatment"),
        (lambda: sample_size_mean(std=1.0, mde=0.1, test="exact"), "test"),
        (
            lambda: sample_size_ratio(
                mean_numerator=1.0,
                mean_denominator=0.0,
                var_numerator=1.0,
                var_denominator=1.0,
                covariance=0.0,
                mde=0.1,
            ),
            "mean_denominator",
        ),
        (
            lambda: sample_size_ratio(
                mean_numerator=1.0,
                mean_denominator=1.0,
                var_numerator=1.0,
                var_denominator=1.0,
                covariance=2.0,
                mde=0.1,
            ),
            "covariance",
        ),
        (lambda: power_mean(std=1.0, effect=0.1, n_per_variant=0), "n_per_variant"),
        (lambda: minimum_detectable_effect_mean(std=1.0, n_per_variant=-5), "n_per_variant"),
        (lambda: duration_days(total_n=100, daily_units=0), "daily_units"),
        (lambda: duration_days(total_n=100, daily_units=10, traffic=1.5), "traffic"),
        (lambda: mde_by_duration(metric="median", daily_units=10), "metric"),
        (lambda: guardrail_adjusted_power(power=0.8, n_guardrails=1.5), "n_guardrails"),
    ],
)
def test_invalid_inputs_raise_invalid_input_naming_the_field(call, field):
    """Every impossible input raises InvalidInput that names the offending argument."""
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field


def test_array_error_names_the_first_bad_value():
    """An array with one bad element is rejected and the message shows that element."""
    with pytest.raises(InvalidInput, match=r"1\.5"):
        sample_size_proportion(baseline=[0.1, 1.5, 0.2], mde=0.01)


# -- properties ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    p=s.baselines,
    rel=s.relative_mdes,
    power=s.powers,
    design=st.tuples(s.alphas, s.alternatives, s.allocation_ratios),
)
def test_proportion_round_trip_properties(p, rel, power, design):
    """n(mde) reaches the power, n - 1 does not, MDE(n(mde)) <= mde, a smaller mde needs more."""
    alpha, alternative, ratio = design
    mde = p * rel
    if p + mde > 1 or (alternative == "less" and p - mde < 0):
        return
    kwargs = {"baseline": p, "alpha": alpha, "alternative": alternative, "ratio": ratio}
    n = sample_size_proportion(mde=mde, power=power, **kwargs).n_per_variant
    assert float(power_proportion(effect=mde, n_per_variant=n, **kwargs)) >= power - 1e-9
    if int(n) > 1:
        assert float(power_proportion(effect=mde, n_per_variant=n - 1, **kwargs)) < power
    found = minimum_detectable_effect_proportion(n_per_variant=n, power=power, **kwargs)
    assert float(found.absolute) <= mde * (1 + 1e-9)
    smaller = sample_size_proportion(mde=mde * 0.8, power=power, **kwargs).n_per_variant
    assert int(smaller) >= int(n)


@settings(max_examples=60, deadline=None)
@given(
    d=s.standardised_effects,
    power=s.powers,
    test=st.sampled_from(["z", "t"]),
    design=st.tuples(s.alphas, s.alternatives, s.allocation_ratios),
)
def test_mean_round_trip_properties(d, power, test, design):
    """For means (z and t): power(n) >= target > power(n - 1), MDE(n(mde)) <= mde."""
    alpha, alternative, ratio = design
    kwargs = {"std": 2.0, "alpha": alpha, "alternative": alternative, "ratio": ratio, "test": test}
    n = sample_size_mean(mde=2.0 * d, power=power, **kwargs).n_per_variant
    assert float(power_mean(effect=2.0 * d, n_per_variant=n, **kwargs)) >= power - 1e-9
    if int(n) > 2:
        assert float(power_mean(effect=2.0 * d, n_per_variant=n - 1, **kwargs)) < power
    found = minimum_detectable_effect_mean(n_per_variant=n, power=power, **kwargs)
    assert float(found.absolute) <= 2.0 * d * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(n=s.sample_sizes, alpha=s.alphas, alternative=s.alternatives)
def test_power_is_monotone_in_n_and_effect(n, alpha, alternative):
    """Power grows with n and with the effect, and stays in [alpha-ish, 1]."""
    ns = np.array([n, n * 2, n * 4], dtype=float)
    by_n = power_mean(std=1.0, effect=0.01, n_per_variant=ns, alpha=alpha, alternative=alternative)
    assert np.all(np.diff(by_n) >= 0)
    effects = np.array([0.001, 0.01, 0.1])
    by_effect = power_proportion(
        baseline=0.3, effect=effects, n_per_variant=n, alpha=alpha, alternative=alternative
    )
    assert np.all(np.diff(by_effect) >= 0)
    assert np.all((by_effect > 0) & (by_effect <= 1))


def test_docstring_examples():
    """The Examples sections of the planning modules are correct doctests."""
    import analysis.planning.duration
    import analysis.planning.power
    import analysis.planning.ratio_metric

    for module in (
        analysis.planning.power,
        analysis.planning.ratio_metric,
        analysis.planning.duration,
    ):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0
        assert result.failed == 0


def test_public_api_is_exported():
    """Other modules import the planning API from `analysis` itself."""
    for name in (
        "sample_size_mean",
        "sample_size_proportion",
        "sample_size_ratio",
        "minimum_detectable_effect_proportion",
        "power_mean",
        "duration_days",
        "remaining_days",
        "mde_by_duration",
        "SampleSize",
        "MinimumDetectableEffect",
    ):
        assert name in analysis.__all__
        assert hasattr(analysis, name)
