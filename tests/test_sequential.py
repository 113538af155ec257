"""mSPRT: closed forms equal the mixture integrals; p-values, intervals and priors behave."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from scipy import integrate, stats

from abtest.errors import InvalidInput
from analysis import SampleStats, default_tau2, sequential_test
from analysis.statistics.inference import mean_difference
from analysis.statistics.mixing import MixingPrior
from analysis.statistics.relative import fieller_statistic
from analysis.statistics.sequential import (
    always_valid_p_values,
    confidence_sequence,
    half_width,
    log_likelihood_ratio,
    one_sided_log_likelihood_ratio,
    sequential_from_effects,
    tau2_ratio,
)
from analysis.statistics.sequential_margin import sequential_margin_test
from tests.strategies import sequential_looks


def _mixture(estimate: float, variance: float, tau2: float, *, half: bool) -> float:
    """log ∫ N(θ̂; θ, V)/N(θ̂; 0, V) dπ(θ) by quadrature; π = N(0, τ²) or its half on θ > 0."""
    sd = math.sqrt(variance)

    def integrand(theta: float) -> float:
        ratio = stats.norm.pdf(estimate, theta, sd) / stats.norm.pdf(estimate, 0, sd)
        return float(ratio * stats.norm.pdf(theta, 0, math.sqrt(tau2)) * (2 if half else 1))

    width = 12 * math.sqrt(tau2) + 3 * abs(estimate)
    value, _ = integrate.quad(integrand, 0 if half else -width, width,
                              points=[estimate] if estimate > 0 or not half else None,
                              limit=200)  # fmt: skip
    return math.log(value)


CASES = [(0.0, 1.0, 1.0), (0.3, 0.01, 0.05), (-2.0, 0.5, 4.0), (0.01, 1e-4, 1e-3)]


@pytest.mark.parametrize(("estimate", "variance", "tau2"), CASES)
def test_closed_forms_equal_numerical_mixtures(estimate, variance, tau2):
    """Two-sided and one-sided log Λ equal their mixture integrals by quadrature."""
    two = log_likelihood_ratio(estimate=estimate, variance=variance, tau2=tau2)
    one = one_sided_log_likelihood_ratio(estimate=estimate, variance=variance, tau2=tau2)
    assert float(two) == pytest.approx(_mixture(estimate, variance, tau2, half=False),
                                       rel=1e-7, abs=1e-9)  # fmt: skip
    assert float(one) == pytest.approx(_mixture(estimate, variance, tau2, half=True),
                                       rel=1e-7, abs=1e-9)  # fmt: skip


def test_the_two_one_sided_mixtures_average_to_the_two_sided_one():
    """(Λ⁺ + Λ⁻) / 2 = Λ: the symmetric normal mixture is the mean of its two halves."""
    est, var, tau2 = np.array([-0.5, 0.0, 0.2, 1.3]), 0.04, 0.3
    plus = np.exp(one_sided_log_likelihood_ratio(estimate=est, variance=var, tau2=tau2))
    minus = np.exp(one_sided_log_likelihood_ratio(estimate=-est, variance=var, tau2=tau2))
    both = np.exp(log_likelihood_ratio(estimate=est, variance=var, tau2=tau2))
    np.testing.assert_allclose((plus + minus) / 2, both, rtol=1e-12)


@pytest.mark.parametrize(("variance", "tau2", "alpha"),
                         [(0.02, 0.1, 0.05), (1.0, 1e-3, 0.05), (1e-3, 10.0, 0.01)])  # fmt: skip
def test_interval_bounds_are_where_each_one_sided_test_just_rejects(variance, tau2, alpha):
    """At each bound the one-sided likelihood ratio of the shifted null is exactly 2/alpha."""
    est = 0.4
    lower, upper = confidence_sequence(estimate=[est], variance=[variance], tau2=tau2, alpha=alpha)
    up = one_sided_log_likelihood_ratio(estimate=est, variance=variance, tau2=tau2, null=lower[0])
    down = one_sided_log_likelihood_ratio(estimate=-est, variance=variance, tau2=tau2,
                                          null=-upper[0])  # fmt: skip
    assert float(up) == pytest.approx(math.log(2 / alpha), rel=1e-10)
    assert float(down) == pytest.approx(math.log(2 / alpha), rel=1e-10)


def _looks(seed: int, days: int, per_day: int, shift: float):
    rng = np.random.default_rng(seed)
    c = rng.normal(10, 2, (days, per_day))
    v = rng.normal(10 + shift, 2, (days, per_day))
    return [
        (SampleStats.from_values(c[: d + 1].ravel()), SampleStats.from_values(v[: d + 1].ravel()))
        for d in range(days)
    ]


@given(sequential_looks)
def test_each_look_is_dual_and_contains_its_estimate(looks):
    """At every look: the interval contains the estimate, p <= alpha exactly when it
    excludes 0, and each one-sided p <= alpha/2 exactly when that side excludes 0."""
    result = sequential_test(looks=looks, prior=MixingPrior(0.1))
    for e, p, pg, pl, lo, hi in zip(
        result.estimates,
        result.p_values,
        result.p_greater,
        result.p_less,
        result.lower,
        result.upper,
        strict=True,
    ):
        assert lo <= e <= hi
        assert 0 <= p <= 1 and 0 <= pg <= 1 and 0 <= pl <= 1
        if not (math.isclose(pg, result.alpha / 2, rel_tol=1e-6)
                or math.isclose(pl, result.alpha / 2, rel_tol=1e-6)):  # fmt: skip
            assert (p <= result.alpha) == (lo > 0 or hi < 0)
            assert (pg <= result.alpha / 2) == (lo > 0)
            assert (pl <= result.alpha / 2) == (hi < 0)


def test_detects_a_real_effect_and_covers_it():
    """A clear effect is detected by the last look and lies inside its interval."""
    result = sequential_test(looks=_looks(2, 25, 400, 0.15), prior=MixingPrior(0.1))
    assert result.reject
    assert result.p_greater[-1] <= result.alpha / 2
    lo, hi = result.ci
    assert lo <= 0.15 <= hi
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert len(out["looks"]) == 25
    assert out["p_value"] == result.p_value
    assert out["prior"] == {"scale": 0.1, "unit": "sd", "source": "mixing_sd"}


def test_matches_array_functions():
    """sequential_test on SampleStats equals the vectorised functions on its moments."""
    looks = _looks(3, 10, 50, 0.0)
    est = [v.mean - c.mean for c, v in looks]
    var = [c.variance / c.n + v.variance / v.n for c, v in looks]
    result = sequential_test(looks=looks, tau2=0.05, alpha=0.1)
    np.testing.assert_allclose(
        result.p_values, always_valid_p_values(estimate=est, variance=var, tau2=0.05)
    )
    np.testing.assert_allclose(
        result.p_greater,
        always_valid_p_values(estimate=est, variance=var, tau2=0.05, alternative="greater"),
    )
    lo, hi = confidence_sequence(estimate=est, variance=var, tau2=0.05, alpha=0.1)
    np.testing.assert_allclose(result.lower, lo)
    np.testing.assert_allclose(result.upper, hi)


def test_default_tau2_is_tightest_at_the_target():
    """τ² = r(alpha)·V gives a narrower interval at V than half or double it."""
    var, alpha = 0.01, 0.05
    tau2 = default_tau2(variance_of_difference=var, alpha=alpha)
    assert tau2 == pytest.approx(tau2_ratio(alpha) * var)

    def width(t: float) -> float:
        return float(half_width(variance=var, tau2=t, alpha=alpha))

    assert width(tau2) < width(tau2 / 2)
    assert width(tau2) < width(tau2 * 2)


def test_earlier_looks_do_not_change_when_later_looks_arrive():
    """The prior is fixed in advance, so look k's p-value and interval are the same whether
    the test stops at k or goes on: nothing is re-derived from the last look."""
    looks = _looks(4, 12, 100, 0.05)
    prior = MixingPrior(0.05, "relative", "mde")
    short = sequential_test(looks=looks[:5], prior=prior)
    full = sequential_test(looks=looks, prior=prior)
    assert full.p_values[:5] == short.p_values
    assert full.lower[:5] == short.lower
    assert full.upper[:5] == short.upper


def test_a_standardised_prior_depends_on_the_sample_sizes_only():
    """With an "sd" prior, V/τ² is (1/n_c + 1/n_v)/scale² whatever the variance."""
    prior = MixingPrior(0.2)
    var = np.array([0.5, 2.0, 8.0])
    tau2 = prior.tau2(variance=var, n_control=100, n_variant=300, control_mean=1.0)
    np.testing.assert_allclose(var / tau2, (1 / 100 + 1 / 300) / 0.04)
    relative = MixingPrior(0.1, "relative").tau2(variance=var, n_control=10, n_variant=10,
                                                 control_mean=[-4.0, 0.0, 2.0])  # fmt: skip
    assert relative[0] == pytest.approx(0.16) and np.isnan(relative[1])
    assert MixingPrior(3.0, "absolute").tau2(variance=var, n_control=1, n_variant=1,
                                             control_mean=0)[2] == 9.0  # fmt: skip


def test_a_look_without_evidence_neither_rejects_nor_bounds():
    """An undefined τ² (relative prior, control mean 0) gives p = 1 and an unbounded interval."""
    p = always_valid_p_values(estimate=[1.0], variance=[0.01], tau2=[np.nan])
    lo, hi = confidence_sequence(estimate=[1.0], variance=[0.01], tau2=[np.nan], alpha=0.05)
    assert p[0] == 1.0 and lo[0] == -math.inf and hi[0] == math.inf


def test_margin_tests_follow_the_metric_direction():
    """Harm beyond the margin and non-inferiority are the shifted one-sided tests, in the
    harmful direction of the metric, with the relative SE under the margin; a relative test
    keeps V/τ²."""
    rng = np.random.default_rng(5)
    c = SampleStats.from_values(rng.normal(100, 10, 4000))
    slow = SampleStats.from_values(rng.normal(112, 10, 4000))
    effect = mean_difference(control=c, variant=slow)
    tau2 = 4.0
    latency = sequential_margin_test(effect, margin=0.05, tau2=tau2, higher_is_better=False,
                                     relative=True)  # fmt: skip
    assert latency.p_harm < 1e-6 and latency.p_non_inferior == 1.0
    assert latency.se**2 / latency.tau2 == pytest.approx(effect.absolute_se**2 / tau2)
    # The relative SE is taken under the margin, as Fieller's fixed-horizon test takes it.
    assert latency.se == pytest.approx(fieller_statistic(effect.arms, null=0.05)[1])
    assert latency.se != pytest.approx(effect.relative_se)
    expected = always_valid_p_values(
        estimate=effect.relative_effect,
        variance=latency.se**2,
        tau2=latency.tau2,
        null=0.05,
        alternative="greater",
    )
    assert latency.p_harm == pytest.approx(float(expected))
    revenue = sequential_margin_test(effect, margin=0.05, tau2=tau2, relative=True)
    assert revenue.p_harm == 1.0 and revenue.p_non_inferior < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"looks": []}, "looks"),
        ({"looks": [(SampleStats(1, 1, 1), SampleStats(5, 5, 6))]}, "looks[0]"),
        ({"looks": [(SampleStats(5, 5, 6), SampleStats(5, 5, 6))], "alpha": 1.5}, "alpha"),
        ({"looks": [(SampleStats(5, 5, 6), SampleStats(5, 5, 6))], "tau2": -1.0}, "tau2"),
        ({"looks": [(SampleStats(5, 5, 6), SampleStats(5, 5, 6))], "tau2": 1.0,
          "prior": MixingPrior(0.1)}, "tau2"),
    ],
)  # fmt: skip
def test_bad_input(kwargs, field):
    """No looks, tiny arms, a bad alpha, a non-positive τ² or two priors raise InvalidInput."""
    with pytest.raises(InvalidInput) as info:
        sequential_test(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(("scale", "unit"), [(0.0, "sd"), (-1.0, "sd"), (math.inf, "sd"),
                                             (0.1, "cohen")])  # fmt: skip
def test_bad_prior(scale, unit):
    """A prior scale that is not finite and positive, or an unknown unit, is refused."""
    with pytest.raises(InvalidInput):
        MixingPrior(scale, unit)


def test_from_effects_needs_a_look():
    """sequential_from_effects refuses an empty series."""
    with pytest.raises(InvalidInput) as info:
        sequential_from_effects([], prior=MixingPrior(0.1))
    assert info.value.field == "looks"
