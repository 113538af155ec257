"""Health checks of a live or shipped experiment, both ways: pure functions over per-period
series (no I/O).

Each check looks at the latest period against the experiment's own recent periods (the
monitor's periods are 24-hour windows, `service.monitor.health_series`), and returns zero
or more `HealthSignal`.  The vectorised cores (`rate_drop_test`, `trend_test`,
`missing_events_test`) take any leading shape, so the
same code judges one experiment in the monitor and 60,000 experiment-days in the
false-alarm simulation (``tests/health_simulation.py``).  The rate checks live in
`analysis.statistics.health_rates`, the trend checks in `analysis.statistics.health_trends`
and the signal, the kinds and the defaults in `analysis.statistics.health_signal`; this
module holds the other checks and gathers every name (import them from here).

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
``metric_drop`` / ``metric_jump`` (`trend_test`, `cusum_test`)
    A metric collapses or jumps against its own recent days, Twyman's law both ways: a
    robust z-score ``(x - median) / s`` with ``s`` the larger of the baseline's
    ``1.4826 MAD`` (inflated for the median's own error) and the latest value's sampling
    SE, and an alarm when ``|z| >= z_threshold`` *and* the relative change is at least
    ``min_change``; or, for a shift no single day shows, when Page's CUSUM of the daily
    z-scores over the last window crosses ``h`` with a mean change of at least
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
Page, E. S. (1954), "Continuous inspection schemes", Biometrika 41 (the CUSUM).
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

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.alerts import Severity
from analysis.statistics.health_rates import (
    RateDropTest,
    event_drop,
    exposure_drop,
    rate_drop_test,
)
from analysis.statistics.health_signal import (
    ALL,
    CUSUM_CLIP,
    CUSUM_H,
    CUSUM_K,
    EVENT_DROP,
    EXPOSURE_DROP,
    GUARDRAIL_ALPHA,
    GUARDRAIL_REGRESSION,
    KINDS,
    METRIC_DROP,
    METRIC_JUMP,
    MIN_HISTORY,
    MISSING_ALPHA,
    MISSING_EVENTS,
    MISSING_TOLERATED_RATIO,
    RATE_ALPHA,
    RATE_MAX_RATIO,
    RATE_STOP_RATIO,
    SAMPLE_RATIO_MISMATCH,
    TREND_COLLAPSE_RATIO,
    TREND_CRITICAL_JUMP,
    TREND_MIN_CHANGE,
    TREND_Z,
    WINDOW,
    HealthSignal,
    subject,
)
from analysis.statistics.health_trends import (
    CusumTest,
    TrendTest,
    cusum_test,
    metric_trend,
    rate_se,
    trend_series,
    trend_test,
)
from analysis.statistics.results import json_float
from analysis.statistics.robust import robust_baseline
from analysis.statistics.sequential_margin import SequentialMargin
from analysis.statistics.srm import SRM_THRESHOLD, srm_test

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


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
    "CUSUM_CLIP",
    "CUSUM_H",
    "CUSUM_K",
    "EVENT_DROP",
    "EXPOSURE_DROP",
    "GUARDRAIL_ALPHA",
    "GUARDRAIL_REGRESSION",
    "KINDS",
    "METRIC_DROP",
    "METRIC_JUMP",
    "MIN_HISTORY",
    "MISSING_ALPHA",
    "MISSING_EVENTS",
    "MISSING_TOLERATED_RATIO",
    "RATE_ALPHA",
    "RATE_MAX_RATIO",
    "RATE_STOP_RATIO",
    "SAMPLE_RATIO_MISMATCH",
    "TREND_COLLAPSE_RATIO",
    "TREND_CRITICAL_JUMP",
    "TREND_MIN_CHANGE",
    "TREND_Z",
    "WINDOW",
    "CusumTest",
    "HealthSignal",
    "RateDropTest",
    "TrendTest",
    "cusum_test",
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
    "trend_series",
    "trend_test",
]
