"""Seeded simulations: error rates and coverage hold over thousands of experiments.

Data are drawn per unit in numpy matrices (one row per experiment) or, for the peeking
study, as per-look sufficient statistics from their exact sampling distributions, so
each test runs in about a second.  Bands: with 4,000 runs the standard error of a rate
near 0.05 is 0.0034, so [0.035, 0.065] is +-4.4 SE; coverage [0.935, 0.965] likewise.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analysis import (
    PairedStats,
    SampleStats,
    cuped,
    mean_difference,
    proportion_difference,
    quantile_difference,
    ratio_difference,
    sequential_test,
)

RUNS = 4000


def _rows(matrix: np.ndarray) -> list[SampleStats]:
    sums, squares = matrix.sum(axis=1), np.einsum("ij,ij->i", matrix, matrix)
    return [
        SampleStats(matrix.shape[1], float(s), float(q)) for s, q in zip(sums, squares, strict=True)
    ]


def test_aa_false_positive_rate_mean_metric():
    """A/A on skewed revenue-like data: p < 0.05 in 3.5-6.5 % of 4,000 experiments."""
    rng = np.random.default_rng(101)
    c, v = _rows(rng.lognormal(0, 0.7, (RUNS, 500))), _rows(rng.lognormal(0, 0.7, (RUNS, 500)))
    p = np.array([mean_difference(control=a, variant=b).p_value for a, b in zip(c, v, strict=True)])
    assert 0.035 <= (p < 0.05).mean() <= 0.065


def test_aa_false_positive_rate_binomial_metric():
    """A/A on a 5 % conversion rate: p < 0.05 in 3.5-6.5 % of 4,000 experiments."""
    rng = np.random.default_rng(102)
    x_c, x_v = rng.binomial(3000, 0.05, RUNS), rng.binomial(3000, 0.05, RUNS)
    p = np.array(
        [
            proportion_difference(
                control=SampleStats(3000, a, a), variant=SampleStats(3000, b, b)
            ).p_value
            for a, b in zip(x_c.tolist(), x_v.tolist(), strict=True)
        ]
    )
    assert 0.035 <= (p < 0.05).mean() <= 0.065


def _covers(effects, true_abs: float, true_rel: float) -> tuple[float, float]:
    abs_hits = [lo <= true_abs <= hi for lo, hi in (e.absolute_ci for e in effects)]
    rel_hits = [lo <= true_rel <= hi for lo, hi in (e.relative_ci for e in effects)]
    return float(np.mean(abs_hits)), float(np.mean(rel_hits))


def test_ci_coverage_mean_metric():
    """95 % CIs of the absolute and relative effect cover the truth in 93.5-96.5 % of runs."""
    rng = np.random.default_rng(103)
    mu_c, mu_v, sigma = 0.0, 0.05, 0.5
    c, v = (
        _rows(rng.lognormal(mu_c, sigma, (RUNS, 800))),
        _rows(rng.lognormal(mu_v, sigma, (RUNS, 800))),
    )
    m_c, m_v = np.exp(mu_c + sigma**2 / 2), np.exp(mu_v + sigma**2 / 2)
    effects = [mean_difference(control=a, variant=b) for a, b in zip(c, v, strict=True)]
    abs_cov, rel_cov = _covers(effects, m_v - m_c, m_v / m_c - 1)
    assert 0.935 <= abs_cov <= 0.965
    assert 0.935 <= rel_cov <= 0.965


def test_ci_coverage_binomial_metric():
    """Conversion 10 % vs 11 %: absolute and relative CIs cover in 93.5-96.5 % of runs."""
    rng = np.random.default_rng(104)
    x_c, x_v = rng.binomial(4000, 0.10, RUNS), rng.binomial(4000, 0.11, RUNS)
    effects = [
        proportion_difference(control=SampleStats(4000, a, a), variant=SampleStats(4000, b, b))
        for a, b in zip(x_c.tolist(), x_v.tolist(), strict=True)
    ]
    abs_cov, rel_cov = _covers(effects, 0.01, 0.1)
    assert 0.935 <= abs_cov <= 0.965
    assert 0.935 <= rel_cov <= 0.965


def test_ci_coverage_ratio_metric():
    """Clicks per session (delta method): CIs cover the true ratio difference 93.5-96.5 %."""
    rng = np.random.default_rng(105)
    n, runs = 600, 2000

    def arm(ctr: float) -> list[PairedStats]:
        sessions = rng.poisson(2.0, (runs, n)) + 1
        clicks = rng.binomial(sessions, ctr)
        return [PairedStats.from_values(y, x) for y, x in zip(clicks, sessions, strict=True)]

    effects = [
        ratio_difference(control=a, variant=b) for a, b in zip(arm(0.2), arm(0.21), strict=True)
    ]
    abs_cov, rel_cov = _covers(effects, 0.01, 0.05)
    assert 0.93 <= abs_cov <= 0.97  # 2,000 runs: SE 0.0049
    assert 0.93 <= rel_cov <= 0.97


def _daily_looks(rng: np.random.Generator, runs: int, days: int, per_day: int, mean: float):
    """Cumulative (n, Σy, Σy²) per look from exact sampling distributions of normal data."""
    sigma = 1.0
    day_sum = rng.normal(per_day * mean, sigma * np.sqrt(per_day), (runs, days))
    # Σ(y - ȳ)² ~ σ² χ²(n - 1), independent of ȳ (Cochran's theorem).
    day_ss = sigma**2 * rng.chisquare(per_day - 1, (runs, days)) + day_sum**2 / per_day
    n = per_day * np.arange(1, days + 1)
    return n, np.cumsum(day_sum, axis=1), np.cumsum(day_ss, axis=1)


def test_peeking_daily_keeps_sequential_fpr_below_alpha():
    """25 daily looks at 2,000 A/A tests: stopping at the first always-valid p <= 0.05
    rejects in <= 5 % of tests, while stopping at the first fixed-horizon p < 0.05 does
    in far more (about 4x)."""
    rng = np.random.default_rng(106)
    runs, days, per_day = 2000, 25, 200
    n, s_c, q_c = _daily_looks(rng, runs, days, per_day, 0.0)
    _, s_v, q_v = _daily_looks(rng, runs, days, per_day, 0.0)
    est = s_v / n - s_c / n
    var = ((q_c - s_c**2 / n) + (q_v - s_v**2 / n)) / (n - 1) / n
    naive_p = 2 * stats.norm.sf(np.abs(est) / np.sqrt(var))
    naive_fpr = (naive_p < 0.05).any(axis=1).mean()
    seq_reject = []
    for r in range(runs):
        looks = [
            (
                SampleStats(int(n[d]), s_c[r, d], q_c[r, d]),
                SampleStats(int(n[d]), s_v[r, d], q_v[r, d]),
            )
            for d in range(days)
        ]
        seq_reject.append(sequential_test(looks=looks, alpha=0.05).reject)
    seq_fpr = float(np.mean(seq_reject))
    assert seq_fpr <= 0.05
    assert naive_fpr > 0.15
    # A single fixed-horizon look at the end is still fine: the problem is peeking.
    assert 0.035 <= (naive_p[:, -1] < 0.05).mean() <= 0.065


def test_sequential_detects_a_real_effect():
    """With a 0.1 SD effect, the always-valid test rejects by day 25 in most experiments."""
    rng = np.random.default_rng(107)
    runs, days, per_day = 300, 25, 200
    n, s_c, q_c = _daily_looks(rng, runs, days, per_day, 0.0)
    _, s_v, q_v = _daily_looks(rng, runs, days, per_day, 0.1)
    power = np.mean(
        [
            sequential_test(
                looks=[
                    (
                        SampleStats(int(n[d]), s_c[r, d], q_c[r, d]),
                        SampleStats(int(n[d]), s_v[r, d], q_v[r, d]),
                    )
                    for d in range(days)
                ]
            ).reject
            for r in range(runs)
        ]
    )
    assert power > 0.8


def test_cuped_reduces_variance_and_keeps_coverage():
    """With corr(x, y) = 0.7, CUPED cuts the effect's variance by about 0.49, its estimates
    really are that much tighter, and its 95 % CIs still cover in 93.5-96.5 % of runs."""
    rng = np.random.default_rng(108)
    n, rho, effect = 400, 0.7, 0.1

    def arm(shift: float) -> list[PairedStats]:
        x = rng.normal(0, 1, (RUNS, n))
        y = rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, (RUNS, n)) + shift
        sums = (y.sum(1), x.sum(1), (y * y).sum(1), (x * x).sum(1), (x * y).sum(1))
        return [PairedStats(n, *map(float, row)) for row in zip(*sums, strict=True)]

    results = [cuped(control=a, variant=b) for a, b in zip(arm(0.0), arm(effect), strict=True)]
    adjusted = np.array([r.effect.absolute_effect for r in results])
    raw = np.array([r.unadjusted.absolute_effect for r in results])
    reduction = np.array([r.variance_reduction for r in results])
    assert reduction.mean() == pytest.approx(rho**2, abs=0.02)
    assert 1 - adjusted.var() / raw.var() == pytest.approx(rho**2, abs=0.05)
    coverage = np.mean([lo <= effect <= hi for lo, hi in (r.effect.absolute_ci for r in results)])
    assert 0.935 <= coverage <= 0.965


def test_quantile_ci_coverage_with_clustered_units():
    """p90 of clustered latencies: the asymptotic clustered CI covers the true difference
    in 93-97 % of 1,000 runs (the event-level CI would not; see test_quantile)."""
    rng = np.random.default_rng(109)
    units, per_unit, runs, q = 200, 5, 1000, 0.9
    sd = np.sqrt(0.6**2 + 0.6**2)  # log-latency = device effect + request noise
    truth = np.exp(0.1 + sd * stats.norm.ppf(q)) - np.exp(sd * stats.norm.ppf(q))
    unit = np.repeat(np.arange(units), per_unit)
    hits = []
    for _ in range(runs):
        c = np.exp(rng.normal(0, 0.6, units)[unit] + rng.normal(0, 0.6, unit.size))
        v = np.exp(0.1 + rng.normal(0, 0.6, units)[unit] + rng.normal(0, 0.6, unit.size))
        res = quantile_difference(
            control_values=c,
            control_units=unit,
            variant_values=v,
            variant_units=unit,
            q=q,
            method="asymptotic",
        )
        lo, hi = res.effect.absolute_ci
        hits.append(lo <= truth <= hi)
    assert 0.93 <= np.mean(hits) <= 0.97
