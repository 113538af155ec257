"""The series the monitor's health checks judge (`service.monitor.health_series`), built
from hourly frames and an audit trail like those a check reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from abtest.experiment import Experiment, Metric, MetricType
from analysis.statistics import health
from service.monitor import health_series as series
from tests.conftest import simple_config

END = datetime(2024, 5, 20, 9, 0, tzinfo=UTC)  # the checks' window end (a full hour)
EXPERIMENT = Experiment.from_dict(simple_config())


def _entry(at: datetime, status: str, traffic: float = 1.0, weights=(1, 1)) -> dict:
    config = simple_config(status=status, traffic=traffic)
    for variant, weight in zip(config["variants"], weights, strict=True):
        variant["weight"] = weight
    return {"time": at.isoformat().replace("+00:00", "Z"), "config": config}


# Drafted 30 days before END, started at 10% traffic 20 days before, ramped to 50% 9 hours
# into the window 8 days before (a rollout's step), weights 1:1 throughout.
HISTORY = [
    _entry(END - timedelta(days=30), "draft"),
    _entry(END - timedelta(days=20), "running", 0.1),
    _entry(END - timedelta(days=8, hours=-9), "running", 0.5),
]


def _hourly(per_hour_at_full_traffic: float, *, last_day_factor: float = 1.0) -> pd.DataFrame:
    """New units per hour and variant: proportional to the traffic of the audit trail."""
    timeline = series.Timeline(HISTORY)
    rows = []
    hour = END - timedelta(days=20)
    while hour < END + timedelta(minutes=30):
        share = timeline.shares(hour + timedelta(minutes=30), ["control", "treatment"])
        factor = last_day_factor if hour >= END - timedelta(days=1) else 1.0
        for variant in ("control", "treatment"):
            units = round(per_hour_at_full_traffic * share[variant] * factor)
            rows.append({"hour": hour.replace(tzinfo=None), "variant": variant, "units": units})
        hour += timedelta(hours=1)
    return pd.DataFrame(rows)


def test_window_end_is_the_last_full_hour():
    """A check at 09:41 judges the 24 hours up to 09:00."""
    assert series.window_end(datetime(2024, 5, 20, 9, 41, 7, tzinfo=UTC)) == END


def test_the_timeline_gives_each_moment_its_configuration():
    """Before the start nothing is exposed; then the traffic share, split by the weights."""
    timeline = series.Timeline(HISTORY)
    names = ["control", "treatment"]
    assert timeline.shares(END - timedelta(days=25), names) == {
        "all": 0.0, "control": 0.0, "treatment": 0.0}  # fmt: skip
    assert timeline.shares(END - timedelta(days=10), names) == pytest.approx(
        {"all": 0.1, "control": 0.05, "treatment": 0.05})  # fmt: skip
    assert timeline.shares(END, names)["treatment"] == pytest.approx(0.25)
    assert timeline.at(END - timedelta(days=40)) is None


def test_exposures_per_window_with_their_exposure():
    """Windows of 24 hours ending at END, oldest first; each with its average traffic share."""
    counts, exposure = series.exposure_inputs(EXPERIMENT, series.Timeline(HISTORY),
                                              _hourly(100.0), END)  # fmt: skip
    assert counts["all"].shape == (health.WINDOW + 1,)
    assert exposure["all"][-1] == pytest.approx(0.5)
    assert exposure["all"][0] == pytest.approx(0.1)
    # The window 8 days back holds the ramp: 9 hours at 10% traffic then 15 hours at 50%.
    assert exposure["all"][-8] == pytest.approx((9 * 0.1 + 15 * 0.5) / 24)
    assert counts["control"][-1] == 24 * 25 and counts["all"][-1] == 24 * 50
    assert counts["all"][0] == 24 * 10


def test_a_ramp_is_no_drop_and_a_broken_client_is():
    """After a ramp from 10% to 50% the usual day is healthy; a day at 5% of it is not."""
    counts, exposure = series.exposure_inputs(EXPERIMENT, series.Timeline(HISTORY),
                                              _hourly(100.0), END)  # fmt: skip
    assert health.exposure_drop(counts, exposure=exposure) == []
    broken = _hourly(100.0, last_day_factor=0.05)
    counts, exposure = series.exposure_inputs(EXPERIMENT, series.Timeline(HISTORY), broken, END)
    signals = health.exposure_drop(counts, exposure=exposure)
    assert {s.subject for s in signals} == {"all", "control", "treatment"}
    assert all(s.severity.value == "critical" for s in signals)


def test_events_per_window_and_per_variant_in_the_latest():
    """Events of the metrics' event names per window; the latest window per variant."""
    frame = pd.DataFrame([
        {"hour": END - timedelta(hours=1), "variant": "control", "metric": "purchase",
         "events": 7, "total": 7.0, "units": 7},
        {"hour": END - timedelta(hours=30), "variant": "treatment", "metric": "purchase",
         "events": 4, "total": 4.0, "units": 4},
        {"hour": END - timedelta(hours=2), "variant": "treatment", "metric": "other",
         "events": 9, "total": 9.0, "units": 9},
    ])  # fmt: skip
    metrics = [Metric("purchase", MetricType.BINOMIAL)]
    events, latest = series.event_inputs(metrics, frame, END)
    assert set(events) == {"purchase"}
    assert events["purchase"][-1] == 7 and events["purchase"][-2] == 4
    assert latest == {"purchase": {"control": 7.0}}


def test_ratio_and_quantile_metrics_read_their_event_names():
    """clicks/searches reads clicks and searches; latency_ms:p95 reads latency_ms."""
    metrics = [Metric("clicks/searches", MetricType.RATIO),
               Metric("latency_ms:p95", MetricType.QUANTILE, higher_is_better=False)]  # fmt: skip
    events, _ = series.event_inputs(metrics, pd.DataFrame(
        columns=["hour", "variant", "metric", "events", "total", "units"]), END)  # fmt: skip
    assert sorted(events) == ["clicks", "latency_ms", "searches"]


def test_per_event_means_by_window():
    """Mean value per event of each window, NaN without events, per variant or pooled."""
    frame = pd.DataFrame([
        {"hour": END - timedelta(hours=3), "variant": "control", "metric": "latency_ms",
         "events": 10, "total": 1500.0, "units": 5},
        {"hour": END - timedelta(hours=4), "variant": "treatment", "metric": "latency_ms",
         "events": 10, "total": 2500.0, "units": 5},
    ])  # fmt: skip
    metrics = [Metric("latency_ms:p95", MetricType.QUANTILE, higher_is_better=False)]
    by_variant = series.per_event_means(metrics, frame, END, by_variant=True)
    assert by_variant["latency_ms:p95[control]"][-1] == 150.0
    assert np.isnan(by_variant["latency_ms:p95[control]"][-2])
    pooled = series.per_event_means(metrics, frame, END, by_variant=False)
    assert pooled["latency_ms:p95"][-1] == 200.0


def _daily(days: list[date], n: list[int], conversions: list[int]) -> pd.DataFrame:
    """Cumulative daily looks of one binomial metric and one variant."""
    rows, cn, cy = [], 0, 0
    for day, units, conv in zip(days, n, conversions, strict=True):
        cn, cy = cn + units, cy + conv
        rows.append({"day": day, "variant": "treatment", "metric": "purchase", "n": cn,
                     "sum_y": float(cy), "sum_x": 0.0, "sum_yy": float(cy), "sum_xx": 0.0,
                     "sum_xy": 0.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_cohort_values_are_the_differences_of_the_cumulative_looks():
    """Each day's cohort: the units that entered the looks that day and their conversion
    rate, judged with the binomial SE at the baseline's median."""
    latest = date(2024, 5, 19)
    days = [latest - timedelta(days=i) for i in range(9, -1, -1)]
    daily = _daily(days, [1000] * 10, [100] * 9 + [30])
    cohorts = series.cohort_values([Metric("purchase", MetricType.BINOMIAL)], daily, latest)
    rates = cohorts.values["purchase[treatment]"]
    assert rates.shape == (series.TREND_PERIODS,)
    assert rates[-1] == pytest.approx(0.03) and rates[-2] == pytest.approx(0.1)
    assert np.isnan(rates[0])  # before the first look
    assert cohorts.units["purchase[treatment]"][-1] == 1000
    (signal,) = health.metric_trend(cohorts.values, units=cohorts.units)
    assert signal.kind == health.METRIC_DROP and signal.subject == "purchase[treatment]"
    assert signal.severity.value == "warning"  # to 30% of its level: not a collapse


def test_cohorts_of_a_mean_metric_carry_their_own_se():
    """A sum metric's cohort mean comes with the SE of that mean (sd / sqrt(n))."""
    latest = date(2024, 5, 19)
    rows = [{"day": latest - timedelta(days=1), "variant": "v1", "metric": "revenue", "n": 4,
             "sum_y": 10.0, "sum_x": 0.0, "sum_yy": 30.0},
            {"day": latest, "variant": "v1", "metric": "revenue", "n": 8, "sum_y": 30.0,
             "sum_x": 0.0, "sum_yy": 130.0}]  # fmt: skip
    cohorts = series.cohort_values([Metric("revenue", MetricType.SUM)], pd.DataFrame(rows),
                                   latest)  # fmt: skip
    # The last cohort: 4 units, sum 20, sum of squares 100: mean 5, variance 0.
    assert cohorts.values["revenue[v1]"][-1] == 5.0
    assert cohorts.se["revenue[v1]"][-1] == 0.0
    # The one before: mean 2.5, variance (30 - 25) / 3, SE sqrt(5 / 3 / 4).
    assert cohorts.se["revenue[v1]"][-2] == pytest.approx(np.sqrt(5 / 3 / 4))


def test_srm_inputs_follow_the_weights_of_each_hour():
    """Units per hour and variant, with each hour's weights: a change of weights counts."""
    history = [_entry(END - timedelta(days=3), "running", 1.0, (9, 1)),
               _entry(END - timedelta(days=1), "running", 1.0, (1, 1))]  # fmt: skip
    frame = pd.DataFrame([
        {"hour": END - timedelta(days=2), "variant": "control", "units": 900},
        {"hour": END - timedelta(days=2), "variant": "treatment", "units": 100},
        {"hour": END - timedelta(hours=5), "variant": "control", "units": 500},
        {"hour": END - timedelta(hours=5), "variant": "treatment", "units": 500},
    ])  # fmt: skip
    units, weights = series.hourly_srm_inputs(EXPERIMENT, series.Timeline(history), frame)
    assert units["treatment"].tolist() == [100, 500]
    assert weights["control"].tolist() == pytest.approx([0.9, 0.5])
    assert health.sample_ratio_mismatch(units, weights) == []
    assert series.cumulative_units(frame, END) == {"control": 1400.0, "treatment": 600.0}
