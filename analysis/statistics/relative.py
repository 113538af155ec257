"""Relative effects ``(m_v - m_c) / |m_c|``: the estimate, Fieller's interval, and refusals.

Pure arithmetic on the two arm estimates and their standard errors (the arms are
independent), so it serves means, proportions, delta-method ratios, CUPED-adjusted means
and quantiles alike.  `analysis.statistics.results.Effect` calls it for its relative CI
and `analysis.statistics.noninferiority` for relative guardrail margins.

Why Fieller's interval
----------------------
The relative CI is the set of ratios ``R = μ_v / μ_c`` that the z (or Welch t) test of
``μ_v - R μ_c = 0`` does not reject: Fieller's theorem.  Its standard error is evaluated
at the hypothesised ratio, ``sqrt(se_v² + R² se_c²)``, where the delta method evaluates it
at the estimate ``r``.  For revenue-like metrics that difference matters.  A control arm
that happened to miss its few big spenders has a small mean *and* a small variance, so
``r`` is too large and, because both are estimated from the same few values, the delta
method's ``r``-scaled SE is not large enough to reach back to the truth; the misses pile
up on one side.  Fieller's pivot is the same self-normalised difference as the absolute
effect's test (which covers), applied to the variant and the rescaled control: when
treatment scales the metric, those two have the same shape and their skewness cancels.

Measured by ``tests/test_simulation_relative.py`` (seeded experiments: 8 % of units buy,
a buyer spends lognormal(3, 1.5), treatment multiplies spend by 1.1; the ratio metric is
that revenue per session, 1 + Poisson(2) sessions per unit and 1 + Poisson(4) per buyer;
20,000 experiments per cell at 2,000 units per arm, 10,000 at 10,000):

======================================  ==================  ==================
95 % CI of the +10 % lift covers         2,000 per arm       10,000 per arm
======================================  ==================  ==================
delta method on ``r`` (before)           91.3-91.7 %         94.0-94.4 %
delta method on ``log r``                92.7-93.0 %         94.5-94.6 %
Fieller, revenue per unit (now)          96.2 %              95.7 %
Fieller, revenue per session (now)       95.9 %              95.5 %
======================================  ==================  ==================

In A/A runs (2,000 per arm) Fieller covers 95.6 and 95.9 %.  It misses 1.9-2.3 % on
each side; the delta method missed 7.8-8.0 % below the truth (4.3-4.6 % at 10,000),
which made one-sided relative guardrails anti-conservative.  The log-scale delta method
(Deng, Knoblich & Lu 2018) fixes the lopsidedness but stays too narrow.  A bootstrap
needs the unit-level data, which the analysis does not keep (it reads aggregates); a
skewness correction (Johnson's t, Hall's transformation) needs Σy³, which under such
tails is dominated by the single largest value; capping heavy tails (Kohavi et al. 2014)
changes the estimand, so it stays an explicit choice (`analysis.planning.sensitivity
.winsorize`), never a silent default.

When no interval is given
-------------------------
``relative_refusal`` gives a reason, and no interval, unless each arm's mean is more than
``critical`` standard errors from 0 (1.96 at 95 %, two-sided).  For the control this is
Fieller's condition for a bounded interval; for the variant it keeps the interval from
collapsing onto -100 % when the variant has (almost) no non-zero units and a variance
estimate near 0.  For non-negative values with ``k`` non-zero units out of ``n``,
``z² = (n - 1) n_eff / (n - n_eff) <= (n - 1) k / (n - k)`` with ``n_eff = (Σy)² / Σy²``,
so three or fewer non-zero units in an arm (of 11 or more) always fail the 95 % rule.  In
the scenarios above 0.6-0.8 % of the experiments get no interval at 2,000 per arm and
0.01 % at 10,000.  With fewer buyers the rule refuses more and what it lets through still
covers: 40 expected buyers per arm (500 units) 11 % refused, 95.7 % covered; 20 buyers
34 % and 95.9 %; 8 buyers 87 % and 96.9 % (the delta method: 87.2, 84.4, 79.0 %).
Kohavi et al.'s rule for a normal mean (``n > 355 s²``, s the skewness) is not used: it
would refuse every scenario above, where the interval covers, because the relative
interval's pivot is a difference of like-shaped arms in which the skewness cancels.

References
----------
Fieller, E. C. (1954), "Some problems in interval estimation", JRSS B 16(2), 175-185.
Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics", KDD.
Kohavi, Deng, Longbotham & Xu (2014), "Seven Rules of Thumb for Web Site Experimenters",
KDD, rule 7 (``n > 355 s²`` and capping); Kohavi, Tang & Xu (2020), Trustworthy Online
Controlled Experiments, ch. 17.
Statsig, "Fieller intervals" (stats engine docs): the same interval and control check.
Cochran (1977), Sampling Techniques, 3rd ed., §6.8 (the bias of a ratio estimator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ZERO_CONTROL_REASON = "control mean is 0: a relative effect is undefined"
TINY_CONTROL_REASON = "control mean is too close to 0 for a finite relative effect"


def relative_effect(
    *, control_mean: float, control_var: float, variant_mean: float, variant_var: float
) -> tuple[float | None, float | None, str | None]:
    """Relative effect ``(m_v - m_c) / |m_c|`` and its delta-method standard error.

    Parameters
    ----------
    control_mean, variant_mean : float
        The two arm estimates (means, proportions or ratios).
    control_var, variant_var : float
        Variances of those estimates (squared standard errors), arms independent.

    Returns
    -------
    tuple
        ``(relative_effect, relative_se, reason)``; the first two are None and ``reason``
        says why when the control mean is 0.

    Notes
    -----
    ``Var(m_v / m_c) ≈ var_v / m_c² + m_v² var_c / m_c⁴`` (first-order Taylor expansion of
    the ratio of two independent means).  Dividing by ``|m_c|`` keeps the sign of the
    effect meaningful for a negative control mean; the variance is unchanged.  The SE is
    a summary; the relative CI is Fieller's (`fieller_relative_bounds`), not ``±z·SE``.

    The estimate is the plug-in ratio, of the absolute effect's sign.  In the simulations
    of the module docstring (revenue, true +10 %) its median is within 0.5 pp of the
    truth, its mean 5.8 pp above at 2,000 units per arm and 1.4 pp at 10,000, about
    ``r·se_c²/m_c²`` (the mean of a ratio of means does not strictly exist: the control
    mean can be 0); `bias_corrected_relative_effect` removes most of that.

    References
    ----------
    Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics", KDD.
    GrowthBook gbstats ``frequentist_variance(..., relative=True)``.
    """
    if control_mean == 0 or not math.isfinite(control_mean):
        return None, None, ZERO_CONTROL_REASON
    # Written as sqrt(var_v + r² var_c) / |m_c| so that tiny control means do not
    # underflow m_c⁴ to 0.
    scale = abs(control_mean)
    ratio = variant_mean / control_mean
    rel = (variant_mean - control_mean) / scale
    se = math.sqrt(max(variant_var + ratio * ratio * control_var, 0.0)) / scale
    if not (math.isfinite(rel) and math.isfinite(se)):
        return None, None, TINY_CONTROL_REASON
    return rel, se, None


@dataclass(frozen=True)
class ArmEstimates:
    """The two arm estimates of a metric and their standard errors (arms independent)."""

    control_mean: float
    control_se: float
    variant_mean: float
    variant_se: float


def relative_refusal(
    arms: ArmEstimates, *, critical: float, what: str = "relative CI"
) -> str | None:
    """Why no relative CI can be trusted at this critical value, or None when one can.

    Parameters
    ----------
    arms : ArmEstimates
        Arm estimates and their standard errors.
    critical : float
        Critical value of the interval (1.96 for a two-sided 95 % normal interval).
    what : str
        What is refused, for the reason's text.

    Returns
    -------
    str or None
        A reason when the control mean is 0 or either arm's mean lies within ``critical``
        standard errors of 0 (see the module docstring for why).
    """
    if arms.control_mean == 0 or not math.isfinite(arms.control_mean):
        return ZERO_CONTROL_REASON
    for arm, mean, se in (("control", arms.control_mean, arms.control_se),
                          ("variant", arms.variant_mean, arms.variant_se)):  # fmt: skip
        if not abs(mean) > critical * se:
            return (
                f"no trustworthy {what}: the {arm} mean is within {critical:.3g} "
                "standard errors of 0 (too few non-zero units)"
            )
    return None


def fieller_ratio_bounds(arms: ArmEstimates, *, critical: float) -> tuple[float, float] | None:
    """Fieller's interval for ``μ_v / μ_c``: the ratios R with ``|T(R)| <= critical``.

    ``T(R) = (m_v - R m_c) / sqrt(se_v² + R² se_c²)``.  Solving ``T(R)² = c²`` with
    ``r = m_v / m_c``, ``a = 1 - c² se_c² / m_c²`` gives
    ``R = (r ± c sqrt(a se_v² / m_c² + r² se_c² / m_c²)) / a``.

    Returns
    -------
    tuple or None
        ``(lower, upper)``; None when the set is not a bounded interval (the control mean
        within ``critical`` SEs of 0) or is not finite.

    References
    ----------
    Fieller (1954), JRSS B 16(2), 175-185, with the covariance 0 (independent arms).
    """
    if arms.control_mean == 0 or not math.isfinite(arms.control_mean):
        return None
    # Everything in units of |m_c|, so that no square of a mean over- or underflows.
    scale = abs(arms.control_mean)
    r = arms.variant_mean / arms.control_mean
    s_c, s_v = arms.control_se / scale, arms.variant_se / scale
    a = 1.0 - (critical * s_c) ** 2
    if not a > 0:
        return None
    half_width = critical * math.sqrt(a * s_v * s_v + r * r * s_c * s_c)
    product = (r * r - (critical * s_v) ** 2) / a  # of the two roots: stable small root
    if r >= 0:
        upper = (r + half_width) / a
        lower = product / upper if upper != 0 else 0.0
    else:
        lower = (r - half_width) / a
        upper = product / lower
    if not (math.isfinite(lower) and math.isfinite(upper)):
        return None
    return lower, upper


def fieller_relative_bounds(arms: ArmEstimates, *, critical: float) -> tuple[float, float] | None:
    """Fieller's interval of the relative effect ``(μ_v - μ_c) / |μ_c|``.

    It is ``R - 1`` for a positive control mean and ``1 - R`` for a negative one
    (`fieller_ratio_bounds`); None when that is unbounded.

    Examples
    --------
    A +20 % estimate whose arms have 10 % and 10 % relative SEs: the delta method would
    say +20 % ± 33 pp, symmetric; Fieller's interval leans up, as the ratio does.

    >>> arms = ArmEstimates(control_mean=10.0, control_se=1.0, variant_mean=12.0, variant_se=1.2)
    >>> [round(x, 4) for x in fieller_relative_bounds(arms, critical=1.96)]
    [-0.0946, 0.5905]
    """
    bounds = fieller_ratio_bounds(arms, critical=critical)
    if bounds is None:
        return None
    lower, upper = bounds
    if arms.control_mean > 0:
        return lower - 1.0, upper - 1.0
    return 1.0 - upper, 1.0 - lower


def trusted_relative_bounds(arms: ArmEstimates, *, critical: float) -> tuple[float, float] | None:
    """`fieller_relative_bounds`, or None when `relative_refusal` gives a reason."""
    if relative_refusal(arms, critical=critical) is not None:
        return None
    return fieller_relative_bounds(arms, critical=critical)


def fieller_statistic(arms: ArmEstimates, *, null: float) -> tuple[float, float]:
    """Test of a relative effect equal to ``null``, with the SE taken under that null.

    Returns
    -------
    tuple
        ``(statistic, se)``: ``(rel̂ - null) / se`` with
        ``se = sqrt(se_v² + λ² se_c²) / |m_c|`` and ``λ = 1 + null·sign(m_c)``, the ratio
        that the null implies.  A statistic above ``c`` is exactly a null below the lower
        Fieller bound at critical value ``c`` (one test, inverted).

    References
    ----------
    Fieller (1954); Hauschke, Kieser & Hothorn (1999), "Proof of safety in toxicology
    based on the ratio of two means for normally distributed data", Biometrical
    Journal 41(3), 295-304.
    """
    scale = abs(arms.control_mean)
    lam = 1.0 + null * math.copysign(1.0, arms.control_mean)
    se = math.hypot(arms.variant_se, lam * arms.control_se) / scale
    diff = (arms.variant_mean - lam * arms.control_mean) / scale  # = rel̂ - null
    if se > 0:
        return diff / se, se
    return (0.0 if diff == 0 else math.copysign(math.inf, diff)), se


def bias_corrected_relative_effect(arms: ArmEstimates) -> float | None:
    """The relative effect with its second-order bias removed: ``r / (1 + se_c²/m_c²) - 1``.

    ``E[m_v / m_c] ≈ (μ_v / μ_c)(1 + Var(m_c) / μ_c²)`` for independent arms, so dividing
    by the estimated factor removes most of the plug-in's upward bias: +1.5 pp instead of
    +5.8 pp on a true +10 % at 2,000 per arm, +0.3 pp instead of +1.4 pp at 10,000
    (`tests/test_simulation_relative.py`).  The price: a median 3.5 pp (0.9 pp) low, and
    a sign that differs from the absolute effect's in 4.8 % (2.5 %) of those experiments,
    which is why the reported estimate stays the plug-in.  Use this one to average lifts
    over many experiments.

    References
    ----------
    Cochran (1977), Sampling Techniques, 3rd ed., §6.8.
    """
    if arms.control_mean == 0 or not math.isfinite(arms.control_mean):
        return None
    u = (arms.control_se / arms.control_mean) ** 2
    corrected = (arms.variant_mean / arms.control_mean) / (1.0 + u)
    rel = (corrected - 1.0) * math.copysign(1.0, arms.control_mean)
    return rel if math.isfinite(rel) else None


__all__ = [
    "TINY_CONTROL_REASON",
    "ZERO_CONTROL_REASON",
    "ArmEstimates",
    "bias_corrected_relative_effect",
    "fieller_ratio_bounds",
    "fieller_relative_bounds",
    "fieller_statistic",
    "relative_effect",
    "relative_refusal",
    "trusted_relative_bounds",
]
