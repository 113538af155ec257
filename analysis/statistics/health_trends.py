"""``metric_drop`` and ``metric_jump``: a metric that collapses or jumps against its own
recent periods (Twyman's law both ways), by a robust z-score.  See
`analysis.statistics.health` for the overview and references."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.alerts import Severity
from analysis.statistics.health_rates import split_series
from analysis.statistics.health_signal import (
    METRIC_DROP,
    METRIC_JUMP,
    MIN_HISTORY,
    TREND_COLLAPSE_RATIO,
    TREND_CRITICAL_JUMP,
    TREND_MIN_CHANGE,
    TREND_Z,
    WINDOW,
    HealthSignal,
    percent,
)
from analysis.statistics.results import json_float
from analysis.statistics.robust import robust_baseline

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class TrendTest:
    """`trend_test`'s arrays: the latest value against its own recent periods."""

    value: FloatArray
    center: FloatArray
    scale: FloatArray
    z: FloatArray
    relative_change: FloatArray
    drop: BoolArray
    jump: BoolArray
    critical: BoolArray
    periods: NDArray[np.int64]


def trend_test(
    history: ArrayLike,
    current: ArrayLike,
    *,
    current_se: ArrayLike = 0.0,
    z_threshold: float = TREND_Z,
    min_change: float = TREND_MIN_CHANGE,
    collapse_ratio: float = TREND_COLLAPSE_RATIO,
    critical_jump: float = TREND_CRITICAL_JUMP,
    min_history: int = MIN_HISTORY,
) -> TrendTest:
    """Has the latest value jumped or collapsed against the median of its recent periods?

    Parameters
    ----------
    history : array_like
        The metric's value in each baseline period along the last axis (NaN: leave out).
    current : array_like
        The latest value.
    current_se : array_like
        Its sampling standard error under "no change" (0 when unknown): for a rate, the
        binomial SE at the baseline's median (`rate_se`), not at the latest value, which
        would make a day that happens to have no conversions look certain.  A period with
        few units is noisier than its baseline's typical period, and must not alarm for
        that alone.
    z_threshold : float
        ``|z|`` at or above it alarms (with ``min_change``).
    min_change : float
        Smallest relative change ``|x - median| / |median|`` that alarms.
    collapse_ratio : float
        A drop to at most this share of the median is critical (a broken metric).
    critical_jump : float
        A jump of more than this relative change is critical.
    min_history : int
        Fewer usable baseline periods: no judgement.

    Returns
    -------
    TrendTest

    Notes
    -----
    ``z = (x - median) / s`` with ``s = max(1.4826 MAD · sqrt(1 + π / 2n), se)``: the
    factor adds the median's own variance (``π sd² / 2n``, Kenney & Keeping 1962) to the
    prediction of one new value; the median/MAD pair is the robust form of a Shewhart
    individuals chart's centre line and spread (Montgomery 2019, §6.4; Iglewicz & Hoaglin
    1993).  A baseline with no spread at all (a constant) alarms on any change of at least
    ``min_change``.

    Examples
    --------
    >>> test = trend_test([[0.10, 0.11, 0.10, 0.09, 0.10, 0.11, 0.10]], [0.0])
    >>> bool(test.drop[0]), bool(test.critical[0])
    (True, True)
    """
    values = np.asarray(history, dtype=float)
    x = np.asarray(current, dtype=float)
    se = np.broadcast_to(np.asarray(current_se, dtype=float), x.shape)
    center, sd, n = robust_baseline(values)
    judged = (n >= min_history) & np.isfinite(x) & np.isfinite(center)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = sd * np.sqrt(1 + math.pi / (2 * np.maximum(n, 1)))
        scale = np.fmax(spread, np.where(np.isfinite(se), se, 0.0))
        diff = x - center
        z = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0),
                     np.sign(diff) * np.inf)  # fmt: skip
        z = np.where(diff == 0, 0.0, z)
        rel = np.where(center != 0, diff / np.abs(np.where(center != 0, center, 1.0)),
                       np.sign(diff) * np.inf)  # fmt: skip
        rel = np.where(diff == 0, 0.0, rel)
    drop = judged & (z <= -z_threshold) & (rel <= -min_change)
    jump = judged & (z >= z_threshold) & (rel >= min_change)
    collapsed = (center > 0) & (x <= collapse_ratio * center)
    critical = (drop & collapsed) | (jump & (rel > critical_jump))
    return TrendTest(value=x, center=center, scale=scale, z=z, relative_change=rel,
                     drop=drop, jump=jump, critical=critical,
                     periods=n.astype(np.int64))  # fmt: skip


def rate_se(level: ArrayLike, units: ArrayLike) -> FloatArray:
    """Binomial standard error ``sqrt(p (1 - p) / n)`` of a rate over ``units`` at ``level``
    (0 where there are no units).

    Examples
    --------
    >>> float(rate_se(0.1, 900))
    0.01
    """
    p = np.clip(np.asarray(level, dtype=float), 0.0, 1.0)
    n = np.asarray(units, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, np.sqrt(p * (1 - p) / np.where(n > 0, n, 1.0)), 0.0)


def metric_trend(
    values: Mapping[str, ArrayLike],
    *,
    se: Mapping[str, float] | None = None,
    period: str = "day",
    window: int = WINDOW,
    z_threshold: float = TREND_Z,
    min_change: float = TREND_MIN_CHANGE,
    collapse_ratio: float = TREND_COLLAPSE_RATIO,
    critical_jump: float = TREND_CRITICAL_JUMP,
    min_history: int = MIN_HISTORY,
) -> list[HealthSignal]:
    """``metric_drop`` and ``metric_jump`` signals (Twyman's law both ways).

    Parameters
    ----------
    values : Mapping[str, array_like]
        Per subject (a metric, or ``metric[variant]``), the metric's value per period
        (a rate or mean per unit or per event), oldest first; the last is judged.
    se : Mapping[str, float], optional
        The latest value's sampling standard error per subject, under "no change" (see
        `trend_test`).
    period, window, z_threshold, min_change, collapse_ratio, critical_jump, min_history
        See `trend_test`.

    Returns
    -------
    list[HealthSignal]
    """
    signals = []
    for name, series in values.items():
        history, current = split_series(series, window)
        test = trend_test(
            history, current, current_se=(se or {}).get(name, 0.0), z_threshold=z_threshold,
            min_change=min_change, collapse_ratio=collapse_ratio, critical_jump=critical_jump,
            min_history=min_history,
        )  # fmt: skip
        if not (test.drop or test.jump):
            continue
        center, rel, z = float(test.center), float(test.relative_change), float(test.z)
        kind = METRIC_DROP if test.drop else METRIC_JUMP
        way = ("collapsed" if test.critical else "dropped") if test.drop else "jumped"
        signals.append(HealthSignal(
            kind=kind, severity=Severity.CRITICAL if test.critical else Severity.WARNING,
            subject=name,
            numbers={"value": json_float(current), "median": json_float(center),
                     "relative_change": json_float(rel), "z": json_float(z),
                     "scale": json_float(float(test.scale)),
                     "baseline_periods": int(test.periods)},
            message=(f"{name} {way} {percent(rel)} in the latest {period}: {current:.4g} "
                     f"against a median of {center:.4g} over the last {int(test.periods)} "
                     f"{period}s (robust z = {z:.1f})"),
        ))  # fmt: skip
    return signals


__all__ = ["TrendTest", "metric_trend", "rate_se", "trend_test"]
