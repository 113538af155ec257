"""Quantile metrics (e.g. ``latency_ms:p95``) with a unit-clustered bootstrap.

Events of one unit are correlated (one slow device gives many slow requests), so the
unit, not the event, is the independent draw: resampling events would understate the
standard error.  The bootstrap resamples units with replacement and carries all of a
unit's events along.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput
from analysis.inference import check_common, effect_from_means
from analysis.results import Effect, Interval

# Replicates are computed in blocks of about this many (replicate, event) cells, so
# memory stays ~20 MB whatever the number of events.
_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True)
class QuantileResult:
    """A quantile's effect: ``effect.kind == "quantile"``, SEs from the bootstrap.

    ``effect`` holds the quantile of each arm as ``control_mean``/``variant_mean`` (the
    field names shared by every metric type) and normal-approximation intervals with
    bootstrap standard errors; ``percentile_ci`` is the plain percentile interval of the
    absolute effect for comparison.
    """

    effect: Effect
    q: float
    n_boot: int
    seed: int
    events_control: int
    events_variant: int
    percentile_ci: Interval

    def confidence_interval(self, level: float | None = None) -> Interval:
        """CI of the absolute difference of quantiles."""
        return self.effect.confidence_interval(level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the effect's fields plus the bootstrap settings."""
        return {
            **self.effect.to_dict(),
            "q": self.q,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "events_control": self.events_control,
            "events_variant": self.events_variant,
            "percentile_ci": [self.percentile_ci[0], self.percentile_ci[1]],
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


def _prepare(values: ArrayLike, units: ArrayLike, field: str) -> tuple[NDArray[Any], ...]:
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
    return v[order], inverse.ravel(), np.array(n_units)


def _replicates(
    *,
    sorted_values: NDArray[np.float64],
    unit_index: NDArray[np.int64],
    n_units: int,
    q: float,
    n_boot: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    out = np.empty(n_boot)
    block = max(1, _BLOCK_CELLS // max(sorted_values.size, 1))
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        # Multinomial counts = how often each unit is drawn in a resample of n units.
        counts = rng.multinomial(n_units, np.full(n_units, 1 / n_units), size=size)
        out[start : start + size] = weighted_quantile(sorted_values, counts[:, unit_index], q)
    return out


def quantile_difference(
    *,
    control_values: ArrayLike,
    control_units: ArrayLike,
    variant_values: ArrayLike,
    variant_units: ArrayLike,
    q: float,
    n_boot: int = 1000,
    seed: int = 0,
    alternative: str = "two-sided",
    level: float = 0.95,
) -> QuantileResult:
    """Difference of an event-level quantile between arms, unit-clustered bootstrap SEs.

    Parameters
    ----------
    control_values, variant_values : array_like
        One value per event (e.g. latency of each request).
    control_units, variant_units : array_like
        The unit id of each event (any hashable dtype numpy can sort).
    q : float
        Quantile in (0, 1), e.g. 0.95 for p95.
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
        the absolute and relative effects get normal intervals with the bootstrap SE
        (quantiles are asymptotically normal), relative as ``Δ / |q_control|``.

    References
    ----------
    Efron & Tibshirani (1993), An Introduction to the Bootstrap, §6 and §9 (standard
    errors; resampling the independent units).  Field, Pang & Welsh (2010), "Bootstrapping
    robust estimates for clustered data", JASA (cluster bootstrap).  Liu, Sun, Varshney &
    Xu (2019), "Large-Scale Online Experimentation with Quantile Metrics" (why the unit
    must be the resampled cluster).
    """
    check_common(alternative=alternative, level=level)
    if not 0 < q < 1:
        raise InvalidInput(f"q must lie in (0, 1), got {q}", field="q")
    if n_boot < 100:
        raise InvalidInput(f"n_boot must be >= 100, got {n_boot}", field="n_boot")
    rng = np.random.default_rng(seed)
    reps = []
    points = []
    sizes = []
    for values, units, field in (
        (control_values, control_units, "control"),
        (variant_values, variant_units, "variant"),
    ):
        sorted_values, unit_index, n_units = _prepare(values, units, field)
        ones = np.ones((1, sorted_values.size), dtype=np.int64)
        points.append(float(weighted_quantile(sorted_values, ones, q)[0]))
        reps.append(
            _replicates(
                sorted_values=sorted_values,
                unit_index=unit_index,
                n_units=int(n_units),
                q=q,
                n_boot=n_boot,
                rng=rng,
            )
        )
        sizes.append((int(n_units), sorted_values.size))
    q_c, q_v = points
    diff_reps = reps[1] - reps[0]
    effect = effect_from_means(
        kind="quantile",
        n_control=sizes[0][0],
        n_variant=sizes[1][0],
        control_mean=q_c,
        control_var=float(np.var(reps[0], ddof=1)),
        variant_mean=q_v,
        variant_var=float(np.var(reps[1], ddof=1)),
        alternative=alternative,
        level=level,
    )
    if effect.relative_effect is not None:
        # The delta method for a quantile ratio needs densities; the bootstrap has the
        # replicates of the ratio directly.
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_reps = diff_reps / np.abs(reps[0])
        rel_sd = float(np.std(rel_reps, ddof=1)) if np.isfinite(rel_reps).all() else math.nan
        effect = replace(effect, relative_se=rel_sd)
    tail = (1 - level) / 2
    lo, hi = np.quantile(diff_reps, [tail, 1 - tail])
    return QuantileResult(
        effect=effect,
        q=q,
        n_boot=n_boot,
        seed=seed,
        events_control=sizes[0][1],
        events_variant=sizes[1][1],
        percentile_ci=(float(lo), float(hi)),
    )


__all__ = ["QuantileResult", "quantile_difference", "weighted_quantile"]
