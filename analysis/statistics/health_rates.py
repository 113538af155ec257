"""``exposure_drop`` and ``event_drop``: counts that stop or fall far below their recent
rate (a broken client), judged against a negative-binomial prediction from a robust
baseline.  See `analysis.statistics.health` for the overview and references."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from abtest.alerts import Severity
from analysis.statistics.health_signal import (
    ALL,
    EVENT_DROP,
    EXPOSURE_DROP,
    MIN_HISTORY,
    RATE_ALPHA,
    RATE_MAX_RATIO,
    RATE_STOP_RATIO,
    WINDOW,
    HealthSignal,
)
from analysis.statistics.results import json_float
from analysis.statistics.robust import finite_median, robust_baseline

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class RateDropTest:
    """`rate_drop_test`'s arrays: the latest count against its baseline, element-wise."""

    observed: FloatArray
    expected: FloatArray
    p_value: FloatArray  # P(X <= observed) under the baseline's predictive distribution
    alarm: BoolArray
    critical: BoolArray
    periods: NDArray[np.int64]  # baseline periods used


def rate_drop_test(
    history: ArrayLike,
    current: ArrayLike,
    *,
    history_exposure: ArrayLike = 1.0,
    current_exposure: ArrayLike = 1.0,
    alpha: float = RATE_ALPHA,
    max_ratio: float = RATE_MAX_RATIO,
    stop_ratio: float = RATE_STOP_RATIO,
    min_history: int = MIN_HISTORY,
) -> RateDropTest:
    """Is the latest count far below the recent rate?  Negative-binomial lower tail.

    Parameters
    ----------
    history : array_like
        Counts of the baseline periods along the last axis (NaN: leave the period out).
    current : array_like
        The latest period's count (shape of ``history`` without its last axis).
    history_exposure, current_exposure : array_like
        What each period could have seen, relative to a full period: the share of traffic
        the experiment had times the share of the period observed (a half-elapsed day at
        10% traffic is 0.05).  Periods with exposure 0 are left out of the baseline; a
        latest exposure of 0 is never judged.
    alpha : float
        Largest lower-tail probability that alarms.
    max_ratio : float
        An alarm also needs ``observed < max_ratio · expected``.
    stop_ratio : float
        Critical when ``observed <= stop_ratio · expected``.
    min_history : int
        Fewer usable baseline periods than this: no judgement.

    Returns
    -------
    RateDropTest

    Notes
    -----
    With rates ``r_t = count_t / exposure_t``, ``μ = median(r)`` and ``s = 1.4826 MAD(r)``,
    the latest count ``X`` is modelled as negative binomial with mean ``m = μ · e`` and
    variance ``m + φ m²``, where ``φ = max(0, (s² - μ/ē) / μ²) + (π/2) s² / (n μ²)``: the
    day-to-day variation beyond Poisson at the typical exposure ``ē``, plus the relative
    variance of the median over ``n`` periods (Hilbe 2011, §5; Kenney & Keeping 1962).

    Examples
    --------
    >>> test = rate_drop_test([[100, 96, 104, 99, 101, 98, 103]], [8])
    >>> bool(test.alarm[0]), bool(test.critical[0]), float(test.expected[0])
    (True, True, 100.0)
    """
    counts = np.asarray(history, dtype=float)
    exposure = np.broadcast_to(np.asarray(history_exposure, dtype=float), counts.shape)
    x = np.asarray(current, dtype=float)
    e_now = np.broadcast_to(np.asarray(current_exposure, dtype=float), x.shape)
    usable = (exposure > 0) & np.isfinite(counts) & np.isfinite(exposure)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(usable, counts / np.where(usable, exposure, 1.0), np.nan)
    mu, sd, n = robust_baseline(rates)
    typical_exposure, _ = finite_median(np.where(usable, exposure, np.nan))
    judged = (n >= min_history) & (mu > 0) & (e_now > 0) & np.isfinite(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        safe_mu = np.where(judged, mu, 1.0)
        extra = np.maximum(0.0, (sd**2 - safe_mu / typical_exposure) / safe_mu**2)
        of_median = (math.pi / 2) * sd**2 / (np.maximum(n, 1) * safe_mu**2)
        phi = np.where(judged, extra + of_median, 0.0)
    expected = np.where(judged, safe_mu * e_now, np.nan)
    m = np.where(judged, expected, 1.0)
    k = np.where(judged, np.floor(x), 0.0)
    negative_binomial = phi > 1e-12
    size = 1.0 / np.where(negative_binomial, phi, 1.0)
    p = np.where(
        negative_binomial,
        stats.nbinom.cdf(k, size, size / (size + m)),
        stats.poisson.cdf(k, m),
    )
    p = np.where(judged, p, np.nan)
    alarm = judged & (p < alpha) & (x < max_ratio * m)
    critical = alarm & (x <= stop_ratio * m)
    return RateDropTest(observed=x, expected=expected, p_value=p, alarm=alarm,
                        critical=critical, periods=n.astype(np.int64))  # fmt: skip


def _split_series(series: ArrayLike, window: int) -> tuple[FloatArray, float]:
    values = np.asarray(series, dtype=float).ravel()
    if values.size == 0:
        return values, math.nan
    return values[max(0, values.size - 1 - window) : values.size - 1], float(values[-1])


def _rate_drops(
    series: Mapping[str, ArrayLike],
    exposure: Mapping[str, ArrayLike] | ArrayLike | None,
    *,
    kind: str,
    noun: str,
    period: str,
    window: int,
    alpha: float,
    max_ratio: float,
    stop_ratio: float,
    min_history: int,
) -> list[HealthSignal]:
    signals = []
    for name, counts in series.items():
        own = exposure.get(name) if isinstance(exposure, Mapping) else exposure
        history, current = _split_series(counts, window)
        if own is None:
            past, now = np.ones_like(history), 1.0
        else:
            past, now = _split_series(
                np.broadcast_to(np.asarray(own, float), np.shape(counts)), window
            )
        test = rate_drop_test(
            history, current, history_exposure=past, current_exposure=now, alpha=alpha,
            max_ratio=max_ratio, stop_ratio=stop_ratio, min_history=min_history,
        )  # fmt: skip
        if not test.alarm:
            continue
        expected, p = float(test.expected), float(test.p_value)
        critical = bool(test.critical)
        what = "stopped" if critical else "fell far below their recent rate"
        label = f"{noun}" if name == ALL else f"{noun} of {name}"
        signals.append(HealthSignal(
            kind=kind, severity=Severity.CRITICAL if critical else Severity.WARNING,
            subject=name,
            numbers={"observed": int(current), "expected": round(expected, 2),
                     "ratio": round(current / expected, 4), "p_value": json_float(p),
                     "baseline_periods": int(test.periods), "exposure": float(now)},
            message=(f"{label} {what}: {int(current):,} in the latest {period} against "
                     f"{expected:,.1f} expected from the last {int(test.periods)} "
                     f"{period}s (p = {p:.2g})"),
        ))  # fmt: skip
    return signals


def exposure_drop(
    exposures: Mapping[str, ArrayLike],
    *,
    exposure: Mapping[str, ArrayLike] | ArrayLike | None = None,
    period: str = "day",
    window: int = WINDOW,
    alpha: float = RATE_ALPHA,
    max_ratio: float = RATE_MAX_RATIO,
    stop_ratio: float = RATE_STOP_RATIO,
    min_history: int = MIN_HISTORY,
) -> list[HealthSignal]:
    """``exposure_drop`` signals: exposures per period stop or fall far below their rate.

    Parameters
    ----------
    exposures : Mapping[str, array_like]
        Per subject (``"all"`` or a variant key), exposures per period, oldest first; the
        last element is the period judged, the ``window`` before it the baseline.
    exposure : array_like or Mapping, optional
        Each period's exposure (see `rate_drop_test`), one series for all subjects or one
        per subject; default 1 everywhere.
    period : str
        The period's name in messages.
    window, alpha, max_ratio, stop_ratio, min_history
        See `rate_drop_test`.

    Returns
    -------
    list[HealthSignal]
        Critical when stopped (below ``stop_ratio`` of the expected count).
    """
    return _rate_drops(
        exposures, exposure, kind=EXPOSURE_DROP, noun="exposures", period=period,
        window=window, alpha=alpha, max_ratio=max_ratio, stop_ratio=stop_ratio,
        min_history=min_history,
    )  # fmt: skip


def event_drop(
    events: Mapping[str, ArrayLike],
    *,
    exposure: Mapping[str, ArrayLike] | ArrayLike | None = None,
    period: str = "day",
    window: int = WINDOW,
    alpha: float = RATE_ALPHA,
    max_ratio: float = RATE_MAX_RATIO,
    stop_ratio: float = RATE_STOP_RATIO,
    min_history: int = MIN_HISTORY,
) -> list[HealthSignal]:
    """``event_drop`` signals: a metric's events per period stop or fall far below their
    rate (what is watched after a ship, when no exposures are logged).  The subjects are
    metric names; otherwise as `exposure_drop`."""
    return _rate_drops(
        events, exposure, kind=EVENT_DROP, noun="events", period=period, window=window,
        alpha=alpha, max_ratio=max_ratio, stop_ratio=stop_ratio, min_history=min_history,
    )  # fmt: skip


__all__ = ["RateDropTest", "event_drop", "exposure_drop", "rate_drop_test"]
