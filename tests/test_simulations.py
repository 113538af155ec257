"""Seeded simulations: error rates and coverage hold over thousands of experiments.

Data are drawn per unit in numpy matrices (one row per experiment) or, for the peeking
studies, as per-look sufficient statistics (cumulative sums over looks), so each test
runs in seconds.  Bands: with 4,000 runs the standard error of a rate
near 0.05 is 0.0034, so [0.035, 0.065] is +-4.4 SE; coverage [0.935, 0.965] likewise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import (
    DecisionRules,
    PairedStats,
    SampleStats,
    analyze,
    cuped,
    mean_difference,
    minimum_detectable_effect_proportion,
    proportion_difference,
    quantile_difference,
    ratio_difference,
)
from analysis.decision.always_valid import stated_prior
from analysis.decision.rules import holm_along_last_axis
from analysis.statistics.mixing import MixingPrior
from analysis.statistics.sequential import always_valid_p_values

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


# -- peeking: the always-valid verdicts under daily looks ---------------------------------
# Each look adds the units whose per-unit observation window closed that day (as the daily
# looks of `analyze` do), so a look's data are cumulative sufficient statistics: one numpy
# cumsum over looks gives thousands of experiments at every look at once.  The p-values,
# the prior and the Holm rule are the library's own functions, the ones `decide` calls;
# `test_vectorised_verdicts_are_the_verdicts_of_analyze` checks, on the real join path,
# that they give exactly the verdicts of `analyze`.
ALPHA = 0.05
HALF = ALPHA / 2


def _prior(planned: int | None) -> MixingPrior:
    """The prior `analyze` states for this plan (None: the rules' default)."""
    return stated_prior(mixing_sd=None, mde=None, relative_mde=False,
                        planned_units_per_variant=planned, alpha=ALPHA, power=0.8)  # fmt: skip


def _conversions(rng, runs: int, looks: int, per_look: int, rate: float, *, arms: int = 1):
    """Cumulative conversions per look of ``arms`` arms: shape (runs, looks, arms)."""
    return np.cumsum(rng.binomial(per_look, rate, (runs, looks, arms)), axis=1).astype(float)


def _directional_p(n, x_c, x_v, prior: MixingPrior, n_v=None):
    """Always-valid (p_better, p_worse) of a conversion metric at every look, as `analyze`
    computes them: unpooled proportion variance, τ² from the prior, one-sided mixtures.
    ``n`` units per arm (or ``n`` control and ``n_v`` variant units)."""
    n_v = n if n_v is None else n_v
    m_c, m_v = x_c / n, x_v / n_v
    var = m_c * (1 - m_c) / n + m_v * (1 - m_v) / n_v
    tau2 = prior.tau2(variance=var, n_control=n, n_variant=n_v, control_mean=m_c)
    kwargs = {"estimate": m_v - m_c, "variance": var, "tau2": tau2}
    return (always_valid_p_values(**kwargs, alternative="greater"),
            always_valid_p_values(**kwargs, alternative="less"))  # fmt: skip


def _ever(p_values, n=None) -> np.ndarray:
    """Experiments whose Holm-adjusted family (last axis) rejects at alpha/2 at some look
    (with ``n``, only at looks with the rules' minimum units, as `decide` does)."""
    hits = (holm_along_last_axis(p_values) <= HALF).any(axis=-1)
    if n is not None:
        hits &= (n >= DecisionRules().min_units_per_variant).ravel()
    return hits.any(axis=-1)


def _rate(hits: np.ndarray) -> tuple[float, float]:
    """Rate and its Monte Carlo standard error."""
    rate = float(hits.mean())
    return rate, float(np.sqrt(rate * (1 - rate) / hits.size))


def _peeking(looks: int, per_look: int, rate: float, planned: int | None, *, runs: int, seed: int):
    rng = np.random.default_rng(seed)
    n = (per_look * np.arange(1, looks + 1))[:, None]
    x_c = _conversions(rng, runs, looks, per_look, rate)
    x_v = _conversions(rng, runs, looks, per_look, rate)
    better, worse = _directional_p(n, x_c, x_v, _prior(planned))
    with np.errstate(divide="ignore", invalid="ignore"):  # no conversion yet: no test
        z = (x_v - x_c) / n / np.sqrt((x_c * (n - x_c) + x_v * (n - x_v)) / n**3)
    fixed = (np.abs(np.nan_to_num(z)) > stats.norm.isf(HALF)).any(axis=(1, 2))
    return _rate(_ever(better)), _rate(_ever(worse)), _rate(fixed)


@pytest.mark.parametrize(
    ("looks", "per_look", "rate", "planned"),
    [(14, 500, 0.05, 7000), (14, 500, 0.10, None), (60, 500, 0.05, 7000),
     (60, 100, 0.10, None)],
    ids=["14-plan", "14-default", "60-plan", "60-default"],
)  # fmt: skip
def test_peeking_keeps_each_direction_below_half_alpha(looks, per_look, rate, planned):
    """A/A, 20,000 experiments read at every look: the always-valid test calls 'better'
    in <= alpha/2 of them and 'worse' in <= alpha/2, with the plan's prior (the plan at
    14 looks, looked at long after) or the default one; a fixed-horizon z test read at
    every look calls a difference in 20-35 % of them."""
    better, worse, fixed = _peeking(looks, per_look, rate, planned, runs=20_000, seed=looks)
    assert better[0] <= HALF and worse[0] <= HALF
    assert better[0] + worse[0] > 0  # the test is not vacuous
    assert fixed[0] > 0.2


@pytest.mark.slow
@pytest.mark.parametrize(("per_look", "rate", "planned"), [(100, 0.05, 1400), (20, 0.10, None)],
                         ids=["plan", "default"])  # fmt: skip
def test_peeking_365_daily_looks(per_look, rate, planned):
    """A year of daily looks at 20,000 A/A experiments: each direction stays <= alpha/2,
    where the fixed-horizon z test read daily calls a difference in about half of them."""
    better, worse, fixed = _peeking(365, per_look, rate, planned, runs=20_000, seed=365)
    assert better[0] <= HALF and worse[0] <= HALF
    assert fixed[0] > 0.4


@pytest.mark.parametrize(("planned", "per_look", "rate"), [(7000, 500, 0.05), (None, 500, 0.10)],
                         ids=["plan", "no-plan"])  # fmt: skip
@pytest.mark.parametrize("treatments", [1, 2])
def test_aa_verdicts_at_14_daily_looks(planned, per_look, rate, treatments):
    """The verdict rule itself (Holm across treatments at alpha/2 per direction, from the
    plan's prior or the default one, only once a variant has its minimum units): under A/A
    with 14 daily looks, ship happens at some look in <= alpha/2 of 20,000 experiments, and
    so does roll_back."""
    rng = np.random.default_rng(14 + treatments)
    runs, looks = 20_000, 14
    n = (per_look * np.arange(1, looks + 1))[:, None]
    x_c = _conversions(rng, runs, looks, per_look, rate)
    x_v = _conversions(rng, runs, looks, per_look, rate, arms=treatments)
    better, worse = _directional_p(n, x_c, x_v, _prior(planned))
    ship, roll_back = _rate(_ever(better, n)), _rate(_ever(worse, n))
    assert ship[0] <= HALF and roll_back[0] <= HALF
    assert ship[0] + roll_back[0] > 0  # the rule is not vacuous here


def test_lognormal_revenue_peeking_with_plug_in_variances():
    """A skewed revenue-like metric (lognormal, sd 1.3x the mean), 14 looks of 300 units
    per arm, 4,000 A/A experiments: the plug-in variance keeps each direction <= alpha/2."""
    rng = np.random.default_rng(1401)
    runs, looks, per_look = 4000, 14, 300
    n = per_look * np.arange(1, looks + 1)

    def arm():
        y = rng.lognormal(0.0, 1.0, (runs, looks, per_look))
        return np.cumsum(y.sum(axis=2), axis=1), np.cumsum((y * y).sum(axis=2), axis=1)

    (s_c, q_c), (s_v, q_v) = arm(), arm()
    var = ((q_c - s_c**2 / n) + (q_v - s_v**2 / n)) / (n - 1) / n
    prior = _prior(looks * per_look)
    tau2 = prior.tau2(variance=var, n_control=n, n_variant=n, control_mean=s_c / n)
    kwargs = {"estimate": (s_v - s_c) / n, "variance": var, "tau2": tau2}
    better = always_valid_p_values(**kwargs, alternative="greater")[..., None]
    worse = always_valid_p_values(**kwargs, alternative="less")[..., None]
    assert _rate(_ever(better))[0] <= HALF and _rate(_ever(worse))[0] <= HALF


def test_power_cost_at_the_plan():
    """At the plan's MDE and sample (80 % power for the fixed-horizon test read once), the
    always-valid test read daily over 14 looks ships in 40-60 % of 20,000 experiments by
    the planned sample, the price of being able to stop at every look; running on to twice
    the planned sample (28 looks) brings it above 80 %."""
    rng = np.random.default_rng(1402)
    runs, looks, per_look, rate = 20_000, 14, 500, 0.05
    planned = looks * per_look
    mde = float(minimum_detectable_effect_proportion(baseline=rate, n_per_variant=planned)
                .absolute)  # fmt: skip
    n = (per_look * np.arange(1, 2 * looks + 1))[:, None]
    x_c = _conversions(rng, runs, 2 * looks, per_look, rate)
    x_v = _conversions(rng, runs, 2 * looks, per_look, rate + mde)
    better, _ = _directional_p(n, x_c, x_v, _prior(planned))
    by_plan, _ = _rate(_ever(better[:, :looks], n[:looks]))
    by_twice, _ = _rate(_ever(better, n))
    fixed = np.mean([
        proportion_difference(control=SampleStats(planned, c, c),
                              variant=SampleStats(planned, v, v)).p_value < ALPHA
        for c, v in zip(x_c[:2000, looks - 1, 0].tolist(), x_v[:2000, looks - 1, 0].tolist(),
                        strict=True)
    ])  # fmt: skip
    assert 0.75 <= fixed <= 0.85
    assert 0.4 <= by_plan <= 0.6
    assert by_twice >= 0.8


def _daily_experiments(seed: int, lifts: list[float], units: int):
    """Exposures and outcomes of one experiment per lift, in the export schema: units arrive
    over 14 days; a converting unit (10 % x (1 + lift) in treatment) buys within 20 hours."""
    rng = np.random.default_rng(seed)
    exposures, outcomes = [], []
    t0 = pd.Timestamp("2025-01-01")
    for k, lift in enumerate(lifts):
        unit = np.array([f"e{k}u{i}" for i in range(units)])
        treated = rng.random(units) < 0.5
        start = t0 + pd.to_timedelta(rng.uniform(0, 14 * 86400, units), unit="s")
        exposures.append(pd.DataFrame({"unit_id": unit, "experiment": f"exp{k}",
                                       "variant": np.where(treated, "treatment", "control"),
                                       "timestamp": start}))  # fmt: skip
        buys = np.flatnonzero(rng.random(units) < 0.1 * np.where(treated, 1 + lift, 1.0))
        outcomes.append(pd.DataFrame({
            "event_id": [f"e{k}b{i}" for i in buys], "unit_id": unit[buys], "metric": "buy",
            "value": 1.0,
            "timestamp": start[buys] + pd.to_timedelta(rng.uniform(0, 20, buys.size), unit="h"),
        }))  # fmt: skip
    return pd.concat(exposures, ignore_index=True), pd.concat(outcomes, ignore_index=True)


def _matured_counts(exposures: pd.DataFrame, outcomes: pd.DataFrame):
    """Independent pandas reference: (n, conversions) per arm over the units observed for
    24 h by the end of the data, each converted if it bought within its 24 h."""
    first = exposures.set_index("unit_id")
    bought = outcomes.merge(first, left_on="unit_id", right_index=True)
    post = bought[bought["timestamp_x"] >= bought["timestamp_y"]]
    end = max(first["timestamp"].max(), post["timestamp_x"].max())
    matured = first[first["timestamp"] + pd.Timedelta(hours=24) <= end]
    inside = post[post["timestamp_x"] < post["timestamp_y"] + pd.Timedelta(hours=24)]
    converted = matured.index.isin(inside["unit_id"])
    arms = matured["variant"].to_numpy()
    return [((arms == a).sum(), (converted & (arms == a)).sum()) for a in ("control", "treatment")]


@pytest.mark.slow
def test_vectorised_verdicts_are_the_verdicts_of_analyze():
    """Four experiments (lifts -60 % to +100 %), each analysed through `analyze` (the real
    join path) at the end of each of its 14 days: its always-valid p-values equal the
    vectorised ones computed from independently counted matured units, and it ships or
    rolls back exactly when the vectorised rule of the simulations above says so."""
    lifts, planned = [-0.6, 0.0, 0.6, 1.0], 1000
    exposures, outcomes = _daily_experiments(7, lifts, units=3000)
    seen: dict[str, int] = {}
    for k in range(len(lifts)):
        for day in range(1, 15):
            cutoff = pd.Timestamp("2025-01-01") + pd.Timedelta(days=day)
            exp = exposures[(exposures["experiment"] == f"exp{k}")
                            & (exposures["timestamp"] <= cutoff)]  # fmt: skip
            out = outcomes[outcomes["timestamp"] <= cutoff]
            result = analyze(exp, out, metrics=["buy:binomial"], planned_units_per_variant=planned,
                             covariate_window=None)  # fmt: skip
            counts = _matured_counts(exp, out[out["unit_id"].isin(exp["unit_id"])])
            (n_c, x_c), (n_v, x_v) = counts
            row, verdict = result.rows[0], result.decision.verdict
            seen[verdict.value] = seen.get(verdict.value, 0) + 1
            if row.sequential is None:
                assert min(n_c, n_v) < 2
                continue
            better, worse = _directional_p(np.array(n_c), np.array(x_c), np.array(x_v),
                                           _prior(planned), n_v=np.array(n_v))  # fmt: skip
            assert row.sequential.p_greater[-1] == pytest.approx(float(better), rel=1e-9)
            assert row.sequential.p_less[-1] == pytest.approx(float(worse), rel=1e-9)
            if verdict.value == "invalid":
                continue
            assert (verdict.value == "ship") == bool(better <= HALF)
            assert (verdict.value == "roll_back") == bool(worse <= HALF)
    assert seen.get("ship", 0) >= 3 and seen.get("roll_back", 0) >= 3, seen
