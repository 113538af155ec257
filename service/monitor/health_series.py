"""The series the health checks judge, built from what one monitor check read.

Periods are the 24-hour windows that end at the last full hour before the check (the
latest is ``[h - 24 h, h)``, the one before it ``[h - 48 h, h - 24 h)``, ...): each is a
whole day, and every window starts at the same hour of the day, so the hours of the night
weigh the same in each and a check at 09:00 compares like with like.

- **Exposures** per window, overall and per variant, with each window's *exposure*: the
  share of traffic the experiment was given (its configuration over time, from the audit
  trail), times the variant's share of the weights, averaged over the window's hours, and 0
  while it was not running.  A rollout's ramp, a pause or a rollback therefore changes what
  is expected, not the verdict.
- **Events** per window of each event name a metric reads (the experiment's units' events),
  and in the latest window per variant, with the units exposed so far per variant.
- **Metric values**: for binomial, count, sum and ratio metrics, the daily *cohorts* of the
  always-valid looks (`analysis.data.daily`): the units whose observation window closed on
  one UTC day, so each day's value is a per-unit mean over units observed for the same
  time, whatever the traffic; the latest complete day is judged, with its sampling SE.
  For quantile metrics, and for every metric once no new unit arrives (shipped, rolled
  back), the mean value per event of each window.
- **Units and weights per hour** for the sample-ratio test.

Nothing here decides anything: `service.monitor.health` hands these series to the pure
checks of `analysis.statistics.health`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd

from abtest.experiment import Experiment, Metric, MetricType
from analysis.data.metric_spec import source_metrics
from analysis.statistics.health import ALL, WINDOW, subject

HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
# A metric's series: two windows and the latest period, so that the sustained-shift rule
# (`analysis.statistics.health_trends.cusum_test`) sees a whole window of judged periods.
TREND_PERIODS: Final = 2 * WINDOW + 1
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _utc(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    return (
        stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    ).to_pydatetime()


class Timeline:
    """An experiment's configuration over time, from its audit trail (oldest first)."""

    def __init__(self, history: Sequence[Mapping[str, Any]]) -> None:
        entries = sorted(((_utc(e["time"]), dict(e["config"])) for e in history
                          if "config" in e and "time" in e), key=lambda item: item[0])  # fmt: skip
        self.times = [t for t, _ in entries]
        self.configs = [c for _, c in entries]

    def at(self, moment: datetime) -> Mapping[str, Any] | None:
        """The configuration in force at ``moment`` (None before the first)."""
        i = bisect.bisect_right(self.times, moment) - 1
        return self.configs[i] if i >= 0 else None

    def shares(self, moment: datetime, variants: Iterable[str]) -> dict[str, float]:
        """Share of all units that could be exposed at ``moment``: ``all`` (the traffic)
        and each variant's (traffic times its normalised weight); 0 unless running."""
        config = self.at(moment)
        names = list(variants)
        if config is None or config.get("status") != "running":
            return {ALL: 0.0, **dict.fromkeys(names, 0.0)}
        traffic = float(config.get("traffic", 1.0))
        weights = {str(v["key"]): float(v["weight"]) for v in config.get("variants", [])}
        total = sum(weights.values()) or 1.0
        return {ALL: traffic, **{v: traffic * weights.get(v, 0.0) / total for v in names}}


def window_end(as_of: datetime) -> datetime:
    """The end of the latest window: the last full hour at or before ``as_of``."""
    return _utc(as_of).replace(minute=0, second=0, microsecond=0)


def _window_index(hours: pd.Series, end: datetime, count: int) -> np.ndarray:
    """Index (0 = oldest of ``count``) of each hour's window; -1 outside them."""
    stamps = pd.to_datetime(hours, utc=True)
    back = ((pd.Timestamp(end) - stamps) / pd.Timedelta(hours=1)).to_numpy(dtype=float)
    ago = np.floor((back - 1) / 24)  # hours [end - 24 h, end) are 0 windows ago
    index = count - 1 - ago
    return np.where((back >= 1) & (index >= 0), index, -1).astype(int)


def _sum_by_window(frame: pd.DataFrame, column: str, end: datetime, count: int) -> FloatArray:
    out = np.zeros(count)
    if frame.empty:
        return out
    index = _window_index(frame["hour"], end, count)
    keep = index >= 0
    np.add.at(out, index[keep], frame[column].to_numpy(dtype=float)[keep])
    return out


def exposure_inputs(
    experiment: Experiment, timeline: Timeline, exposures_by_hour: pd.DataFrame, end: datetime
) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """New units per window (``all`` and per variant) and each window's exposure."""
    count = WINDOW + 1
    names = list(experiment.variant_keys)
    exposure = {name: np.zeros(count) for name in [ALL, *names]}
    start = end - count * DAY
    for h in range(count * 24):
        moment = start + h * HOUR + HOUR / 2
        for name, share in timeline.shares(moment, names).items():
            exposure[name][h // 24] += share / 24
    counts = {ALL: _sum_by_window(exposures_by_hour, "units", end, count)}
    for name in names:
        rows = exposures_by_hour[exposures_by_hour["variant"] == name]
        counts[name] = _sum_by_window(rows, "units", end, count)
    return counts, exposure


def event_inputs(
    metrics: Sequence[Metric], events_by_hour: pd.DataFrame, end: datetime
) -> tuple[dict[str, FloatArray], dict[str, dict[str, float]]]:
    """Events per window of each event name the metrics read, and per variant in the
    latest window."""
    count = WINDOW + 1
    names = sorted({name for metric in metrics for name in source_metrics(metric)})
    series, latest = {}, {}
    for name in names:
        rows = events_by_hour[events_by_hour["metric"] == name]
        series[name] = _sum_by_window(rows, "events", end, count)
        index = _window_index(rows["hour"], end, count) if not rows.empty else np.array([])
        last = rows[index == count - 1] if not rows.empty else rows
        latest[name] = {
            str(v): float(n) for v, n in last.groupby("variant")["events"].sum().items()
        }
    return series, latest


def per_event_means(
    metrics: Sequence[Metric], events_by_hour: pd.DataFrame, end: datetime, *, by_variant: bool
) -> dict[str, FloatArray]:
    """Mean value per event of each window (`TREND_PERIODS` of them), per metric (and
    variant): NaN without events."""
    count = TREND_PERIODS
    out = {}
    for metric in metrics:
        name = source_metrics(metric)[0]
        rows = events_by_hour[events_by_hour["metric"] == name]
        groups = rows.groupby("variant") if by_variant else [(None, rows)]
        for variant, part in groups:
            events = _sum_by_window(part, "events", end, count)
            total = _sum_by_window(part, "total", end, count)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[subject(metric.name, None if variant is None else str(variant))] = np.where(
                    events > 0, total / np.where(events > 0, events, 1.0), np.nan
                )
    return out


@dataclass(frozen=True)
class MetricSeries:
    """Per subject (``metric[variant]``), a metric's value per period, and what the checks
    need to judge its noise: per-period SEs (mean metrics) or units (rates)."""

    values: dict[str, FloatArray] = field(default_factory=dict)
    se: dict[str, FloatArray] = field(default_factory=dict)
    units: dict[str, FloatArray] = field(default_factory=dict)


def cohort_values(metrics: Sequence[Metric], daily: pd.DataFrame, latest_day: date) -> MetricSeries:
    """Per metric and variant, the per-unit mean of each daily cohort up to ``latest_day``
    (`TREND_PERIODS` days, NaN for a day with fewer than 2 units), with each cohort's units
    (binomial metrics: the checks take the SE at the baseline's level) or its own SE of
    the mean (count and sum metrics; none for ratios)."""
    days = [latest_day - timedelta(days=TREND_PERIODS - 1 - i) for i in range(TREND_PERIODS)]
    out = MetricSeries()
    kinds = {m.name: m.type for m in metrics if m.type is not MetricType.QUANTILE}
    if daily.empty or not kinds:
        return out
    frame = daily[daily["metric"].isin(list(kinds))].sort_values(["metric", "variant", "day"])
    position = {day: i for i, day in enumerate(days)}
    for (name, variant), rows in frame.groupby(["metric", "variant"]):
        # Each day's cohort is the difference of the cumulative looks (numpy: pandas'
        # diff-and-fill costs milliseconds per call, and this runs per metric and variant).
        cumulative = rows[["n", "sum_y", "sum_x", "sum_yy"]].to_numpy(dtype=float)
        differences = np.diff(cumulative, axis=0, prepend=0.0)
        cohort = np.full((len(days), 4), np.nan)
        for row, day in enumerate(rows["day"]):
            if day in position:
                cohort[position[day]] = differences[row]
        n, sum_y, sum_x, sum_yy = cohort.T
        kind = kinds[str(name)]
        with np.errstate(divide="ignore", invalid="ignore"):
            denominator = sum_x if kind is MetricType.RATIO else n
            mean = np.where(n >= 2, sum_y / denominator, np.nan)
            variance = (sum_yy - sum_y**2 / n) / (n - 1)
        key = subject(str(name), str(variant))
        out.values[key] = mean
        if kind is MetricType.BINOMIAL:
            out.units[key] = np.nan_to_num(n)
        elif kind is not MetricType.RATIO:
            out.se[key] = np.where(n >= 2, np.sqrt(np.maximum(variance, 0.0) / n), 0.0)
    return out


def hourly_srm_inputs(
    experiment: Experiment, timeline: Timeline, exposures_by_hour: pd.DataFrame
) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    """Units per hour and variant, and the weights in force in each hour."""
    names = list(experiment.variant_keys)
    if exposures_by_hour.empty:
        return {}, {}
    table = exposures_by_hour.pivot_table(index="hour", columns="variant", values="units",
                                          aggfunc="sum", fill_value=0)  # fmt: skip
    units = {v: table[v].to_numpy(dtype=float) if v in table else np.zeros(len(table))
             for v in names}  # fmt: skip
    weights: dict[str, list[float]] = {v: [] for v in names}
    for hour in table.index:
        shares = timeline.shares(_utc(hour) + HOUR / 2, names)
        if shares[ALL] == 0:  # exposures logged while not running: judge them on the current
            shares = {v: w.weight for v, w in zip(names, experiment.variants, strict=True)}
        for v in names:
            weights[v].append(shares[v])
    return units, {v: np.asarray(w, dtype=float) for v, w in weights.items()}


def cumulative_units(exposures_by_hour: pd.DataFrame, end: datetime) -> dict[str, float]:
    """Units exposed per variant before ``end``."""
    if exposures_by_hour.empty:
        return {}
    hours = pd.to_datetime(exposures_by_hour["hour"], utc=True)
    rows = exposures_by_hour[hours < pd.Timestamp(end)]
    return {str(v): float(n) for v, n in rows.groupby("variant")["units"].sum().items()}


__all__ = [
    "DAY",
    "TREND_PERIODS",
    "MetricSeries",
    "Timeline",
    "cohort_values",
    "cumulative_units",
    "event_inputs",
    "exposure_inputs",
    "hourly_srm_inputs",
    "per_event_means",
    "window_end",
]
