"""Health checks of a live or shipped experiment, both ways: pure functions over per-period
series (no I/O).

Each check looks at the latest period (a day, or the part of today seen so far) against the
experiment's own recent periods, and returns zero or more `HealthSignal`.  The vectorised
cores (`rate_drop_test`, `trend_test`, `missing_events_test`) take any leading shape, so the
same code judges one experiment in the monitor and 60,000 experiment-days in the
false-alarm simulation (``tests/health_simulation.py``).

The checks and their statistics
-------------------------------
``exposure_drop`` / ``event_drop`` (`rate_drop_test`)
    Exposures (or a metric's events) stop or fall far below their recent rate: a broken
    client.  The baseline rate is the *median* of the last ``window`` periods' rates (each
    period's count over its exposure: the share of traffic and of the period it covered),
    robust to the very outages it looks for.  The latest count is compared with a negative
    binomial whose mean is the baseline rate times the latest exposure and whose extra-
    Poisson variance comes from the baseline's MAD (day-to-day noise) plus the variance of
    the median itself; the lower-tail probability is the p-value.  An alarm needs both
    ``p < alpha`` and a count below ``max_ratio`` of the expected (significant *and*
    large: a weekend dip is neither).  Critical when below ``stop_ratio`` (stopped).
``metric_drop`` / ``metric_jump`` (`trend_test`)
    A metric collapses or jumps against its own recent days, Twyman's law both ways: a
    robust z-score ``(x - median) / s`` with ``s`` the larger of the baseline's
    ``1.4826 MAD`` (inflated for the median's own error) and the latest value's sampling
    SE, and an alarm when ``|z| >= z_threshold`` *and* the relative change is at least
    ``min_change``.  Critical when the metric falls below ``collapse_ratio`` of its level
    (broken logging) or more than doubles.  Slow drifts move the median with them and are
    not flagged: they are not broken.
``sample_ratio_mismatch`` (`sample_ratio_mismatch`)
    `analysis.statistics.srm.srm_test` on the cumulative units, against the weights in
    force in each period (a ramp changes them), so it matches the verdict's SRM check.
``missing_events`` (`missing_events_test`)
    A variant with no events of a metric while the other variants have many: the
    probability that all ``n`` events of the period miss the variant if its event rate
    were only ``tolerated_ratio`` of the others' (a treatment may lower a rate; it does
    not silence it) is ``(1 - s)^n``; an alarm when that is below ``alpha``.
``guardrail_regression`` (`guardrail_regression`)
    The always-valid harm test of each guardrail against its margin
    (`analysis.statistics.sequential_margin`), read at every check: by Ville's inequality
    the chance that *any* check of a harmless variant alarms is at most ``alpha``.

References
----------
Montgomery, D. C. (2019), *Introduction to Statistical Quality Control*, 8th ed., Wiley,
§6-§9 (control charts on a process's own history, and why limits come from in-control
data).  Hampel, F. R. (1974), "The influence curve and its role in robust estimation",
JASA 69 (the MAD and its 1.4826 consistency factor); Iglewicz, B. & Hoaglin, D. C.
(1993), *How to Detect and Handle Outliers*, ASQC (the median/MAD "modified z-score").
Rousseeuw, P. J. & Croux, C. (1993), JASA 88 (the MAD's efficiency); Kenney & Keeping
(1962), *Mathematics of Statistics* §13.13 (variance of the median, ``π σ² / 2n``).
Hilbe, J. M. (2011), *Negative Binomial Regression*, 2nd ed., Cambridge, §5 (counts with
an exposure offset and extra-Poisson variance).  Kohavi, Tang & Xu (2020), *Trustworthy
Online Controlled Experiments*, Cambridge, ch. 3 (Twyman's law) and ch. 21 (SRM).
Fabijan et al. (2019), KDD (SRM in practice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from abtest.alerts import Severity
from analysis.statistics.results import json_float
from analysis.statistics.sequential_margin import SequentialMargin
from analysis.statistics.srm import SRM_THRESHOLD, srm_test

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

EXPOSURE_DROP: Final = "exposure_drop"
EVENT_DROP: Final = "event_drop"
SAMPLE_RATIO_MISMATCH: Final = "sample_ratio_mismatch"
MISSING_EVENTS: Final = "missing_events"
METRIC_DROP: Final = "metric_drop"
METRIC_JUMP: Final = "metric_jump"
GUARDRAIL_REGRESSION: Final = "guardrail_regression"
KINDS: Final = (EXPOSURE_DROP, EVENT_DROP, SAMPLE_RATIO_MISMATCH, MISSING_EVENTS,
                METRIC_DROP, METRIC_JUMP, GUARDRAIL_REGRESSION)  # fmt: skip
ALL: Final = "all"  # the subject of an experiment-wide signal

# Defaults, chosen with the false-alarm simulation (see the README's figures).
WINDOW: Final = 14  # periods of baseline: two weeks of days cover the weekly cycle twice
MIN_HISTORY: Final = 7  # no judgement before a week of baseline
RATE_ALPHA: Final = 1e-4
RATE_MAX_RATIO: Final = 0.3  # below 30%: a B2B weekend at 40% of weekdays is not an alarm
RATE_STOP_RATIO: Final = 0.1
TREND_Z: Final = 5.0
TREND_MIN_CHANGE: Final = 0.10  # Twyman: +10% overnight is suspect
TREND_COLLAPSE_RATIO: Final = 0.1
TREND_CRITICAL_JUMP: Final = 1.0  # more than doubled
MISSING_ALPHA: Final = 1e-6
MISSING_TOLERATED_RATIO: Final = 0.5
GUARDRAIL_ALPHA: Final = 0.025  # one-sided, the verdict's alpha / 2 per direction

_MAD_TO_SD: Final = 1.482602218505602  # 1 / Φ⁻¹(3/4): the MAD of a normal is 0.6745 σ


@dataclass(frozen=True)
class HealthSignal:
    """One unhealthy condition found by a check.

    ``subject`` names what it concerns: ``"all"``, a variant key, a metric name, or
    ``"metric[variant]"``; ``numbers`` holds the check's figures (JSON-ready).
    """

    kind: str
    severity: Severity
    subject: str
    numbers: Mapping[str, Any]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"kind": self.kind, "severity": self.severity.value, "subject": self.subject,
                "numbers": dict(self.numbers), "message": self.message}  # fmt: skip


def subject(metric: str | None = None, variant: str | None = None) -> str:
    """The subject string of a signal: ``metric[variant]``, ``metric``, ``variant`` or
    ``all`` (brackets occur in neither metric names nor variant keys)."""
    if metric is not None and variant is not None:
        return f"{metric}[{variant}]"
    return metric or variant or ALL


# -- robust baselines ---------------------------------------------------------------------


def _median_last_axis(values: FloatArray) -> tuple[FloatArray, NDArray[np.int64]]:
    """Median of the finite values along the last axis and their count (NaN when none)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    ordered = np.sort(np.where(finite, values, np.inf), axis=-1)  # non-finite go last
    lower = np.maximum((count - 1) // 2, 0)[..., None]
    upper = np.maximum(count // 2, 0)[..., None]
    lo = np.take_along_axis(ordered, np.minimum(lower, values.shape[-1] - 1), axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, np.minimum(upper, values.shape[-1] - 1), axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):
        median = np.where(count > 0, (lo + hi) / 2, np.nan)
    return median, count


def robust_baseline(history: ArrayLike) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
    """Median, MAD-based standard deviation and count of the finite values of each row.

    Parameters
    ----------
    history : array_like
        Periods along the last axis; NaN (or inf) marks a period to leave out.

    Returns
    -------
    (median, sd, count)
        ``sd = 1.4826 · median(|x - median|)``, a consistent estimate of the SD of normal data
        that a few outliers (the outages being looked for) barely move (Hampel 1974).

    Examples
    --------
    >>> median, sd, n = robust_baseline([[10.0, 12.0, 11.0, 400.0, float("nan")]])
    >>> float(median[0]), round(float(sd[0]), 3), int(n[0])
    (11.5, 1.483, 4)
    """
    values = np.asarray(history, dtype=float)
    if values.ndim == 0:
        values = values[None]
    if values.shape[-1] == 0:
        shape = values.shape[:-1]
        return np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, np.int64)
    median, count = _median_last_axis(values)
    deviation = np.abs(values - median[..., None])
    mad, _ = _median_last_axis(np.where(np.isfinite(values), deviation, np.nan))
    return median, _MAD_TO_SD * mad, count


# -- exposures or events stop ---------------------------------------------------------------


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
    typical_exposure, _ = _median_last_axis(np.where(usable, exposure, np.nan))
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


def _split(series: ArrayLike, window: int) -> tuple[FloatArray, float]:
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
        history, current = _split(counts, window)
        if own is None:
            past, now = np.ones_like(history), 1.0
        else:
            past, now = _split(np.broadcast_to(np.asarray(own, float), np.shape(counts)), window)
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


# -- a metric jumps or collapses ------------------------------------------------------------


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
        history, current = _split(series, window)
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
            message=(f"{name} {way} {_percent(rel)} in the latest {period}: {current:.4g} "
                     f"against a median of {center:.4g} over the last {int(test.periods)} "
                     f"{period}s (robust z = {z:.1f})"),
        ))  # fmt: skip
    return signals


def _percent(rel: float) -> str:
    return "from 0" if math.isinf(rel) else f"{rel:+.0%}"


# -- sample-ratio mismatch ------------------------------------------------------------------


def sample_ratio_mismatch(
    units: Mapping[str, ArrayLike],
    weights: Mapping[str, ArrayLike | float],
    *,
    threshold: float = SRM_THRESHOLD,
) -> list[HealthSignal]:
    """A ``sample_ratio_mismatch`` signal when the cumulative units per variant do not
    match the weights that were in force.

    Parameters
    ----------
    units : Mapping[str, array_like]
        Per variant, new units (first exposures) per period.
    weights : Mapping[str, array_like or float]
        Per variant, its weight in each period (or one weight for all periods).
    threshold : float
        `srm_test`'s threshold (0.001 by default, as the verdict's check).

    Returns
    -------
    list[HealthSignal]
        At most one, critical: the data of a mismatched experiment cannot be trusted.

    Notes
    -----
    The expected share of variant ``v`` is ``Σ_t n_t w_tv / Σ_u w_tu``, the units of each
    period split by that period's weights, so a ramp that changes the weights does not
    look like a mismatch.  Pearson's chi-square test itself is `srm_test`'s.
    """
    keys = list(weights)
    counts = np.array([np.asarray(units.get(k, 0.0), float).ravel() for k in keys])
    if counts.size == 0 or counts.sum() <= 0:
        return []
    w = np.array([np.broadcast_to(np.asarray(weights[k], float), counts.shape[1:])
                  for k in keys])  # fmt: skip
    per_period = counts.sum(axis=0)
    totals = w.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(totals > 0, w / np.where(totals > 0, totals, 1.0), 0.0)
    expected = (shares * per_period).sum(axis=1)
    observed = {k: round(c) for k, c in zip(keys, counts.sum(axis=1), strict=True)}
    result = srm_test(observed=observed,
                      weights={k: float(e) for k, e in zip(keys, expected, strict=True)},
                      threshold=threshold)  # fmt: skip
    if result.ok:
        return []
    shown = ", ".join(f"{k} {observed[k]:,} (expected {result.expected[k]:,.0f})" for k in keys)
    return [HealthSignal(
        kind=SAMPLE_RATIO_MISMATCH, severity=Severity.CRITICAL, subject=ALL,
        numbers={"p_value": json_float(result.p_value), "threshold": threshold,
                 "observed": dict(result.observed),
                 "expected": {k: round(v, 2) for k, v in result.expected.items()}},
        message=f"sample-ratio mismatch (p = {result.p_value:.2g}): {shown}",
    )]  # fmt: skip


# -- a variant without events ---------------------------------------------------------------


def missing_events_test(
    events: ArrayLike,
    units: ArrayLike,
    *,
    alpha: float = MISSING_ALPHA,
    tolerated_ratio: float = MISSING_TOLERATED_RATIO,
) -> tuple[FloatArray, BoolArray]:
    """Per variant (last axis): the probability of its zero events, and whether it alarms.

    Parameters
    ----------
    events, units : array_like
        A metric's events and the units per variant in one period (variants on the last
        axis).
    alpha : float
        Alarm below this probability.
    tolerated_ratio : float
        The variant's event rate per unit is assumed to be at least this share of the
        other variants' (a treatment may lower a rate; it does not silence it).

    Returns
    -------
    (p_value, alarm)
        ``p = (1 - s)^n`` for a variant with no events, where ``n`` is the period's events
        over all variants and ``s = r u_v / (r u_v + (U - u_v))`` the variant's share of
        them at the tolerated rate ratio ``r`` (a binomial's zero class); 1 otherwise.

    Examples
    --------
    >>> p, alarm = missing_events_test([[60, 0]], [[500, 500]])
    >>> bool(alarm[0, 1]), bool(alarm[0, 0])
    (True, False)
    """
    e = np.asarray(events, dtype=float)
    u = np.asarray(units, dtype=float)
    total_events = e.sum(axis=-1, keepdims=True)
    total_units = u.sum(axis=-1, keepdims=True)
    share = tolerated_ratio * u / (tolerated_ratio * u + (total_units - u))
    share = np.where(u > 0, share, 0.0)
    with np.errstate(divide="ignore"):
        log_p = total_events * np.log1p(-np.minimum(share, 1.0))
    p = np.where((e == 0) & (u > 0), np.exp(log_p), 1.0)
    return p, (e == 0) & (u > 0) & (p < alpha)


def missing_events(
    events: Mapping[str, float],
    units: Mapping[str, float],
    *,
    metric: str,
    period: str = "day",
    alpha: float = MISSING_ALPHA,
    tolerated_ratio: float = MISSING_TOLERATED_RATIO,
) -> list[HealthSignal]:
    """``missing_events`` signals (critical): a variant that logged no event of ``metric``
    in the latest period while the others logged many (see `missing_events_test`).

    Parameters
    ----------
    events : Mapping[str, float]
        Events of the metric per variant in the period.
    units : Mapping[str, float]
        Units per variant that could have produced them (exposed units, or the weights).
    metric : str
        The metric's name, for the subject.
    period, alpha, tolerated_ratio
        See `missing_events_test`.
    """
    keys = list(units)
    if not keys:
        return []
    counts = [float(events.get(k, 0.0)) for k in keys]
    p, alarm = missing_events_test(counts, [float(units[k]) for k in keys], alpha=alpha,
                                   tolerated_ratio=tolerated_ratio)  # fmt: skip
    total = int(sum(counts))
    return [
        HealthSignal(
            kind=MISSING_EVENTS,
            severity=Severity.CRITICAL,
            subject=subject(metric, k),
            numbers={
                "events": 0,
                "events_all_variants": total,
                "units": float(units[k]),
                "p_value": json_float(float(p[i])),
            },
            message=(
                f"{metric}: no events from {k} in the latest {period} while all "
                f"variants logged {total:,} (p = {float(p[i]):.2g})"
            ),
        )
        for i, k in enumerate(keys)
        if alarm[i]
    ]


# -- a guardrail harmed beyond its margin ---------------------------------------------------


def guardrail_regression(
    tests: Sequence[tuple[str, str, SequentialMargin]],
    *,
    alpha: float = GUARDRAIL_ALPHA,
) -> list[HealthSignal]:
    """``guardrail_regression`` signals (critical): a variant harms a guardrail beyond its
    margin by the always-valid test (`analysis.statistics.sequential_margin`).

    Parameters
    ----------
    tests : sequence of (metric, variant, SequentialMargin)
        The latest look's always-valid margin tests.
    alpha : float
        Alarm when ``p_harm < alpha`` (one-sided).  Valid at every check: under "the harm
        is at most the margin" the chance that any check alarms is at most ``alpha``
        (Howard, Ramdas, McAuliffe & Sekhon 2021, §3.5).
    """
    signals = []
    for metric, variant, test in tests:
        if not test.p_harm < alpha:
            continue
        scale = "relative " if test.relative else ""
        signals.append(HealthSignal(
            kind=GUARDRAIL_REGRESSION, severity=Severity.CRITICAL,
            subject=subject(metric, variant),
            numbers={"estimate": json_float(test.estimate), "se": json_float(test.se),
                     "margin": test.margin, "relative": test.relative,
                     "p_harm": json_float(test.p_harm), "alpha": alpha},
            message=(f"guardrail {metric} is harmed in {variant} beyond its {scale}margin "
                     f"{test.margin:g}: estimate {test.estimate:+.4g} (always-valid "
                     f"p = {test.p_harm:.2g})"),
        ))  # fmt: skip
    return signals


__all__ = [
    "ALL",
    "EVENT_DROP",
    "EXPOSURE_DROP",
    "GUARDRAIL_REGRESSION",
    "KINDS",
    "METRIC_DROP",
    "METRIC_JUMP",
    "MISSING_EVENTS",
    "SAMPLE_RATIO_MISMATCH",
    "HealthSignal",
    "RateDropTest",
    "TrendTest",
    "event_drop",
    "exposure_drop",
    "guardrail_regression",
    "metric_trend",
    "missing_events",
    "missing_events_test",
    "rate_drop_test",
    "rate_se",
    "robust_baseline",
    "sample_ratio_mismatch",
    "subject",
    "trend_test",
]
