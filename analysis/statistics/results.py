"""Result objects shared by the inference functions: frozen, JSON-ready, SciPy-shaped.

An `Effect` carries the estimate, its standard error and the reference distribution, so
``confidence_interval(level)`` can be re-derived at any level without the data (the
pattern of ``scipy.stats.ttest_ind(...).confidence_interval``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from scipy import special, stats

from analysis.statistics.relative import (
    ArmEstimates,
    bias_corrected_relative_effect,
    trusted_relative_bounds,
)

Alternative = Literal["two-sided", "greater", "less"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")

Interval = tuple[float, float]


def json_float(value: float | None) -> float | None:
    """A float for JSON: nan and ±inf become None (they are not JSON numbers)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_interval(interval: Interval | None) -> list[float | None] | None:
    """``[lo, hi]`` for JSON, an unbounded side (one-sided interval) as None."""
    if interval is None:
        return None
    return [json_float(interval[0]), json_float(interval[1])]


def critical_value(level: float, alternative: str, df: float | None) -> float:
    """Quantile of the reference distribution for a ``level`` interval (normal or t)."""
    tail = (1 - level) / 2 if alternative == "two-sided" else 1 - level
    if df is None or not math.isfinite(df):
        # scipy's norm.isf is -ndtri; calling it directly skips ~50 µs of dispatch.
        return float(-special.ndtri(tail))
    return float(stats.t.isf(tail, df))


def interval(
    estimate: float, se: float, *, level: float, alternative: str, df: float | None
) -> Interval:
    """Wald interval ``estimate ± c·se``, one-sided for "greater"/"less" as SciPy does."""
    c = critical_value(level, alternative, df)
    lo, hi = estimate - c * se, estimate + c * se
    if alternative == "greater":
        return (lo, math.inf)
    if alternative == "less":
        return (-math.inf, hi)
    return (lo, hi)


def p_value(statistic: float, alternative: str, df: float | None) -> float:
    """P-value of a z (``df`` None) or t statistic under the given alternative."""
    if math.isnan(statistic):
        return math.nan
    # Every alternative is an upper tail of a symmetric distribution at some point.
    point = {"greater": statistic, "less": -statistic}.get(alternative, abs(statistic))
    if df is None or not math.isfinite(df):
        # scipy's norm.sf is ndtr(-x); calling it directly skips ~50 µs of dispatch.
        tail = float(special.ndtr(-point))
    else:
        tail = float(stats.t.sf(point, df))
    return tail if alternative in ("greater", "less") else min(1.0, 2 * tail)


def z_statistic(estimate: float, se: float, null: float = 0.0) -> float:
    """``(estimate - null) / se``; with se = 0 it is 0 for no difference, else ±inf."""
    diff = estimate - null
    if se > 0:
        return diff / se
    if diff == 0:
        return 0.0
    return math.copysign(math.inf, diff)


@dataclass(frozen=True)
class Effect:
    """Variant versus control on one metric: absolute and relative effect with SEs.

    ``relative_effect`` is ``(variant_mean - control_mean) / |control_mean|``; it is None
    (with ``relative_reason``) when the control mean is 0 and no relative effect exists.
    ``relative_se`` is its delta-method SE, a summary: the relative CI is Fieller's
    (`analysis.statistics.relative`), from ``control_se`` and ``variant_se``, the standard
    errors of the two arm estimates.  When no relative CI can be trusted at the result's
    level (an arm's mean within the critical value's SEs of 0), ``relative_ci`` is None
    and ``relative_reason`` says why, while ``relative_effect`` stays.
    ``df`` is None for the normal reference distribution, else Welch's degrees of freedom.
    """

    kind: str
    n_control: int
    n_variant: int
    control_mean: float
    variant_mean: float
    absolute_effect: float
    absolute_se: float
    relative_effect: float | None
    relative_se: float | None
    relative_reason: str | None
    statistic: float
    p_value: float
    alternative: str
    level: float
    df: float | None = None
    control_se: float | None = None
    variant_se: float | None = None

    def confidence_interval(self, level: float | None = None) -> Interval:
        """CI of the absolute effect (one-sided when the alternative is)."""
        return interval(
            self.absolute_effect,
            self.absolute_se,
            level=self.level if level is None else level,
            alternative=self.alternative,
            df=self.df,
        )

    def relative_confidence_interval(self, level: float | None = None) -> Interval | None:
        """Fieller's CI of the relative effect (one-sided when the alternative is).

        None when the relative effect is undefined or no interval can be trusted at this
        level (`analysis.statistics.relative.relative_refusal`).  Without the arm SEs
        (an `Effect` built by hand) it falls back to the delta-method Wald interval.
        """
        if self.relative_effect is None or self.relative_se is None:
            return None
        level = self.level if level is None else level
        arms = self.arms
        if arms is None:
            return interval(
                self.relative_effect,
                self.relative_se,
                level=level,
                alternative=self.alternative,
                df=self.df,
            )
        bounds = trusted_relative_bounds(
            arms, critical=critical_value(level, self.alternative, self.df)
        )
        if bounds is None:
            return None
        # The bounds come from m_v / m_c, the estimate from (m_v - m_c) / |m_c|: rounding
        # may differ by an ulp, which must not put the estimate outside a narrow interval.
        lower = min(bounds[0], self.relative_effect)
        upper = max(bounds[1], self.relative_effect)
        if self.alternative == "greater":
            return (lower, math.inf)
        if self.alternative == "less":
            return (-math.inf, upper)
        return (lower, upper)

    @property
    def arms(self) -> ArmEstimates | None:
        """The arm estimates with their SEs, None for an `Effect` built without them."""
        if self.control_se is None or self.variant_se is None:
            return None
        return ArmEstimates(self.control_mean, self.control_se, self.variant_mean, self.variant_se)

    @property
    def relative_effect_corrected(self) -> float | None:
        """The relative effect without most of its ratio bias (see
        `analysis.statistics.relative.bias_corrected_relative_effect`); for averaging
        lifts across experiments.  None without a relative effect or the arm SEs."""
        if self.relative_effect is None or self.arms is None:
            return None
        return bias_corrected_relative_effect(self.arms)

    @property
    def absolute_ci(self) -> Interval:
        """The CI at the result's own ``level``."""
        return self.confidence_interval()

    @property
    def relative_ci(self) -> Interval | None:
        """The relative CI at the result's own ``level`` (None when undefined)."""
        return self.relative_confidence_interval()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; nan/inf become None."""
        return {
            "kind": self.kind,
            "n_control": self.n_control,
            "n_variant": self.n_variant,
            "control_mean": json_float(self.control_mean),
            "variant_mean": json_float(self.variant_mean),
            "absolute_effect": json_float(self.absolute_effect),
            "absolute_se": json_float(self.absolute_se),
            "absolute_ci": json_interval(self.absolute_ci),
            "relative_effect": json_float(self.relative_effect),
            "relative_se": json_float(self.relative_se),
            "relative_ci": json_interval(self.relative_ci),
            "relative_reason": self.relative_reason,
            "relative_effect_corrected": json_float(self.relative_effect_corrected),
            "control_se": json_float(self.control_se),
            "variant_se": json_float(self.variant_se),
            "statistic": json_float(self.statistic),
            "p_value": json_float(self.p_value),
            "alternative": self.alternative,
            "level": self.level,
            "df": json_float(self.df),
        }
