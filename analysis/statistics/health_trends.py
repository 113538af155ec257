"""``metric_drop`` and ``metric_jump``: a metric that collapses or jumps against its own
recent periods (Twyman's law both ways).

Two rules, on one robust z-score per period (`trend_test`: the period against the median
and MAD of the periods before it):

- **one period** far out: ``|z| >= z_threshold`` and a change of at least ``min_change``;
- **a sustained shift** (`cusum_test`): Page's two-sided tabular CUSUM of the z-scores over
  the last ``window`` periods, ``S⁺ = max(0, S⁺ + z - k)`` and ``S⁻ = max(0, S⁻ - z - k)``,
  alarming at ``h`` when the mean relative change over the run is at least ``min_change``.
  Small shifts that no single day shows add up: a small experiment's collapse, which one
  day of a few conversions cannot prove, is caught within days.  Each z is clipped to
  ``±clip`` so that one wild day alone is not a sustained shift.

See `analysis.statistics.health` for the overview.

References
----------
Page, E. S. (1954), "Continuous inspection schemes", Biometrika 41, 100-115.
Montgomery, D. C. (2019), *Introduction to Statistical Quality Control*, 8th ed., §9.1 (the
tabular CUSUM; ``k`` half the shift to detect in SD units, ``h`` about 4-5 SDs for a
two-sided chart): here ``k = 1`` and ``h = 8`` on robust z-scores, for a false-alarm rate
per experiment-day near the one-period rule's, chosen with the simulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from abtest.alerts import Severity
from analysis.statistics.health_signal import (
    CUSUM_CLIP,
    CUSUM_H,
    CUSUM_K,
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
    current_units: ArrayLike | None = None,
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
    current_units : array_like, optional
        For a rate (a binomial metric): the units it is over; the SE is then `rate_se` at
        the baseline's median (the larger of it and ``current_se`` is used).
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
    if current_units is not None:
        se = np.fmax(se, rate_se(np.where(np.isfinite(center), center, 0.0), current_units))
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


def trend_series(
    values: ArrayLike,
    *,
    se: ArrayLike = 0.0,
    units: ArrayLike | None = None,
    window: int = WINDOW,
    min_history: int = MIN_HISTORY,
    **thresholds: float,
) -> TrendTest:
    """`trend_test` of every period along the last axis against the ``window`` periods
    before it (arrays of the values' shape; a period without enough history is not judged).

    ``se`` and ``units`` are per period (or one value for all); ``thresholds`` are
    `trend_test`'s.

    Examples
    --------
    >>> test = trend_series([5.0] * 9 + [9.0])
    >>> test.jump.tolist()
    [False, False, False, False, False, False, False, False, False, True]
    """
    v = np.asarray(values, dtype=float)
    pad = np.full((*v.shape[:-1], window), np.nan)
    history = sliding_window_view(np.concatenate([pad, v], axis=-1), window, axis=-1)
    shaped = np.broadcast_to(np.asarray(se, dtype=float), v.shape)
    counts = None if units is None else np.broadcast_to(np.asarray(units, float), v.shape)
    return trend_test(history[..., :-1, :], v, current_se=shaped, current_units=counts,
                      min_history=min_history, **thresholds)  # fmt: skip


@dataclass(frozen=True)
class CusumTest:
    """`cusum_test`'s arrays: the statistics at the last period and what they say.

    ``run``: periods since the alarming side last stood at 0 (the shift's estimated age);
    ``mean_change``: the mean relative change over those periods.
    """

    low: FloatArray
    high: FloatArray
    drop: BoolArray
    jump: BoolArray
    run: NDArray[np.int64]
    mean_change: FloatArray


def cusum_test(
    z: ArrayLike,
    relative_change: ArrayLike,
    *,
    k: float = CUSUM_K,
    h: float = CUSUM_H,
    clip: float = CUSUM_CLIP,
    min_change: float = TREND_MIN_CHANGE,
) -> CusumTest:
    """Two-sided tabular CUSUM of per-period z-scores along the last axis (Page 1954).

    Parameters
    ----------
    z, relative_change : array_like
        Each period's robust z-score and relative change (`trend_series`; NaN or a period
        not judged: 0).
    k : float
        Allowance per period: z-scores within ``±k`` add nothing.
    h : float
        Decision interval: ``S⁻ >= h`` is a sustained drop, ``S⁺ >= h`` a sustained jump.
    clip : float
        Each z counts at most ``±clip``.
    min_change : float
        The mean relative change over the run must be at least this.

    Returns
    -------
    CusumTest

    Examples
    --------
    >>> test = cusum_test([0.3, -0.5, -3.0, -3.5, -2.9, -3.2], [0, 0, -.2, -.3, -.2, -.2])
    >>> bool(test.drop), int(test.run), round(float(test.low), 1)
    (True, 4, 8.6)
    """
    zs = np.clip(np.nan_to_num(np.asarray(z, dtype=float), nan=0.0), -clip, clip)
    rel = np.nan_to_num(np.asarray(relative_change, dtype=float), nan=0.0,
                        posinf=10.0, neginf=-10.0)  # fmt: skip
    shape = zs.shape[:-1]
    low, high = np.zeros(shape), np.zeros(shape)
    run_low, run_high = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    sum_low, sum_high = np.zeros(shape), np.zeros(shape)
    for t in range(zs.shape[-1]):
        low = np.maximum(0.0, low - zs[..., t] - k)
        high = np.maximum(0.0, high + zs[..., t] - k)
        run_low = np.where(low > 0, run_low + 1, 0)
        run_high = np.where(high > 0, run_high + 1, 0)
        sum_low = np.where(low > 0, sum_low + rel[..., t], 0.0)
        sum_high = np.where(high > 0, sum_high + rel[..., t], 0.0)
    mean_low = sum_low / np.maximum(run_low, 1)
    mean_high = sum_high / np.maximum(run_high, 1)
    drop = (low >= h) & (mean_low <= -min_change)
    jump = (high >= h) & (mean_high >= min_change) & ~drop
    run = np.where(drop, run_low, np.where(jump, run_high, 0))
    mean = np.where(drop, mean_low, np.where(jump, mean_high, 0.0))
    return CusumTest(low=low, high=high, drop=drop, jump=jump, run=run, mean_change=mean)


def metric_trend(
    values: Mapping[str, ArrayLike],
    *,
    se: Mapping[str, ArrayLike] | None = None,
    units: Mapping[str, ArrayLike] | None = None,
    period: str = "day",
    window: int = WINDOW,
    z_threshold: float = TREND_Z,
    min_change: float = TREND_MIN_CHANGE,
    collapse_ratio: float = TREND_COLLAPSE_RATIO,
    critical_jump: float = TREND_CRITICAL_JUMP,
    min_history: int = MIN_HISTORY,
    k: float = CUSUM_K,
    h: float = CUSUM_H,
    clip: float = CUSUM_CLIP,
) -> list[HealthSignal]:
    """``metric_drop`` and ``metric_jump`` signals (Twyman's law both ways): the latest
    period far out, or a shift sustained over the last ``window`` periods.

    Parameters
    ----------
    values : Mapping[str, array_like]
        Per subject (a metric, or ``metric[variant]``), the metric's value per period
        (a rate or mean per unit or per event), oldest first; the last is judged.  Give
        ``2 * window + 1`` periods for the sustained rule to see a whole window.
    se : Mapping[str, array_like], optional
        Per subject, the values' sampling standard errors under "no change" (see
        `trend_test`), per period or one for all.
    units : Mapping[str, array_like], optional
        Per subject whose values are rates (binomial metrics): the units per period (the
        SE is then the binomial one at the baseline's median).
    period, window, z_threshold, min_change, collapse_ratio, critical_jump, min_history
        See `trend_test`.
    k, h, clip
        See `cusum_test`.

    Returns
    -------
    list[HealthSignal]
        At most one per subject: the one-period rule's when it fires, else the sustained
        one's.
    """
    signals = []
    for name, series in values.items():
        v = np.asarray(series, dtype=float).ravel()
        if v.size == 0:
            continue
        test = trend_series(
            v, se=(se or {}).get(name, 0.0), units=(units or {}).get(name), window=window,
            min_history=min_history, z_threshold=z_threshold, min_change=min_change,
            collapse_ratio=collapse_ratio, critical_jump=critical_jump,
        )  # fmt: skip
        value, center = float(v[-1]), float(test.center[-1])
        if test.drop[-1] or test.jump[-1]:
            signals.append(_one_period(name, test, period, value, center))
            continue
        judged = (test.periods >= min_history) & np.isfinite(test.z)
        sustained = cusum_test(np.where(judged, test.z, 0.0)[-window:],
                               np.where(judged, test.relative_change, 0.0)[-window:],
                               k=k, h=h, clip=clip, min_change=min_change)  # fmt: skip
        if sustained.drop or sustained.jump:
            signals.append(_sustained(name, sustained, period, value, center, h=h,
                                      collapse_ratio=collapse_ratio,
                                      critical_jump=critical_jump))  # fmt: skip
    return signals


def _one_period(
    name: str, test: TrendTest, period: str, value: float, center: float
) -> HealthSignal:
    rel, z = float(test.relative_change[-1]), float(test.z[-1])
    drop, critical = bool(test.drop[-1]), bool(test.critical[-1])
    way = ("collapsed" if critical else "dropped") if drop else "jumped"
    periods = int(test.periods[-1])
    return HealthSignal(
        kind=METRIC_DROP if drop else METRIC_JUMP,
        severity=Severity.CRITICAL if critical else Severity.WARNING, subject=name,
        numbers={"value": json_float(value), "median": json_float(center),
                 "relative_change": json_float(rel), "z": json_float(z),
                 "scale": json_float(float(test.scale[-1])), "baseline_periods": periods},
        message=(f"{name} {way} {percent(rel)} in the latest {period}: {value:.4g} against "
                 f"a median of {center:.4g} over the last {periods} {period}s "
                 f"(robust z = {z:.1f})"),
    )  # fmt: skip


def _sustained(
    name: str, test: CusumTest, period: str, value: float, center: float, *, h: float,
    collapse_ratio: float, critical_jump: float,
) -> HealthSignal:  # fmt: skip
    drop = bool(test.drop)
    mean, run = float(test.mean_change), int(test.run)
    statistic = float(test.low if drop else test.high)
    critical = mean <= collapse_ratio - 1 if drop else mean > critical_jump
    return HealthSignal(
        kind=METRIC_DROP if drop else METRIC_JUMP,
        severity=Severity.CRITICAL if critical else Severity.WARNING, subject=name,
        numbers={"value": json_float(value), "median": json_float(center),
                 "mean_relative_change": json_float(mean), "periods": run,
                 "cusum": json_float(statistic), "threshold": h},
        message=(f"{name} has stayed {percent(mean)} {'below' if drop else 'above'} its "
                 f"recent level for {run} {period}s (CUSUM {statistic:.1f} >= {h:g}); the "
                 f"latest {period}: {value:.4g} against a median of {center:.4g}"),
    )  # fmt: skip


__all__ = [
    "CusumTest",
    "TrendTest",
    "cusum_test",
    "metric_trend",
    "rate_se",
    "trend_series",
    "trend_test",
]
