"""mSPRT: the closed form equals the mixture integral; p-values and sequences behave."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from abtest.errors import InvalidInput
from analysis import SampleStats, default_tau2, sequential_test
from analysis.statistics.sequential import (
    always_valid_p_values,
    confidence_sequence,
    log_likelihood_ratio,
    tau2_ratio,
)


@pytest.mark.parametrize(
    ("estimate", "variance", "tau2"),
    [(0.0, 1.0, 1.0), (0.3, 0.01, 0.05), (-2.0, 0.5, 4.0), (0.01, 1e-4, 1e-3)],
)
def test_closed_form_equals_numerical_mixture(estimate, variance, tau2):
    """log Λ equals log ∫ N(θ̂; θ, V)/N(θ̂; 0, V) dN(θ; 0, τ²) by quadrature."""
    sd = math.sqrt(variance)

    def integrand(theta: float) -> float:
        ratio = stats.norm.pdf(estimate, theta, sd) / stats.norm.pdf(estimate, 0, sd)
        return float(ratio * stats.norm.pdf(theta, 0, math.sqrt(tau2)))

    width = 12 * math.sqrt(tau2)
    value, _ = integrate.quad(integrand, -width, width, points=[estimate], limit=200)
    ours = log_likelihood_ratio(estimate=estimate, variance=variance, tau2=tau2)
    assert float(ours) == pytest.approx(math.log(value), rel=1e-7, abs=1e-9)


def test_sequence_boundary_is_where_lambda_reaches_one_over_alpha():
    """At the CS bound the likelihood ratio of the shifted null is exactly 1/alpha."""
    est, var, tau2, alpha = 0.4, 0.02, 0.1, 0.05
    lower, upper = confidence_sequence(estimate=[est], variance=[var], tau2=tau2, alpha=alpha)
    for bound in (lower[0], upper[0]):
        llr = log_likelihood_ratio(estimate=est - bound, variance=var, tau2=tau2)
        assert float(llr) == pytest.approx(math.log(1 / alpha), rel=1e-10)


def _looks(seed: int, days: int, per_day: int, shift: float):
    rng = np.random.default_rng(seed)
    c = rng.normal(10, 2, (days, per_day))
    v = rng.normal(10 + shift, 2, (days, per_day))
    return [
        (SampleStats.from_values(c[: d + 1].ravel()), SampleStats.from_values(v[: d + 1].ravel()))
        for d in range(days)
    ]


def test_p_values_fall_and_sequences_nest():
    """Always-valid p-values never rise and the confidence sequence never widens."""
    result = sequential_test(looks=_looks(1, 20, 100, 0.1))
    assert all(b <= a for a, b in zip(result.p_values, result.p_values[1:], strict=False))
    assert all(b >= a for a, b in zip(result.lower, result.lower[1:], strict=False))
    assert all(b <= a for a, b in zip(result.upper, result.upper[1:], strict=False))
    for p, lo, hi in zip(result.p_values, result.lower, result.upper, strict=True):
        assert 0 <= p <= 1
        assert lo <= hi
        # p <= alpha exactly when the sequence so far has excluded 0 (duality).
        assert (p <= result.alpha) == (lo > 0 or hi < 0)


def test_detects_a_real_effect_and_covers_it():
    """A clear effect is detected by the last look and lies inside the final sequence."""
    result = sequential_test(looks=_looks(2, 25, 400, 0.15))
    assert result.reject
    lo, hi = result.ci
    assert lo <= 0.15 <= hi
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert len(out["looks"]) == 25
    assert out["p_value"] == result.p_value


def test_matches_array_functions():
    """sequential_test on SampleStats equals the vectorised functions on its moments."""
    looks = _looks(3, 10, 50, 0.0)
    est = [v.mean - c.mean for c, v in looks]
    var = [c.variance / c.n + v.variance / v.n for c, v in looks]
    result = sequential_test(looks=looks, tau2=0.05, alpha=0.1)
    np.testing.assert_allclose(
        result.p_values, always_valid_p_values(estimate=est, variance=var, tau2=0.05)
    )
    lo, hi = confidence_sequence(estimate=est, variance=var, tau2=0.05, alpha=0.1)
    np.testing.assert_allclose(result.lower, lo)
    np.testing.assert_allclose(result.upper, hi)


def test_default_tau2_is_tightest_at_the_target():
    """The default τ² gives a narrower sequence at the target V than half or double it."""
    var, alpha = 0.01, 0.05
    tau2 = default_tau2(variance_of_difference=var, alpha=alpha)
    assert tau2 == pytest.approx(tau2_ratio(alpha) * var)

    def width(t: float) -> float:
        lo, hi = confidence_sequence(estimate=[0.0], variance=[var], tau2=t, alpha=alpha)
        return float(hi[0] - lo[0])

    assert width(tau2) < width(tau2 / 2)
    assert width(tau2) < width(tau2 * 2)


def test_default_tau2_follows_the_last_look():
    """Without τ², sequential_test tunes it to the last look's variance."""
    looks = _looks(4, 5, 100, 0.0)
    c, v = looks[-1]
    result = sequential_test(looks=looks)
    assert result.tau2 == pytest.approx(
        default_tau2(variance_of_difference=c.variance / c.n + v.variance / v.n)
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"looks": []}, "looks"),
        ({"looks": [(SampleStats(1, 1, 1), SampleStats(5, 5, 6))]}, "looks[0]"),
        ({"looks": [(SampleStats(5, 5, 6), SampleStats(5, 5, 6))], "alpha": 1.5}, "alpha"),
        ({"looks": [(SampleStats(5, 5, 6), SampleStats(5, 5, 6))], "tau2": -1.0}, "tau2"),
    ],
)
def test_bad_input(kwargs, field):
    """No looks, tiny arms, a bad alpha or a non-positive τ² raise InvalidInput."""
    with pytest.raises(InvalidInput) as info:
        sequential_test(**kwargs)
    assert info.value.field == field
