"""Sufficient statistics: the contract between the data (join) and the statistics.

Every test in `analysis` runs on these aggregates alone, so the heavy per-unit step can be
pushed into a SQL engine unchanged (``COUNT(*), SUM(y), SUM(y*y)``…).  Aggregates add
(``+``) across shards and days.  Shape follows gbstats' ``SampleMeanStatistic`` and SciPy's
``ttest_ind_from_stats`` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleStats:
    """``n`` units with per-unit values y: ``sum`` = Σy, ``sum_sq`` = Σy²."""

    n: int
    sum: float
    sum_sq: float

    def __add__(self, other: SampleStats) -> SampleStats:
        return SampleStats(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @classmethod
    def from_values(cls, values: np.ndarray) -> SampleStats:
        """Aggregate an array of per-unit values."""
        y = np.asarray(values, dtype=float)
        return cls(int(y.size), float(y.sum()), float(np.dot(y, y)))

    @property
    def mean(self) -> float:
        """Σy / n (nan when n = 0)."""
        return self.sum / self.n if self.n else float("nan")

    @property
    def variance(self) -> float:
        """Sample variance with ddof = 1 (nan when n < 2)."""
        if self.n < 2:
            return float("nan")
        return max(self.sum_sq - self.sum * self.sum / self.n, 0.0) / (self.n - 1)


@dataclass(frozen=True)
class PairedStats:
    """Two per-unit values (y, x) for ``n`` units: first and second moments and Σxy.

    Used for ratio metrics (y = numerator, x = denominator) and for CUPED (y = metric,
    x = pre-exposure covariate).
    """

    n: int
    sum_y: float
    sum_x: float
    sum_yy: float
    sum_xx: float
    sum_xy: float

    def __add__(self, other: PairedStats) -> PairedStats:
        return PairedStats(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_x + other.sum_x,
            self.sum_yy + other.sum_yy,
            self.sum_xx + other.sum_xx,
            self.sum_xy + other.sum_xy,
        )

    @classmethod
    def from_values(cls, y: np.ndarray, x: np.ndarray) -> PairedStats:
        """Aggregate two aligned arrays of per-unit values."""
        y = np.asarray(y, dtype=float)
        x = np.asarray(x, dtype=float)
        return cls(
            int(y.size),
            float(y.sum()),
            float(x.sum()),
            float(np.dot(y, y)),
            float(np.dot(x, x)),
            float(np.dot(x, y)),
        )

    @property
    def y(self) -> SampleStats:
        """The y moments alone."""
        return SampleStats(self.n, self.sum_y, self.sum_yy)

    @property
    def x(self) -> SampleStats:
        """The x moments alone."""
        return SampleStats(self.n, self.sum_x, self.sum_xx)

    @property
    def covariance(self) -> float:
        """Sample covariance of y and x with ddof = 1 (nan when n < 2)."""
        if self.n < 2:
            return float("nan")
        return (self.sum_xy - self.sum_x * self.sum_y / self.n) / (self.n - 1)
