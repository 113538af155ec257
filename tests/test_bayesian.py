"""Bayesian read-out against GrowthBook's stats engine and seeded Monte Carlo.

Reference: gbstats 0.2.2 (``gbstats.bayesian.main``), installed with
``pip install --no-deps gbstats==0.2.2`` because its metadata pins pandas<2 although the
Bayesian functions only need numpy and scipy.  Tolerances:

- expected loss ("risk"): gbstats integrates the same Beta / normal posteriors by
  Gauss-Jacobi / Gauss-Hermite quadrature; we agree to 1e-7 relative.
- chance to beat control: gbstats 0.2 approximates log(B/A) by a normal, we integrate
  exactly; with >= 25 conversions per arm (binomial) the two agree within 2e-3 absolute,
  for means within 1e-3.  The exact values are checked against Monte Carlo instead.
- Monte Carlo: 1,000,000 posterior draws with a fixed seed, within 4 standard errors.
"""

from __future__ import annotations

import json
import math
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given

from abtest.errors import InvalidInput
from analysis import SampleStats, bayesian_binomial, bayesian_mean
from tests.strategies import conversions


def _gbstats_main() -> ModuleType:
    try:
        from gbstats.bayesian import main
    except ImportError as exc:  # a missing reference must fail loudly, never skip
        raise AssertionError("install the reference: pip install --no-deps gbstats==0.2.2") from exc
    return main


BINOMIAL_CASES = [
    (100, 1000, 120, 1000),
    (30, 200, 25, 210),
    (5000, 50_000, 5100, 50_000),
    (400, 100_000, 430, 100_000),
    (0, 100, 3, 100),
    (90_000, 1_000_000, 90_400, 1_000_000),
]


def _stats(n: int, mean: float, sd: float) -> SampleStats:
    return SampleStats(n, mean * n, (n - 1) * sd * sd + n * mean * mean)


@pytest.mark.parametrize(("x_a", "n_a", "x_b", "n_b"), BINOMIAL_CASES)
def test_binomial_matches_gbstats(x_a, n_a, x_b, n_b):
    """Expected losses equal gbstats' Beta-posterior risk; chance to win is close."""
    ref = _gbstats_main().binomial_ab_test(x_a, n_a, x_b, n_b)
    ours = bayesian_binomial(control=SampleStats(n_a, x_a, x_a), variant=SampleStats(n_b, x_b, x_b))
    assert ours.expected_loss_control == pytest.approx(ref["risk"][0], rel=1e-7, abs=1e-12)
    assert ours.expected_loss == pytest.approx(ref["risk"][1], rel=1e-7, abs=1e-12)
    if min(x_a, x_b) >= 25:
        assert ours.chance_to_beat_control == pytest.approx(ref["chance_to_win"], abs=2e-3)


@pytest.mark.parametrize(
    "case",
    [
        (10, 3, 1000, 10.3, 3.1, 1000),
        (1.0, 2.0, 5000, 1.02, 2.1, 5200),
        (100, 40, 200, 98, 45, 210),
    ],
)
def test_mean_matches_gbstats(case):
    """Normal-posterior expected losses equal gbstats' risk; chance to win is close."""
    m_a, s_a, n_a, m_b, s_b, n_b = case
    ref = _gbstats_main().gaussian_ab_test(m_a, s_a, n_a, m_b, s_b, n_b)
    ours = bayesian_mean(control=_stats(n_a, m_a, s_a), variant=_stats(n_b, m_b, s_b))
    assert ours.expected_loss_control == pytest.approx(ref["risk"][0], rel=1e-7)
    assert ours.expected_loss == pytest.approx(ref["risk"][1], rel=1e-7)
    assert ours.chance_to_beat_control == pytest.approx(ref["chance_to_win"], abs=1e-3)


@pytest.mark.parametrize(("x_a", "n_a", "x_b", "n_b"), BINOMIAL_CASES)
def test_binomial_matches_monte_carlo(x_a, n_a, x_b, n_b):
    """Chance to win and both losses match 1e6 seeded draws from the Beta posteriors."""
    rng = np.random.default_rng(x_a + n_b)
    a = rng.beta(1 + x_a, 1 + n_a - x_a, 1_000_000)
    b = rng.beta(1 + x_b, 1 + n_b - x_b, 1_000_000)
    ours = bayesian_binomial(control=SampleStats(n_a, x_a, x_a), variant=SampleStats(n_b, x_b, x_b))
    for exact, draws in [
        (ours.chance_to_beat_control, (b > a).astype(float)),
        (ours.expected_loss, np.maximum(a - b, 0)),
        (ours.expected_loss_control, np.maximum(b - a, 0)),
    ]:
        se = draws.std() / math.sqrt(draws.size)
        assert abs(exact - draws.mean()) <= 4 * se + 1e-12


def test_mean_matches_monte_carlo():
    """The normal read-out matches draws from the two normal posteriors of the means."""
    c, v = _stats(800, 5.0, 2.0), _stats(900, 5.1, 2.2)
    rng = np.random.default_rng(5)
    a = rng.normal(c.mean, math.sqrt(c.variance / c.n), 1_000_000)
    b = rng.normal(v.mean, math.sqrt(v.variance / v.n), 1_000_000)
    ours = bayesian_mean(control=c, variant=v)
    for exact, draws in [
        (ours.chance_to_beat_control, (b > a).astype(float)),
        (ours.expected_loss, np.maximum(a - b, 0)),
        (ours.expected_loss_control, np.maximum(b - a, 0)),
    ]:
        assert abs(exact - draws.mean()) <= 4 * draws.std() / 1000 + 1e-12


def test_lower_is_better_flips_the_read_out():
    """For a metric where lower wins, the chance and the two losses swap roles."""
    c, v = SampleStats(1000, 100, 100), SampleStats(1000, 80, 80)
    up = bayesian_binomial(control=c, variant=v)
    down = bayesian_binomial(control=c, variant=v, higher_is_better=False)
    assert down.chance_to_beat_control == pytest.approx(1 - up.chance_to_beat_control)
    assert down.expected_loss == pytest.approx(up.expected_loss_control)
    assert down.expected_loss_control == pytest.approx(up.expected_loss)
    m_up = bayesian_mean(control=_stats(500, 1.0, 1.0), variant=_stats(500, 0.9, 1.0))
    m_down = bayesian_mean(
        control=_stats(500, 1.0, 1.0), variant=_stats(500, 0.9, 1.0), higher_is_better=False
    )
    assert m_down.chance_to_beat_control == pytest.approx(1 - m_up.chance_to_beat_control)
    assert m_down.expected_loss == pytest.approx(m_up.expected_loss_control)


@given(c=conversions, v=conversions)
def test_binomial_identities(c, v):
    """Chance in [0, 1]; loss_keep - loss_ship = E[B - A]; swapping arms mirrors it all."""
    sc, sv = SampleStats(c[0], c[1], c[1]), SampleStats(v[0], v[1], v[1])
    r = bayesian_binomial(control=sc, variant=sv)
    assert 0.0 <= r.chance_to_beat_control <= 1.0
    assert r.expected_loss >= 0
    assert r.expected_loss_control >= 0
    assert r.expected_loss_control - r.expected_loss == pytest.approx(r.effect_mean, abs=1e-9)
    s = bayesian_binomial(control=sv, variant=sc)
    assert s.chance_to_beat_control == pytest.approx(1 - r.chance_to_beat_control, abs=1e-9)
    assert s.expected_loss == pytest.approx(r.expected_loss_control, abs=1e-9)


def test_to_dict_and_credible_interval():
    """to_dict is JSON; the credible interval is centred on the posterior effect."""
    r = bayesian_mean(control=_stats(100, 1.0, 1.0), variant=_stats(100, 1.3, 1.0))
    out = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert out["method"] == "normal"
    lo, hi = r.credible_interval(0.9)
    assert (lo + hi) / 2 == pytest.approx(r.effect_mean)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (
            lambda: bayesian_binomial(control=SampleStats(0, 0, 0), variant=SampleStats(5, 1, 1)),
            "control",
        ),
        (
            lambda: bayesian_binomial(control=SampleStats(5, 1, 1), variant=SampleStats(5, 7, 7)),
            "variant",
        ),
        (
            lambda: bayesian_binomial(
                control=SampleStats(5, 1, 1), variant=SampleStats(5, 1, 1), prior=(0, 1)
            ),
            "prior",
        ),
        (
            lambda: bayesian_mean(control=SampleStats(1, 1, 1), variant=SampleStats(5, 1, 1)),
            "control",
        ),
    ],
)
def test_bad_input(call, field):
    """Empty arms, impossible conversion counts or an improper prior raise InvalidInput."""
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field
