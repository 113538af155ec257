"""CUPED: variance reduction with a pre-exposure covariate, from aggregates alone.

``y_adj = y - θ (x - x̄)`` has the same expected difference between arms as ``y`` (x is
measured before exposure, so treatment cannot move it) and variance
``Var(y)(1 - rho²)`` at the optimal ``θ = Cov(y, x) / Var(x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from abtest.errors import InvalidInput
from analysis.statistics.aggregates import PairedStats
from analysis.statistics.inference import effect_from_means, mean_difference
from analysis.statistics.results import Effect, Interval, json_float


@dataclass(frozen=True)
class CupedResult:
    """The adjusted effect beside the unadjusted one, with θ and the variance reduction.

    ``variance_reduction`` is ``1 - Var(adjusted effect) / Var(unadjusted effect)``
    (0.3 = the CI is ``sqrt(0.7)`` as wide, as if the experiment had 1/0.7 the units).
    """

    effect: Effect
    unadjusted: Effect
    theta: float
    correlation: float
    variance_reduction: float

    def confidence_interval(self, level: float | None = None) -> Interval:
        """CI of the adjusted absolute effect."""
        return self.effect.confidence_interval(level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the adjusted effect's fields plus θ, rho and the reduction."""
        return {
            **self.effect.to_dict(),
            "theta": json_float(self.theta),
            "correlation": json_float(self.correlation),
            "variance_reduction": json_float(self.variance_reduction),
            "unadjusted": self.unadjusted.to_dict(),
        }


def cuped(
    *,
    control: PairedStats,
    variant: PairedStats,
    alternative: str = "two-sided",
    level: float = 0.95,
) -> CupedResult:
    """CUPED-adjusted difference of means (``y`` = metric, ``x`` = pre-exposure covariate).

    Parameters
    ----------
    control, variant : PairedStats
        Per-arm aggregates of (metric, covariate) per unit; units without pre-period
        data carry x = 0 (they stay in the analysis).
    alternative, level
        As in `analysis.inference.mean_difference`.

    Returns
    -------
    CupedResult
        ``effect`` (kind "cuped") uses, per arm, the adjusted mean
        ``ȳ - θ (x̄_arm - x̄_pooled)`` and the variance ``(s_y² - 2θ s_xy + θ² s_x²) / n``.

    Notes
    -----
    θ is pooled across arms from within-arm centred sums
    (``Σ_arms S_xy / Σ_arms S_xx``), so a treatment effect on y does not leak into θ.
    Its estimation error is ignored in the variance, as in the paper (it is O(1/n)).
    A constant covariate gives θ = 0 and the unadjusted result.

    References
    ----------
    Deng, Xu, Kohavi & Walker (2013), "Improving the Sensitivity of Online Controlled
    Experiments by Utilizing Pre-Experiment Data", WSDM, §3.
    """
    for arm, name in ((control, "control"), (variant, "variant")):
        if arm.n < 2:
            raise InvalidInput(f"needs at least 2 units, got {arm.n}", field=name)
    s_xx = (control.n - 1) * control.x.variance + (variant.n - 1) * variant.x.variance
    s_yy = (control.n - 1) * control.y.variance + (variant.n - 1) * variant.y.variance
    s_xy = (control.n - 1) * control.covariance + (variant.n - 1) * variant.covariance
    theta = s_xy / s_xx if s_xx > 0 else 0.0
    corr = s_xy / math.sqrt(s_xx * s_yy) if s_xx > 0 and s_yy > 0 else 0.0
    x_pooled = (control.sum_x + variant.sum_x) / (control.n + variant.n)

    def adjusted(arm: PairedStats) -> tuple[float, float]:
        mean = arm.sum_y / arm.n - theta * (arm.sum_x / arm.n - x_pooled)
        var = arm.y.variance - 2 * theta * arm.covariance + theta**2 * arm.x.variance
        return mean, max(var, 0.0) / arm.n

    m_c, v_c = adjusted(control)
    m_v, v_v = adjusted(variant)
    effect = effect_from_means(
        kind="cuped",
        n_control=control.n,
        n_variant=variant.n,
        control_mean=m_c,
        control_var=v_c,
        variant_mean=m_v,
        variant_var=v_v,
        alternative=alternative,
        level=level,
    )
    raw = mean_difference(
        control=control.y, variant=variant.y, alternative=alternative, level=level
    )
    raw_var = raw.absolute_se**2
    reduction = 1 - effect.absolute_se**2 / raw_var if raw_var > 0 else 0.0
    return CupedResult(
        effect=effect,
        unadjusted=raw,
        theta=theta,
        correlation=corr,
        variance_reduction=reduction,
    )


__all__ = ["CupedResult", "cuped"]
