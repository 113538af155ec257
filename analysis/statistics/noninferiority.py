"""Non-inferiority tests for guardrail metrics: is the variant no worse than a margin?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from abtest.errors import InvalidInput
from analysis.statistics.relative import (
    TINY_CONTROL_REASON,
    ArmEstimates,
    fieller_relative_bounds,
    fieller_statistic,
    relative_refusal,
)
from analysis.statistics.results import (
    Effect,
    Interval,
    json_float,
    p_value,
    z_statistic,
)
from analysis.statistics.results import (
    critical_value as _critical_value,
)


@dataclass(frozen=True)
class NonInferiority:
    """Guardrail test: is the variant no worse than control by more than ``margin``?

    For a relative margin, ``se`` is the relative effect's SE under the null (Fieller's
    test) and ``arms`` holds the arm estimates and SEs, from which ``confidence_interval``
    recomputes Fieller's bound at any level.
    """

    estimate: float
    se: float
    margin: float
    relative: bool
    higher_is_better: bool
    alpha: float
    statistic: float
    p_value: float
    bound: float
    non_inferior: bool
    arms: ArmEstimates | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "estimate": json_float(self.estimate),
            "se": json_float(self.se),
            "margin": self.margin,
            "relative": self.relative,
            "higher_is_better": self.higher_is_better,
            "alpha": self.alpha,
            "statistic": json_float(self.statistic),
            "p_value": json_float(self.p_value),
            "bound": json_float(self.bound),
            "non_inferior": self.non_inferior,
        }

    def confidence_interval(self, level: float | None = None) -> Interval:
        """One-sided interval bounding the harm (level defaults to ``1 - alpha``)."""
        c = _critical_value(1 - self.alpha if level is None else level, "greater", None)
        if self.arms is not None:
            bounds = fieller_relative_bounds(self.arms, critical=c)
            lower, upper = bounds or (-math.inf, math.inf)
            return (lower, math.inf) if self.higher_is_better else (-math.inf, upper)
        if self.higher_is_better:
            return (self.estimate - c * self.se, math.inf)
        return (-math.inf, self.estimate + c * self.se)


def non_inferiority(
    effect: Effect,
    *,
    margin: float,
    higher_is_better: bool = True,
    relative: bool = False,
    alpha: float = 0.05,
) -> NonInferiority:
    """One-sided non-inferiority z test of a guardrail effect against a margin.

    H0: the variant is worse by at least ``margin`` (``δ <= -margin`` when higher is
    better, ``δ >= margin`` when lower is better); rejecting H0 shows non-inferiority.

    Parameters
    ----------
    effect : Effect
        From `mean_difference`, `proportion_difference`, `ratio_difference` or CUPED.
    margin : float
        Largest tolerable harm (> 0), in metric units or, with ``relative``, as a
        fraction of the control mean (0.02 = 2 %).
    higher_is_better : bool
        Direction of the metric (False for latency, errors, churn).
    relative : bool
        Test the relative effect instead of the absolute one.
    alpha : float
        One-sided significance level.

    Returns
    -------
    NonInferiority
        ``non_inferior`` is True when p < alpha, i.e. the one-sided ``1 - alpha`` bound
        (``bound``) lies on the safe side of the margin.

    Raises
    ------
    InvalidInput
        A margin <= 0, alpha outside (0, 1), or a relative test without a relative effect
        or whose control mean lies within the one-sided critical value's SEs of 0.

    Notes
    -----
    A relative margin is tested as ``μ_v - λ μ_c`` against 0 with ``λ = 1 - margin``
    (``1 + margin`` when lower is better), i.e. with the SE evaluated at the margin, and
    ``bound`` is Fieller's one-sided bound, so the two always agree.  The delta method's
    Wald test, used before, was anti-conservative for heavy-tailed lower-is-better metrics:
    a revenue-like guardrail (8 % buyers, lognormal(3, 1.5) spend) harmed by exactly its
    5 % margin passed in 11.6 % of experiments at 2,000 units per arm and 7.5 % at 10,000,
    where Fieller's test passes 4.8 % (`tests/test_simulation_relative.py`).  An `Effect`
    without arm SEs falls back to the Wald test.

    References
    ----------
    Wellek (2010), Testing Statistical Hypotheses of Equivalence and Noninferiority, §2;
    agrees with ``statsmodels CompareMeans.ztest_ind(value=-margin, alternative="larger",
    usevar="unequal")``.
    Hauschke, Kieser & Hothorn (1999), Biometrical Journal 41(3): the ratio test.
    """
    if not margin > 0:
        raise InvalidInput(f"margin must be > 0, got {margin}", field="margin")
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must lie in (0, 1), got {alpha}", field="alpha")
    if relative:
        if effect.relative_effect is None or effect.relative_se is None:
            raise InvalidInput(effect.relative_reason or "no relative effect", field="relative")
        if effect.arms is not None:
            return _fieller_non_inferiority(
                effect.relative_effect,
                effect.arms,
                margin=margin,
                higher_is_better=higher_is_better,
                alpha=alpha,
            )
        estimate, se = effect.relative_effect, effect.relative_se
    else:
        estimate, se = effect.absolute_effect, effect.absolute_se
    if higher_is_better:
        stat = z_statistic(estimate, se, null=-margin)
        p = p_value(stat, "greater", None)
        bound = estimate - _critical_value(1 - alpha, "greater", None) * se
    else:
        stat = z_statistic(estimate, se, null=margin)
        p = p_value(stat, "less", None)
        bound = estimate + _critical_value(1 - alpha, "greater", None) * se
    return NonInferiority(
        estimate=estimate,
        se=se,
        margin=margin,
        relative=relative,
        higher_is_better=higher_is_better,
        alpha=alpha,
        statistic=stat,
        p_value=p,
        bound=bound,
        non_inferior=bool(p < alpha),
    )


def _fieller_non_inferiority(
    estimate: float,
    arms: ArmEstimates,
    *,
    margin: float,
    higher_is_better: bool,
    alpha: float,
) -> NonInferiority:
    c = _critical_value(1 - alpha, "greater", None)
    bounds = fieller_relative_bounds(arms, critical=c)
    if bounds is None:
        reason = relative_refusal(arms, critical=c, what="relative test")
        raise InvalidInput(reason or TINY_CONTROL_REASON, field="relative")
    null = -margin if higher_is_better else margin
    stat, se = fieller_statistic(arms, null=null)
    p = p_value(stat, "greater" if higher_is_better else "less", None)
    return NonInferiority(
        estimate=estimate,
        se=se,
        margin=margin,
        relative=True,
        higher_is_better=higher_is_better,
        alpha=alpha,
        statistic=stat,
        p_value=p,
        bound=bounds[0] if higher_is_better else bounds[1],
        non_inferior=bool(p < alpha),
        arms=arms,
    )


__all__ = ["NonInferiority", "non_inferiority"]
