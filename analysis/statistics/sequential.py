"""Always-valid inference: mSPRT p-values and confidence sequences for a difference of means.

A fixed-horizon p-value is valid only at the one planned look; checking it every day and
stopping at the first p < 0.05 inflates false positives several-fold.  The mixture
sequential probability ratio test (mSPRT) gives a p-value that may be monitored after
every look: ``P(∃ n: p_n <= alpha) <= alpha`` under the null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput
from analysis.statistics.aggregates import SampleStats
from analysis.statistics.results import Interval, json_float, json_interval

FloatArray = NDArray[np.float64]


def tau2_ratio(alpha: float) -> float:
    """``r = -2 log alpha + log(1 - 2 log alpha)``: the τ²/V that makes a CS tightest at V.

    References
    ----------
    Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
    confidence sequences", Ann. Statist. 49, §3: the two-sided normal-mixture boundary is
    close to tightest at intrinsic time ``m`` for
    ``rho² = (-2 log alpha + log(-2 log alpha + 1)) / m`` (the approximation also used by
    Waudby-Smith et al. (2021), "Time-uniform central limit theory and asymptotic
    confidence sequences").  Here V plays 1/m and τ² plays rho².
    """
    return -2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))


def default_tau2(*, variance_of_difference: float, alpha: float = 0.05) -> float:
    """Mixing variance τ² tuned so the confidence sequence is tightest at a target look.

    Parameters
    ----------
    variance_of_difference : float
        ``V = sigma_c²/n_c + sigma_v²/n_v`` expected at the look that matters most (the planned
        end of the experiment, e.g. from the power calculation).
    alpha : float
        Significance level.

    Returns
    -------
    float
        ``τ² = r(alpha) · V`` (about 8.0 V at alpha = 0.05), see `tau2_ratio`.
    """
    return tau2_ratio(alpha) * variance_of_difference


def log_likelihood_ratio(*, estimate: ArrayLike, variance: ArrayLike, tau2: float) -> FloatArray:
    """log Λ of the normal-mixture SPRT at each look (vectorised; V = 0 gives 0).

    ``Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²)))`` for an estimate θ̂ ~ N(θ, V)
    and the mixing distribution θ ~ N(0, τ²) under the alternative.

    References
    ----------
    Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B Tests", KDD, §4 (two-sample
    normal mSPRT; plug-in variances as in their deployment at Optimizely).
    """
    est = np.asarray(estimate, dtype=float)
    var = np.asarray(variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = 0.5 * np.log(var / (var + tau2)) + tau2 * est**2 / (2 * var * (var + tau2))
    return np.where(var > 0, llr, 0.0)


def always_valid_p_values(
    *, estimate: ArrayLike, variance: ArrayLike, tau2: float, axis: int = -1
) -> FloatArray:
    """Always-valid p-values ``p_n = min(1, min_{k<=n} 1/Λ_k)`` along the looks ``axis``."""
    llr = log_likelihood_ratio(estimate=estimate, variance=variance, tau2=tau2)
    p = np.minimum(1.0, np.exp(-llr))
    return np.minimum.accumulate(p, axis=axis)


def confidence_sequence(
    *, estimate: ArrayLike, variance: ArrayLike, tau2: float, alpha: float, axis: int = -1
) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds of the (1 - alpha) confidence sequence, intersected over looks.

    At each look the set ``{θ : Λ(θ̂ - θ) < 1/alpha}`` is
    ``θ̂ ± sqrt(V (V + τ²) / τ² · (2 log(1/alpha) + log((V + τ²) / V)))``; the running
    intersection is still valid and never widens.  Looks with V = 0 carry no information.

    References
    ----------
    Howard et al. (2021), Ann. Statist. 49, §3.3 (normal mixture boundary); Johari et al.
    (2017), §4.
    """
    est = np.asarray(estimate, dtype=float)
    var = np.asarray(variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.sqrt(
            var * (var + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((var + tau2) / var))
        )
    half = np.where(var > 0, half, np.inf)
    lower = np.fmax.accumulate(est - half, axis=axis)
    upper = np.fmin.accumulate(est + half, axis=axis)
    return lower, upper


@dataclass(frozen=True)
class SequentialResult:
    """mSPRT over cumulative looks: per-look always-valid p-values and the CS bounds.

    ``p_value`` and ``ci`` are the values at the last look; ``p_values``/``lower``/
    ``upper`` hold every look (for plots of the cumulative effect with its bounds).
    """

    alpha: float
    tau2: float
    n_control: tuple[int, ...]
    n_variant: tuple[int, ...]
    estimates: tuple[float, ...]
    p_values: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]

    @property
    def p_value(self) -> float:
        """Always-valid p-value at the last look."""
        return self.p_values[-1]

    @property
    def ci(self) -> Interval:
        """The (1 - alpha) confidence sequence at the last look."""
        return (self.lower[-1], self.upper[-1])

    @property
    def reject(self) -> bool:
        """True once the always-valid p-value is <= alpha (safe to stop)."""
        return self.p_value <= self.alpha

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the last look on top and every look in ``looks``."""
        return {
            "p_value": json_float(self.p_value),
            "ci": json_interval(self.ci),
            "alpha": self.alpha,
            "tau2": json_float(self.tau2),
            "reject": self.reject,
            "looks": [
                {
                    "n_control": nc,
                    "n_variant": nv,
                    "estimate": json_float(e),
                    "p_value": json_float(p),
                    "ci": json_interval((lo, hi)),
                }
                for nc, nv, e, p, lo, hi in zip(
                    self.n_control,
                    self.n_variant,
                    self.estimates,
                    self.p_values,
                    self.lower,
                    self.upper,
                    strict=True,
                )
            ],
        }


def sequential_test(
    *,
    looks: Sequence[tuple[SampleStats, SampleStats]],
    alpha: float = 0.05,
    tau2: float | None = None,
) -> SequentialResult:
    """mSPRT of the difference of means over cumulative looks (e.g. one per day).

    Parameters
    ----------
    looks : sequence of (control, variant) SampleStats
        Cumulative aggregates at each look, in time order (a binomial metric passes its
        0/1 aggregates; the variance is the sample variance of each arm).
    alpha : float
        Level of the confidence sequence; rejecting at ``p <= alpha`` keeps the
        false-positive rate <= alpha however often one looks.
    tau2 : float, optional
        Mixing variance τ² of the effect under the alternative (metric units squared).
        Default: ``default_tau2`` at the last look's V, which makes the sequence
        tightest at the end of the experiment.  Deriving it from the last look's
        variance estimate is a mild, documented plug-in; pass τ² from the plan (the
        power calculation's V at the planned sample size) to fix it in advance.

    Returns
    -------
    SequentialResult

    Raises
    ------
    InvalidInput
        No looks, an arm with fewer than 2 units at some look, or a bad alpha / τ².

    References
    ----------
    Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B Tests: Why it matters, and
    what to do about it", KDD.  Howard, Ramdas, McAuliffe & Sekhon (2021), Ann. Statist.
    """
    if not looks:
        raise InvalidInput("needs at least one look", field="looks")
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must lie in (0, 1), got {alpha}", field="alpha")
    n_c, n_v, est, var = [], [], [], []
    for i, (c, v) in enumerate(looks):
        if c.n < 2 or v.n < 2:
            raise InvalidInput("every look needs >= 2 units per arm", field=f"looks[{i}]")
        n_c.append(c.n)
        n_v.append(v.n)
        est.append(v.mean - c.mean)
        var.append(c.variance / c.n + v.variance / v.n)
    if tau2 is None:
        tau2 = default_tau2(variance_of_difference=var[-1], alpha=alpha) if var[-1] > 0 else 1.0
    if not (tau2 > 0 and math.isfinite(tau2)):
        raise InvalidInput(f"tau2 must be finite and > 0, got {tau2}", field="tau2")
    p = always_valid_p_values(estimate=est, variance=var, tau2=tau2)
    lower, upper = confidence_sequence(estimate=est, variance=var, tau2=tau2, alpha=alpha)
    return SequentialResult(
        alpha=alpha,
        tau2=tau2,
        n_control=tuple(n_c),
        n_variant=tuple(n_v),
        estimates=tuple(est),
        p_values=tuple(float(x) for x in p),
        lower=tuple(float(x) for x in lower),
        upper=tuple(float(x) for x in upper),
    )


__all__ = [
    "SequentialResult",
    "always_valid_p_values",
    "confidence_sequence",
    "default_tau2",
    "log_likelihood_ratio",
    "sequential_test",
    "tau2_ratio",
]
