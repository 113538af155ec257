"""What the per-unit join hands to the statistics: per-variant aggregates of each metric.

The engines (`analysis.data.join` on DuckDB) build these; `analysis.statistics` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import pandas as pd

from abtest.experiment import Metric
from analysis.data.metric_spec import longest_window, source_metrics
from analysis.statistics.aggregates import PairedStats, SampleStats

DEFAULT_COVARIATE_WINDOW: Final = timedelta(days=14)
DEFAULT_OBSERVATION_WINDOW: Final = timedelta(hours=24)
"""Per-unit observation window of the daily looks when no attribution window is given."""


def observation_window_for(
    metrics: Sequence[Metric], observation: timedelta | None, attribution: timedelta | None
) -> timedelta:
    """A unit's observation window: ``observation`` if given, else the analysis'
    ``attribution`` window, else the longest of ``metrics``' own, else
    `DEFAULT_OBSERVATION_WINDOW`."""
    return observation or attribution or longest_window(metrics) or DEFAULT_OBSERVATION_WINDOW


@dataclass(frozen=True)
class EventCounts:
    """What happened to the outcome events of the analysed metrics (after deduplication).

    ``counted``: at or after the unit's first exposure (and inside the attribution
    window); ``covariate``: before it, inside the CUPED pre-exposure window.  Dropped:
    ``unknown_unit`` (no exposure in this experiment), ``crossover_unit`` (the unit saw
    two variants and is excluded), ``before_exposure`` (earlier than the first exposure,
    not used as a covariate), ``outside_window`` (after the attribution window).
    ``duplicates``: repeated ``event_id`` rows, counted once (not part of ``total``).
    """

    total: int = 0
    counted: int = 0
    covariate: int = 0
    unknown_unit: int = 0
    crossover_unit: int = 0
    before_exposure: int = 0
    outside_window: int = 0
    duplicates: int = 0

    @property
    def dropped(self) -> dict[str, int]:
        """Dropped events by reason."""
        return {
            "unknown_unit": self.unknown_unit,
            "crossover_unit": self.crossover_unit,
            "before_exposure": self.before_exposure,
            "outside_window": self.outside_window,
        }

    @property
    def dropped_share(self) -> float:
        """Dropped events over all (deduplicated) events of the analysed metrics."""
        return sum(self.dropped.values()) / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the counts, ``dropped`` by reason and ``dropped_share``."""
        return {"total": self.total, "counted": self.counted, "covariate": self.covariate,
                "duplicates": self.duplicates, "dropped": self.dropped,
                "dropped_share": self.dropped_share}  # fmt: skip


@dataclass(frozen=True)
class QuantileSample:
    """Event values of one variant with the (integer-coded) unit each belongs to."""

    values: np.ndarray = field(compare=False)
    units: np.ndarray = field(compare=False)

    @property
    def n_units(self) -> int:
        """Units with at least one value."""
        return int(np.unique(self.units).size)


@dataclass(frozen=True)
class MetricAggregates:
    """One metric's per-variant aggregates.

    ``stats``: `SampleStats` of the per-unit value (binomial, count, sum) or `PairedStats`
    with y = numerator and x = denominator (ratio); empty for quantile metrics.
    ``covariate``: `PairedStats` with y = the metric and x = its pre-exposure value, for
    CUPED (binomial, count, sum), or None when no covariate was asked for.
    ``samples``: event values for quantile metrics, else None.
    """

    metric: Metric
    stats: Mapping[str, SampleStats | PairedStats]
    covariate: Mapping[str, PairedStats] | None = None
    samples: Mapping[str, QuantileSample] | None = None


@dataclass(frozen=True)
class Aggregates:
    """Everything the statistics need, reduced from the joined data.

    ``daily`` holds cumulative aggregates at the end of each UTC day (columns ``day,
    variant, metric, n, sum_y, sum_x, sum_yy, sum_xx, sum_xy``; x is 0 except for ratio
    metrics) for binomial, count, sum and ratio metrics; with an attribution window, only
    of the units whose window has closed by then (`analysis.data.daily`);
    ``exposures_per_day`` the new units per day and variant (``day, variant, units``).
    ``observation_window``: the per-unit window of the daily looks.  ``metric_events``:
    counted events per event name (a metric whose events are missing has 0);
    ``undefined_metrics``: event names with events from this experiment's units but no
    metric that reads them, with their event counts.
    """

    experiment: str
    config_versions: tuple[str, ...]
    units: Mapping[str, int]
    excluded_units: int
    start: datetime
    end: datetime
    metrics: Mapping[str, MetricAggregates]
    daily: pd.DataFrame = field(compare=False, repr=False)
    exposures_per_day: pd.DataFrame = field(compare=False, repr=False)
    observation_window: timedelta = DEFAULT_OBSERVATION_WINDOW
    events: EventCounts = field(default_factory=EventCounts)
    metric_events: Mapping[str, int] = field(default_factory=dict)
    undefined_metrics: Mapping[str, int] = field(default_factory=dict)

    def events_missing(self, metric: Metric) -> list[str]:
        """The event names ``metric`` reads that have no counted event yet."""
        return [name for name in source_metrics(metric) if not self.metric_events.get(name)]

    @property
    def total_units(self) -> int:
        """Units exposed, crossovers included."""
        return sum(self.units.values()) + self.excluded_units

    @property
    def days(self) -> float:
        """Length of the data in days (first to last exposure or outcome)."""
        return max((self.end - self.start).total_seconds() / 86400.0, 0.0)

    def daily_stats(self, metric: str) -> dict[object, dict[str, PairedStats]]:
        """Cumulative `PairedStats` by day and variant for one metric (see ``daily``)."""
        rows = self.daily[self.daily["metric"] == metric]
        moments = rows[["sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy"]].to_numpy(dtype=float)
        out: dict[object, dict[str, PairedStats]] = {}
        for day, variant, n, sums in zip(
            rows["day"], rows["variant"], rows["n"].to_numpy(dtype=np.int64), moments, strict=True
        ):
            out.setdefault(day, {})[str(variant)] = PairedStats(int(n), *map(float, sums))
        return out
