"""Health checks (`analysis.statistics.health`): each statistic against an independent
reference (numpy, scipy, statsmodels), properties by Hypothesis, and the signals' rules."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.robust.scale import mad as statsmodels_mad

from abtest import webhook_signature
from abtest.alerts import Severity
from analysis.statistics import health, health_rates, health_trends, robust
from analysis.statistics.sequential_margin import SequentialMargin
from analysis.statistics.srm import srm_test

STEADY = [100, 96, 104, 99, 101, 98, 103, 97, 102, 100, 95, 105, 99, 101]


def test_robust_baseline_matches_numpy_and_statsmodels():
    """Median and 1.4826·MAD per row equal numpy's median and statsmodels' ``mad``, NaN left out."""
    rng = np.random.default_rng(1)
    rows = rng.normal(50, 7, (20, 14))
    rows[3, :5] = np.nan
    median, sd, count = health.robust_baseline(rows)
    for i, row in enumerate(rows):
        kept = row[np.isfinite(row)]
        assert median[i] == pytest.approx(np.median(kept), rel=1e-12)
        assert sd[i] == pytest.approx(statsmodels_mad(kept, center=np.median(kept)), rel=1e-9)
        assert count[i] == kept.size


def test_robust_baseline_of_no_data_is_nan():
    """A row with nothing finite has no median or spread, and a count of 0."""
    median, sd, count = health.robust_baseline([[np.nan, np.nan], [1.0, 3.0]])
    assert math.isnan(median[0]) and math.isnan(sd[0]) and count[0] == 0
    assert median[1] == 2.0 and count[1] == 2


def test_rate_drop_p_value_is_the_negative_binomial_lower_tail():
    """The p-value is scipy's nbinom.cdf at the documented mean and dispersion."""
    history = np.array([120, 80, 135, 70, 110, 95, 140, 60, 100, 125, 90, 105, 85, 115], float)
    test = health.rate_drop_test(history, 30.0)
    mu = np.median(history)
    sd = statsmodels_mad(history, center=mu)
    phi = max(0.0, (sd**2 - mu) / mu**2) + (math.pi / 2) * sd**2 / (history.size * mu**2)
    size = 1 / phi
    assert float(test.expected) == pytest.approx(mu)
    assert float(test.p_value) == pytest.approx(stats.nbinom.cdf(30, size, size / (size + mu)))


def test_rate_drop_is_poisson_without_extra_variance():
    """A perfectly flat baseline leaves only Poisson noise: p = poisson.cdf."""
    test = health.rate_drop_test([200.0] * 10, 170.0)
    assert float(test.p_value) == pytest.approx(stats.poisson.cdf(170, 200.0))
    assert not test.alarm


@pytest.mark.parametrize(
    ("current", "alarm", "critical"),
    [
        (100, False, False),  # as usual
        (60, False, False),  # a dip, not far below (a weekend)
        (25, True, False),  # far below: warning
        (8, True, True),  # stopped
        (0, True, True),
    ],
)
def test_rate_drop_gates(current, alarm, critical):
    """An alarm needs a small p and a count below 30% of the expected; critical below 10%."""
    test = health.rate_drop_test(STEADY, float(current))
    assert bool(test.alarm) is alarm
    assert bool(test.critical) is critical


def test_rate_drop_needs_a_week_of_history():
    """With fewer than `MIN_HISTORY` usable periods nothing is judged."""
    test = health.rate_drop_test(STEADY[:6], 0.0)
    assert not test.alarm and math.isnan(float(test.p_value))
    assert health.rate_drop_test(STEADY[:7], 0.0).alarm


def test_rate_drop_small_counts_cannot_alarm():
    """Five expected exposures and none seen is not evidence of a broken client (p > alpha)."""
    test = health.rate_drop_test([5, 4, 6, 5, 5, 6, 4, 5], 0.0)
    # At least the Poisson probability of no event (the baseline's noise only widens it).
    assert float(test.p_value) >= math.exp(-5) > health.RATE_ALPHA
    assert not test.alarm


def test_rate_drop_follows_the_exposure():
    """Counts are judged per unit of exposure: a ramp from 10% to 50% traffic is no drop,
    and half a day at the usual rate is as expected."""
    history = [10, 11, 9, 10, 50, 52, 48, 51]
    shares = [0.1, 0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.5]
    ramp = health.rate_drop_test(history, 50.0, history_exposure=shares, current_exposure=0.5)
    assert float(ramp.expected) == pytest.approx(100 * 0.5, rel=0.05) and not ramp.alarm
    half = health.rate_drop_test(STEADY, 50.0, current_exposure=0.5)
    assert float(half.expected) == pytest.approx(50.0) and not half.alarm
    paused = health.rate_drop_test(STEADY, 0.0, current_exposure=0.0)
    assert not paused.alarm


def test_rate_drop_ignores_an_outage_in_its_baseline():
    """The median baseline keeps its level through an earlier outage day."""
    history = [*STEADY[:10], 0, *STEADY[10:13]]
    test = health.rate_drop_test(history, 5.0)
    assert float(test.expected) == pytest.approx(np.median(history))
    assert test.alarm


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5_000), min_size=7, max_size=14),
    st.integers(0, 5_000),
    st.integers(0, 5_000),
)
def test_rate_drop_p_value_properties(history, low, high):
    """p lies in [0, 1] and never decreases as the latest count grows."""
    low, high = sorted((low, high))
    p_low = float(health.rate_drop_test(history, float(low)).p_value)
    p_high = float(health.rate_drop_test(history, float(high)).p_value)
    if math.isnan(p_low):
        assert np.median(history) == 0
        return
    assert 0.0 <= p_low <= p_high <= 1.0


def test_exposure_drop_signals_per_subject():
    """Each subject's latest period is judged on its own; the signal carries the numbers."""
    signals = health.exposure_drop({"all": [*STEADY, 40], "v1": [*STEADY, 50], "v2": [*STEADY, 0]})
    by_subject = {s.subject: s for s in signals}
    assert set(by_subject) == {"v2"}
    signal = by_subject["v2"]
    assert signal.kind == health.EXPOSURE_DROP and signal.severity is Severity.CRITICAL
    assert signal.numbers["observed"] == 0
    assert signal.numbers["expected"] == pytest.approx(np.median(STEADY))
    assert signal.numbers["baseline_periods"] == 14
    assert "exposures of v2 stopped" in signal.message
    json.dumps(signal.to_dict(), allow_nan=False)


def test_event_drop_is_the_same_test_on_events():
    """Events per metric are judged like exposures, under their own kind."""
    (signal,) = health.event_drop({"purchase": [*STEADY, 20]})
    assert signal.kind == health.EVENT_DROP and signal.subject == "purchase"
    assert signal.severity is Severity.WARNING


# -- metric trends -------------------------------------------------------------------------

RATES = [0.100, 0.104, 0.098, 0.101, 0.099, 0.102, 0.097, 0.103, 0.100, 0.101]


@pytest.mark.parametrize(
    ("value", "kind", "severity"),
    [
        (0.101, None, None),
        (0.106, None, None),  # a few SDs away, but +5%: not a Twyman jump
        (0.0, health.METRIC_DROP, Severity.CRITICAL),  # collapsed
        (0.080, health.METRIC_DROP, Severity.WARNING),
        (0.125, health.METRIC_JUMP, Severity.WARNING),  # +25% overnight
        (0.230, health.METRIC_JUMP, Severity.CRITICAL),  # more than doubled
    ],
)
def test_metric_trend_both_ways(value, kind, severity):
    """Drops and jumps against the metric's own days alarm; small or unsurprising ones do not."""
    signals = health.metric_trend({"purchase[v2]": [*RATES, value]})
    if kind is None:
        assert signals == []
        return
    (signal,) = signals
    assert (signal.kind, signal.severity, signal.subject) == (kind, severity, "purchase[v2]")
    assert signal.numbers["median"] == pytest.approx(np.median(RATES))
    json.dumps(signal.to_dict(), allow_nan=False)


def test_trend_z_uses_the_mad_or_the_sampling_se_whichever_is_larger():
    """z divides by max(1.4826·MAD·sqrt(1 + π/2n), se): a noisy latest period does not alarm."""
    history = np.array(RATES)
    center = np.median(history)
    spread = statsmodels_mad(history, center=center) * math.sqrt(1 + math.pi / (2 * history.size))
    test = health.trend_test(history, 0.080)
    assert float(test.z) == pytest.approx((0.080 - center) / spread)
    noisy = health.trend_test(history, 0.080, current_se=0.01)
    assert float(noisy.z) == pytest.approx((0.080 - center) / 0.01)
    assert test.drop and not noisy.drop


def test_trend_of_a_constant_metric_alarms_on_a_real_change_only():
    """No spread at all: any change of at least `min_change` alarms, a tiny one does not."""
    assert health.trend_test([5.0] * 8, 6.0).jump
    assert not health.trend_test([5.0] * 8, 5.2).jump
    assert not health.trend_test([5.0] * 8, 5.0).jump


def test_rate_se_is_the_binomial_se():
    """sqrt(p(1-p)/n), and 0 without units."""
    se = health.rate_se([0.2, 0.5, 0.3], [400, 100, 0])
    assert se.tolist() == pytest.approx([0.02, 0.05, 0.0])


# -- sample ratio --------------------------------------------------------------------------


def test_srm_is_srm_test_on_the_cumulative_units():
    """With constant weights the signal is exactly `srm_test` on the summed units."""
    units = {"control": [5000, 5100, 4950], "treatment": [5200, 5350, 5150]}
    reference = srm_test(observed={"control": 15050, "treatment": 15700},
                         weights={"control": 1, "treatment": 1})  # fmt: skip
    (signal,) = health.sample_ratio_mismatch(units, {"control": 1.0, "treatment": 1.0})
    assert signal.kind == health.SAMPLE_RATIO_MISMATCH and signal.severity is Severity.CRITICAL
    assert signal.numbers["p_value"] == pytest.approx(reference.p_value)
    assert signal.numbers["observed"] == {"control": 15050, "treatment": 15700}


def test_srm_follows_a_ramp_of_the_weights():
    """Units split 95/5 then 50/50 match weights that changed the same way; the same units
    against the final weights alone are a mismatch."""
    units = {"old": [9500, 5000], "new": [500, 5000]}
    ramp = {"old": [95.0, 50.0], "new": [5.0, 50.0]}
    assert health.sample_ratio_mismatch(units, ramp) == []
    expected = {"old": 9500 + 5000, "new": 500 + 5000}
    (signal,) = health.sample_ratio_mismatch({"old": [9000, 5000], "new": [1000, 5000]}, ramp)
    assert signal.numbers["expected"] == pytest.approx(expected)
    assert health.sample_ratio_mismatch(units, {"old": 50.0, "new": 50.0})


def test_srm_without_units_says_nothing():
    """No units yet: nothing to test."""
    assert health.sample_ratio_mismatch({"a": [0, 0], "b": [0, 0]}, {"a": 1.0, "b": 1.0}) == []


# -- missing events ------------------------------------------------------------------------


def test_missing_events_p_value_is_the_binomial_zero_class():
    """p = binom.pmf(0, n, s) with s the variant's share at the tolerated rate ratio."""
    events, units = [0, 30, 30], [1000, 1000, 2000]
    p, alarm = health.missing_events_test(events, units)
    share = 0.5 * 1000 / (0.5 * 1000 + 3000)
    assert p[0] == pytest.approx(stats.binom.pmf(0, 60, share))
    assert p[1] == 1.0 and not alarm[1]
    assert bool(alarm[0]) is bool(p[0] < health.MISSING_ALPHA)
    assert health.missing_events_test([0, 60], [1000, 1000])[1][0]


def test_missing_events_signal():
    """A silent variant among busy ones is critical; a quiet metric overall is not."""
    (signal,) = health.missing_events({"v1": 80}, {"v1": 500.0, "v2": 500.0}, metric="purchase")
    assert signal.kind == health.MISSING_EVENTS and signal.subject == "purchase[v2]"
    assert signal.severity is Severity.CRITICAL and signal.numbers["events_all_variants"] == 80
    assert health.missing_events({"v1": 3}, {"v1": 500.0, "v2": 500.0}, metric="purchase") == []
    assert health.missing_events({}, {"v1": 500.0, "v2": 500.0}, metric="purchase") == []


# -- guardrails ----------------------------------------------------------------------------


def _margin(p_harm: float) -> SequentialMargin:
    return SequentialMargin(estimate=0.12, se=0.02, margin=0.05, relative=True,
                            higher_is_better=False, tau2=0.01, p_harm=p_harm,
                            p_non_inferior=0.9)  # fmt: skip


def test_guardrail_regression_reads_the_always_valid_harm_p_value():
    """A harm p-value below alpha is a critical signal naming the guardrail and variant."""
    signals = health.guardrail_regression(
        [("latency_ms:p95", "v2", _margin(0.001)), ("errors", "v2", _margin(0.2))]
    )
    (signal,) = signals
    assert signal.subject == "latency_ms:p95[v2]" and signal.severity is Severity.CRITICAL
    assert signal.numbers["p_harm"] == 0.001 and signal.numbers["margin"] == 0.05
    assert "beyond its relative margin" in signal.message


def test_subject_names():
    """metric[variant], metric, variant or all."""
    assert health.subject("purchase", "v2") == "purchase[v2]"
    assert health.subject("purchase") == "purchase"
    assert health.subject(variant="v2") == "v2"
    assert health.subject() == health.ALL


@pytest.mark.parametrize("module", [health, health_rates, health_trends, robust,
                                    webhook_signature])  # fmt: skip
def test_examples_are_correct_doctests(module):
    """The Examples sections of the health modules (and the signature helper) run as shown."""
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- sustained shifts (CUSUM) ----------------------------------------------------------------


def _reference_cusum(z, rel, *, k, h, clip, min_change):
    """Page's two-sided tabular CUSUM, one period at a time (the textbook recursion)."""
    low = high = 0.0
    run_low = run_high = 0
    sum_low = sum_high = 0.0
    for raw, rt in zip(z, rel, strict=True):
        zt = max(-clip, min(clip, raw))
        low, high = max(0.0, low - zt - k), max(0.0, high + zt - k)
        run_low, sum_low = (run_low + 1, sum_low + rt) if low > 0 else (0, 0.0)
        run_high, sum_high = (run_high + 1, sum_high + rt) if high > 0 else (0, 0.0)
    drop = low >= h and sum_low / max(run_low, 1) <= -min_change
    jump = high >= h and sum_high / max(run_high, 1) >= min_change and not drop
    return low, high, drop, jump


def test_cusum_matches_the_textbook_recursion():
    """The vectorised CUSUM equals the one-period-at-a-time recursion on random series."""
    rng = np.random.default_rng(11)
    z = rng.normal(0, 2, (300, 14)) + rng.choice([-2.5, 0, 2.5], (300, 1))
    rel = z / 10
    test = health.cusum_test(z, rel)
    for i in range(len(z)):
        low, high, drop, jump = _reference_cusum(
            z[i], rel[i], k=health.CUSUM_K, h=health.CUSUM_H, clip=health.CUSUM_CLIP,
            min_change=health.TREND_MIN_CHANGE,
        )  # fmt: skip
        assert test.low[i] == pytest.approx(low) and test.high[i] == pytest.approx(high)
        assert (bool(test.drop[i]), bool(test.jump[i])) == (drop, jump)
    assert test.drop.any() and test.jump.any()


def test_trend_series_judges_each_period_as_trend_test_does():
    """Period t of `trend_series` is `trend_test` of t against the window before it."""
    rng = np.random.default_rng(12)
    values = rng.normal(10, 1, 40)
    series = health.trend_series(values, se=0.2)
    for t in (7, 20, 39):
        single = health.trend_test(values[max(0, t - health.WINDOW) : t], values[t],
                                   current_se=0.2)  # fmt: skip
        assert series.z[t] == pytest.approx(float(single.z))
    assert (series.periods[:7] < health.MIN_HISTORY).all()


def test_a_sustained_drop_no_single_day_shows_is_caught():
    """A small experiment's conversions fall from 10% to 2% (200 units a day): no single
    day is beyond z = 5, but in most of 40 runs six such days are a sustained drop."""
    caught = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        units = np.full(36, 200)
        rates = np.concatenate([rng.binomial(200, 0.10, 30), rng.binomial(200, 0.02, 6)]) / units
        assert not health.trend_series(rates, units=units).drop.any()
        signals = health.metric_trend({"purchase[v2]": rates}, units={"purchase[v2]": units})
        if signals:
            (signal,) = signals
            assert signal.kind == health.METRIC_DROP and "has stayed" in signal.message
            assert 3 <= signal.numbers["periods"] <= 10  # the run can begin before the shift
            assert signal.numbers["mean_relative_change"] < -0.5
            caught += 1
    assert caught >= 24


def test_one_wild_day_is_not_a_sustained_shift():
    """A single day far out (clipped) followed by normal days leaves the CUSUM below h."""
    values = [10.0, 10.2, 9.9, 10.1, 9.8, 10.0, 10.1] * 3 + [30.0] + [10.0, 9.9, 10.1]
    assert health.metric_trend({"m": values}) == []
