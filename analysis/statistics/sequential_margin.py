"""Always-valid guardrail tests against a margin: harmed beyond it, or shown within it.

The fixed-horizon non-inferiority test (`analysis.statistics.noninferiority`) is valid at
one look.  A verdict read every day needs the always-valid version of both questions a
guardrail asks:

- **harm**: H0 "the harm is at most the margin" against "it is beyond the margin"; a
  rejection is always-valid evidence that the variant does more damage than the
  tolerated margin (`roll_back`).  Testing against the margin rather than against 0
  means a significant but tolerated harm (inside the margin) does not roll back, which
  is what the margin says.
- **non-inferiority**: H0 "the harm is at least the margin"; a rejection shows the harm
  is within the margin (required to `ship`).

Each is a one-sided mSPRT (`one_sided_log_likelihood_ratio`) with the null shifted to the
margin.  A one-sided mixture over effects beyond a point is a supermartingale for every
effect on the null side of it, so both tests keep their level at any stopping time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from abtest.errors import InvalidInput
from analysis.statistics.relative import fieller_statistic
from analysis.statistics.results import Effect, json_float
from analysis.statistics.sequential import always_valid_p_values


@dataclass(frozen=True)
class SequentialMargin:
    """Both always-valid guardrail tests on one look's estimate.

    ``estimate``/``se``: the effect tested (relative when ``relative``); ``p_harm``: small
    when the harm is beyond the margin; ``p_non_inferior``: small when it is within it.
    """

    estimate: float
    se: float
    margin: float
    relative: bool
    higher_is_better: bool
    tau2: float
    p_harm: float
    p_non_inferior: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "estimate": json_float(self.estimate),
            "se": json_float(self.se),
            "margin": self.margin,
            "relative": self.relative,
            "higher_is_better": self.higher_is_better,
            "tau2": json_float(self.tau2),
            "p_harm": json_float(self.p_harm),
            "p_non_inferior": json_float(self.p_non_inferior),
        }


def sequential_margin_test(
    effect: Effect,
    *,
    margin: float,
    tau2: float,
    higher_is_better: bool = True,
    relative: bool = False,
) -> SequentialMargin:
    """Always-valid harm and non-inferiority p-values of a guardrail effect.

    Parameters
    ----------
    effect : Effect
        The guardrail's effect at the current look.
    margin : float
        Largest tolerated harm (> 0), in metric units or, with ``relative``, as a fraction
        of the control mean.
    tau2 : float
        Mixing variance of the *absolute* effect (from a `MixingPrior`, fixed in
        advance).  For a relative test it is rescaled so that ``V / τ²`` is unchanged:
        the relative scale divides both the estimate's variance and the effect by about
        ``μ_c²``, so the same prior means the same test.  The relative effect's SE is
        taken under the margin, ``sqrt(se_v² + λ² se_c²) / |m_c|`` with ``λ`` the ratio
        the margin implies (`analysis.statistics.relative.fieller_statistic`), as the
        fixed-horizon test does: the delta method's SE at the estimate made that test
        anti-conservative on skewed lower-is-better metrics.
    higher_is_better : bool
        Direction of the metric (False for latency, errors, churn).
    relative : bool
        Test the relative effect.

    Returns
    -------
    SequentialMargin

    Raises
    ------
    InvalidInput
        A margin <= 0, a τ² <= 0, or a relative test without a relative effect.

    References
    ----------
    Howard, Ramdas, McAuliffe & Sekhon (2021), Ann. Statist. 49, §3.5 (one-sided
    boundaries); Wellek (2010), Testing Statistical Hypotheses of Equivalence and
    Noninferiority, §2 (the shifted null of non-inferiority); Hauschke, Kieser & Hothorn
    (1999), Biometrical Journal 41(3) (the ratio test's SE under the null).
    """
    if not margin > 0:
        raise InvalidInput(f"margin must be > 0, got {margin}", field="margin")
    if not tau2 > 0:
        raise InvalidInput(f"tau2 must be > 0, got {tau2}", field="tau2")
    estimate, se = effect.absolute_effect, effect.absolute_se
    null = -margin if higher_is_better else margin
    if relative:
        if effect.relative_effect is None or effect.relative_se is None:
            raise InvalidInput(effect.relative_reason or "no relative effect", field="relative")
        relative_se = effect.relative_se
        if effect.arms is not None:  # the SE under the margin, as Fieller's test takes it
            relative_se = fieller_statistic(effect.arms, null=null)[1]
        scale = (relative_se / se) ** 2 if se > 0 else 0.0
        estimate, se, tau2 = effect.relative_effect, relative_se, tau2 * scale
    greater, less = (
        float(
            always_valid_p_values(
                estimate=estimate, variance=se**2, tau2=tau2, null=null, alternative=side
            )
        )
        for side in ("greater", "less")
    )
    harm, within = (less, greater) if higher_is_better else (greater, less)
    return SequentialMargin(
        estimate=estimate, se=se, margin=margin, relative=relative,
        higher_is_better=higher_is_better, tau2=tau2, p_harm=harm, p_non_inferior=within,
    )  # fmt: skip


__all__ = ["SequentialMargin", "sequential_margin_test"]
