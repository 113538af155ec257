"""What the per-unit join hands to the statistics: per-variant aggregates of each metric.

The engines (`analysis.data.join` on DuckDB) build these; `analysis.statistics` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd

from abtest.experiment import Metric
from analysis.statistics.aggregates import PairedStats, SampleStats

DEFAULT_COVARIATE_WINDOW: Final = timedelta(days=14)


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
