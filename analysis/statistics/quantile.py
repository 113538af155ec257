"""Quantile metrics (e.g. ``latency_ms:p95``) with unit-clustered standard errors.

Events of one unit are correlated (one slow device gives many slow requests), so the
unit, not the event, is the independent draw: treating events as independent would
understate the standard error.  Two methods respect that: a bootstrap that resamples
units with all their events, and the asymptotic method of Liu et al. (2019), which
treats ``F(x) = Σ_u #{events of u <= x} / Σ_u #{events of u}`` as a ratio metric and
inverts its delta-method interval (Woodruff 1952), in O(events) without resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput
from analysis.statistics.aggregates import PairedStats
from analysis.statistics.inference import check_common, effect_from_means, ratio_mean_and_var
from analysis.statistics.results import Effect, Interval, critical_value, json_interval

# Replicates are computed in blocks of about this many (replicate, event) cells, so
# memory stays ~20 MB whatever the number of events.
_BLOCK_CELLS = 2_000_000

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class QuantileResult:
    """A quantile's effect: ``effect.kind == "quantile"``, SEs from the bootstrap.

    ``effect`` holds the quantile of each arm as ``control_mean``/``variant_mean`` (the
    field names shared by every metric type) and normal-approximation intervals with
    bootstrap standard errors; ``percentile_ci`` is the plain percentile interval of the
    absolute effect for comparison (bootstrap only).
    """

    effect: Effect
    q: float
    method: str
    n_boot: int
    seed: int
    events_control: int
    events_variant: int
    percentile_ci: Interval | None

    def confidence_interval(self, level: float | None = None) -> Interval:
        """CI of the absolute difference of quantiles."""
        return self.effect.confidence_interval(level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the effect's fields plus the bootstrap settings."""
        return {
            **self.effect.to_dict(),
            "q": self.q,
            "method": self.method,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "events_control": self.events_control,
            "events_variant": self.events_variant,
            "percentile_ci": json_interval(self.percentile_ci),
        }


def weighted_quantile(
    sorted_values: NDArray[np.float64], weights: NDArray[np.int64], q: float
) -> NDArray[np.float64]:
    """Row-wise inverted-CDF quantile: the smallest value whose cumulative weight >= q·total.

    ``weights`` has shape (replicates, events) aligned with ``sorted_values``; with unit
    weights it equals ``numpy.quantile(values, q, method="inverted_cdf")``.
    """
    cum = np.cumsum(weights, axis=1)
    target = q * cum[:, -1:]
    # A small relative tolerance absorbs rounding in q·total (0.95 * 100 = 95.000...01).
    idx = np.argmax(cum >= target * (1 - 1e-12), axis=1)
    result: NDArray[np.float64] = sorted_values[idx]
    return result


@dataclass(frozen=True)
class _Arm:
    values: NDArray[np.float64]  # sorted
    unit_index: NDArray[np.intp]  # dense unit number of each sorted value
    n_units: int

    def quantile(self, p: float) -> float:
        """Inverted-CDF quantile of all events at probability p (clipped into (0, 1])."""
        n = self.values.size
        rank = math.ceil(min(max(p, 0.0), 1.0) * n * (1 - 1e-12))
        return float(self.values[min(max(rank, 1), n) - 1])


def _arm(values: ArrayLike, units: ArrayLike, field: str) -> _Arm:
    v = np.asarray(values, dtype=float)
    u = np.asarray(units)
    if v.ndim != 1 or v.shape != u.shape:
        raise InvalidInput("values and unit ids must be 1-d arrays of one length", field=field)
    if not np.isfinite(v).all():
        raise InvalidInput("values must be finite", field=field)
    order = np.argsort(v, kind="stable")
    _, inverse = np.unique(u[order], return_inverse=True)
    n_units = int(inverse.max()) + 1 if inverse.size else 0
    if n_units < 2:
        raise InvalidInput(f"needs events from at least 2 units, got {n_units}", field=field)
    return _Arm(v[order], inverse.ravel(), n_units)


def _bootstrap(arm: _Arm, *, q: float, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """Quantiles of ``n_boot`` resamples of the arm's units (all events of a unit travel)."""
    out = np.empty(n_boot)
    block = max(1, _BLOCK_CELLS // arm.values.size)
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        # Multinomial counts = how often each unit is drawn in a resample of n units.
        counts = rng.multinomial(arm.n_units, np.full(arm.n_units, 1 / arm.n_units), size=size)
        out[start : start + size] = weighted_quantile(arm.values, counts[:, arm.unit_index], q)
    return out


def _asymptotic_se(arm: _Arm, *, q: float, point: float) -> float:
    """Clustered SE of the sample quantile by inverting the CI of F at the estimate.

    ``F̂(x̂) = ΣS_u / ΣN_u`` is a ratio metric over units (S_u events of unit u at or
    below x̂, N_u all events of u), so its SE s_F follows from the delta method; the 95 %
    interval ``[Q̂(q - z s_F), Q̂(q + z s_F)]`` (Woodruff 1952) divided by 2z is the SE.
    """
    below = np.bincount(arm.unit_index, weights=arm.values <= point, minlength=arm.n_units)
    events = np.bincount(arm.unit_index, minlength=arm.n_units).astype(float)
    _, var_f = ratio_mean_and_var(PairedStats.from_values(below, events))
    z = critical_value(0.95, "two-sided", None)
    half = z * math.sqrt(var_f)
    return (arm.quantile(q + half) - arm.quantile(q - half)) / (2 * z)


def quantile_difference(
    *,
    control_values: ArrayLike,
    control_units: ArrayLike,
    variant_values: ArrayLike,
    variant_units: ArrayLike,
    q: float,
    method: Literal["bootstrap", "asymptotic"] = "bootstrap",
    n_boot: int = 1000,
    seed: int = 0,
    alternative: str = "two-sided",
    level: float = 0.95,
) -> QuantileResult:
    """Difference of an event-level quantile between arms with unit-clustered SEs.

    Parameters
    ----------
    control_values, variant_values : array_like
        One value per event (e.g. latency of each request).
    control_units, variant_units : array_like
        The unit id of each event (any dtype numpy can sort).
    q : float
        Quantile in (0, 1), e.g. 0.95 for p95.
    method : {"bootstrap", "asymptotic"}
        ``"bootstrap"``: resample units (cost ~ n_boot x events; fine up to ~10^5
        events).  ``"asymptotic"``: Liu et al.'s delta method + Woodruff inversion
        (cost ~ events; for millions of events).
    n_boot : int
        Bootstrap replicates per arm (>= 100).
    seed : int
        Seed of ``numpy.random.default_rng``: the same inputs and seed give the same
        result.
    alternative, level
        As in `analysis.inference.mean_difference`.

    Returns
    -------
    QuantileResult
        Point estimates are the inverted-CDF sample quantiles of all events of an arm;
        the absolute and relative effects get normal intervals (quantiles are
        asymptotically normal) with the method's SEs, relative as ``Δ / |q_control|``.

    References
    ----------
    Efron & Tibshirani (1993), An Introduction to the Bootstrap, §6 and §9.  Field &
    Welsh (2007), "Bootstrapping clustered data", JRSS B 69 (resample the clusters).
    Liu, Sun, Varshney & Xu (2019), "Large-Scale Online Experimentation with Quantile
    Metrics", arXiv:1903.08762.  Woodruff (1952), "Confidence intervals for medians and
    other position measures", JASA 47.
    """
    check_common(alternative=alternative, level=level)
    if not 0 < q < 1:
        raise InvalidInput(f"q must lie in (0, 1), got {q}", field="q")
    if method not in ("bootstrap", "asymptotic"):
        raise InvalidInput("method must be 'bootstrap' or 'asymptotic'", field="method")
    if n_boot < 100:
        raise InvalidInput(f"n_boot must be >= 100, got {n_boot}", field="n_boot")
    control = _arm(control_values, control_units, "control")
    variant = _arm(variant_values, variant_units, "variant")
    q_c, q_v = control.quantile(q), variant.quantile(q)
    if method == "asymptotic":
        effect = effect_from_means(
            kind="quantile",
            n_control=control.n_units,
            n_variant=variant.n_units,
            control_mean=q_c,
            control_var=_asymptotic_se(control, q=q, point=q_c) ** 2,
            variant_mean=q_v,
            variant_var=_asymptotic_se(variant, q=q, point=q_v) ** 2,
            alternative=alternative,
            level=level,
        )
        percentile_ci = None
    else:
        rng = np.random.default_rng(seed)
        reps_c = _bootstrap(control, q=q, n_boot=n_boot, rng=rng)
        reps_v = _bootstrap(variant, q=q, n_boot=n_boot, rng=rng)
        effect = effect_from_means(
            kind="quantile",
            n_control=control.n_units,
            n_variant=variant.n_units,
            control_mean=q_c,
            control_var=float(np.var(reps_c, ddof=1)),
            variant_mean=q_v,
            variant_var=float(np.var(reps_v, ddof=1)),
            alternative=alternative,
            level=level,
        )
        if effect.relative_effect is not None:
            # A quantile ratio's delta method needs densities; the replicates have it.
            with np.errstate(divide="ignore", invalid="ignore"):
                rel_reps = (reps_v - reps_c) / np.abs(reps_c)
            finite = bool(np.isfinite(rel_reps).all())
            effect = replace(
                effect, relative_se=float(np.std(rel_reps, ddof=1)) if finite else math.nan
            )
        tail = (1 - level) / 2
        lo, hi = np.quantile(reps_v - reps_c, [tail, 1 - tail])
        percentile_ci = (float(lo), float(hi))
    return QuantileResult(
        effect=effect,
        q=q,
        method=method,
        n_boot=n_boot if method == "bootstrap" else 0,
        seed=seed,
        events_control=control.values.size,
        events_variant=variant.values.size,
        percentile_ci=percentile_ci,
    )


__all__ = ["QuantileResult", "quantile_difference", "weighted_quantile"]
