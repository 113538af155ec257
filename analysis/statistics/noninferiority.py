"""Non-inferiority tests for guardrail metrics: is the variant no worse than a margin?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from abtest.errors import InvalidInput
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
    """Guardrail test: is the variant no worse than control by more than ``margin``?"""

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
        A margin <= 0, alpha outside (0, 1), or a relative test without a relative effect.

    References
    ----------
    Wellek (2010), Testing Statistical Hypotheses of Equivalence and Noninferiority, §2;
    agrees with ``statsmodels CompareMeans.ztest_ind(value=-margin, alternative="larger",
    usevar="unequal")``.
    """
    if not margin > 0:
        raise InvalidInput(f"margin must be > 0, got {margin}", field="margin")
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha must lie in (0, 1), got {alpha}", field="alpha")
    if relative:
        if effect.relative_effect is None or effect.relative_se is None:
            raise InvalidInput(effect.relative_reason or "no relative effect", field="relative")
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


__all__ = ["NonInferiority", "non_inferiority"]
