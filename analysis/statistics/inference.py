"""Frequentist effects from per-variant aggregates: means, proportions, ratios, guardrails.

All functions read sufficient statistics only (`SampleStats`, `PairedStats`), so they run
unchanged on aggregates computed by a SQL engine.  Standard errors are unpooled (Welch);
the reference distribution is the normal by default, as usual for online experiments
with thousands of units, or Welch's t on request.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

from abtest.errors import InvalidInput
from analysis.statistics.aggregates import PairedStats, SampleStats
from analysis.statistics.noninferiority import NonInferiority, non_inferiority
from analysis.statistics.relative import (
    TINY_CONTROL_REASON,
    ZERO_CONTROL_REASON,
    ArmEstimates,
    relative_effect,
    relative_refusal,
)
from analysis.statistics.results import (
    ALTERNATIVES,
    Effect,
    critical_value,
    p_value,
    z_statistic,
)


def check_common(*, alternative: str, level: float) -> None:
    """Reject an unknown alternative or a confidence level outside (0, 1)."""
    if alternative not in ALTERNATIVES:
        raise InvalidInput(
            f"alternative must be one of {', '.join(ALTERNATIVES)}, got {alternative!r}",
            field="alternative",
        )
    if not 0 < level < 1:
        raise InvalidInput(f"level must lie in (0, 1), got {level}", field="level")


def _check_n(n: int, field: str, minimum: int = 2) -> None:
    if n < minimum:
        raise InvalidInput(f"needs at least {minimum} units, got {n}", field=field)


def effect_from_means(
    *,
    kind: str,
    n_control: int,
    n_variant: int,
    control_mean: float,
    control_var: float,
    variant_mean: float,
    variant_var: float,
    alternative: str = "two-sided",
    level: float = 0.95,
    df: float | None = None,
) -> Effect:
    """The `Effect` of two independent arm estimates with known sampling variances.

    Parameters
    ----------
    kind : str
        Label of the metric type ("mean", "binomial", "ratio", "cuped", ...).
    n_control, n_variant : int
        Units per arm.
    control_mean, variant_mean : float
        Arm estimates.
    control_var, variant_var : float
        Sampling variances of the arm estimates (``s² / n`` for a mean).
    alternative : {"two-sided", "greater", "less"}
        "greater" tests variant > control.
    level : float
        Confidence level of the stored intervals.
    df : float or None
        Degrees of freedom of a t reference distribution; None for the normal.

    Returns
    -------
    Effect
        Absolute effect ``variant - control`` with SE ``sqrt(var_c + var_v)``, its z (or t)
        statistic and p-value; the relative effect with its delta-method SE and Fieller's
        interval, or the reason why that interval cannot be trusted at ``level``
        (`analysis.statistics.relative`).

    References
    ----------
    Welch (1947), "The generalization of 'Student's' problem when several different
    population variances are involved", Biometrika 34.
    Fieller (1954), "Some problems in interval estimation", JRSS B 16(2).
    """
    check_common(alternative=alternative, level=level)
    diff = variant_mean - control_mean
    se = math.sqrt(max(control_var + variant_var, 0.0))
    stat = z_statistic(diff, se)
    rel, rel_se, reason = relative_effect(
        control_mean=control_mean,
        control_var=control_var,
        variant_mean=variant_mean,
        variant_var=variant_var,
    )
    control_se = math.sqrt(max(control_var, 0.0))
    variant_se = math.sqrt(max(variant_var, 0.0))
    if reason is None:
        reason = relative_refusal(
            ArmEstimates(control_mean, control_se, variant_mean, variant_se),
            critical=critical_value(level, alternative, df),
        )
    return Effect(
        kind=kind,
        n_control=n_control,
        n_variant=n_variant,
        control_mean=control_mean,
        variant_mean=variant_mean,
        absolute_effect=diff,
        absolute_se=se,
        relative_effect=rel,
        relative_se=rel_se,
        relative_reason=reason,
        statistic=stat,
        p_value=p_value(stat, alternative, df),
        alternative=alternative,
        level=level,
        df=df,
        control_se=control_se,
        variant_se=variant_se,
    )


def welch_df(var_c: float, n_c: int, var_v: float, n_v: int) -> float:
    """Welch-Satterthwaite degrees of freedom from the per-arm variances of the means."""
    num = (var_c + var_v) ** 2
    den = var_c**2 / (n_c - 1) + var_v**2 / (n_v - 1)
    return num / den if den > 0 else math.inf


def mean_difference(
    *,
    control: SampleStats,
    variant: SampleStats,
    alternative: str = "two-sided",
    level: float = 0.95,
    distribution: Literal["normal", "t"] = "normal",
) -> Effect:
    """Difference of means with the unpooled (Welch) standard error.

    Parameters
    ----------
    control, variant : SampleStats
        Per-unit aggregates of each arm (n >= 2).
    alternative : {"two-sided", "greater", "less"}
        "greater" tests variant mean > control mean.
    level : float
        Confidence level of the intervals.
    distribution : {"normal", "t"}
        Reference distribution: the normal (z test, default) or Welch's t.

    Returns
    -------
    Effect
        ``kind="mean"``.

    Raises
    ------
    InvalidInput
        An arm has fewer than 2 units, or a bad alternative / level.

    References
    ----------
    Welch (1947), Biometrika 34; agrees with ``scipy.stats.ttest_ind(equal_var=False)``
    for ``distribution="t"``.

    Examples
    --------
    >>> c = SampleStats.from_values([1.0, 2.0, 3.0, 4.0])
    >>> v = SampleStats.from_values([2.0, 3.0, 4.0, 5.0])
    >>> round(mean_difference(control=c, variant=v).absolute_effect, 6)
    1.0
    """
    _check_n(control.n, "control")
    _check_n(variant.n, "variant")
    if distribution not in ("normal", "t"):
        raise InvalidInput("distribution must be 'normal' or 't'", field="distribution")
    var_c = control.variance / control.n
    var_v = variant.variance / variant.n
    df = welch_df(var_c, control.n, var_v, variant.n) if distribution == "t" else None
    return effect_from_means(
        kind="mean",
        n_control=control.n,
        n_variant=variant.n,
        control_mean=control.mean,
        control_var=var_c,
        variant_mean=variant.mean,
        variant_var=var_v,
        alternative=alternative,
        level=level,
        df=df,
    )


def proportion_difference(
    *,
    control: SampleStats,
    variant: SampleStats,
    alternative: str = "two-sided",
    level: float = 0.95,
    pooled: bool = False,
) -> Effect:
    """Two-proportion z test of conversion rates (``sum`` = converted units).

    Parameters
    ----------
    control, variant : SampleStats
        ``n`` units of which ``sum`` converted (0/1 per unit).
    alternative : {"two-sided", "greater", "less"}
        "greater" tests variant rate > control rate.
    level : float
        Confidence level of the intervals.
    pooled : bool
        Use the pooled rate for the test statistic's SE (the classic z test,
        ``statsmodels.stats.proportion.proportions_ztest``).  The default unpooled Wald
        SE ``sqrt(p_c(1-p_c)/n_c + p_v(1-p_v)/n_v)`` is used by the intervals in both
        cases, and for the test too when False, so the CI excludes 0 exactly when p < alpha.

    Returns
    -------
    Effect
        ``kind="binomial"``.

    References
    ----------
    Agresti (2013), Categorical Data Analysis, §1.4 and §3.1.  Agrees with
    ``statsmodels.stats.proportion.test_proportions_2indep(method="wald")`` (unpooled) and
    ``proportions_ztest`` (pooled).
    """
    for arm, name in ((control, "control"), (variant, "variant")):
        _check_n(arm.n, name, minimum=1)
        if not 0 <= arm.sum <= arm.n:
            raise InvalidInput(
                f"conversions must lie in [0, n], got {arm.sum} of {arm.n}", field=name
            )
    p_c, p_v = control.sum / control.n, variant.sum / variant.n
    var_c = p_c * (1 - p_c) / control.n
    var_v = p_v * (1 - p_v) / variant.n
    effect = effect_from_means(
        kind="binomial",
        n_control=control.n,
        n_variant=variant.n,
        control_mean=p_c,
        control_var=var_c,
        variant_mean=p_v,
        variant_var=var_v,
        alternative=alternative,
        level=level,
    )
    if not pooled:
        return effect
    p = (control.sum + variant.sum) / (control.n + variant.n)
    se0 = math.sqrt(p * (1 - p) * (1 / control.n + 1 / variant.n))
    stat = z_statistic(p_v - p_c, se0)
    return replace(effect, statistic=stat, p_value=p_value(stat, alternative, None))


def ratio_mean_and_var(stats_: PairedStats) -> tuple[float, float]:
    """A ratio metric ``Σy / Σx`` of one arm and its delta-method sampling variance.

    ``Var(ȳ/x̄) ≈ (s_y² - 2 R s_xy + R² s_x²) / (n x̄²)`` with ``R = ȳ/x̄``.

    References
    ----------
    Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics", KDD, §3.
    """
    _check_n(stats_.n, "ratio")
    x_bar = stats_.sum_x / stats_.n
    if x_bar == 0:
        raise InvalidInput("the denominator sums to 0: the ratio is undefined", field="den")
    r = stats_.sum_y / stats_.sum_x
    s_yy, s_xx, s_xy = stats_.y.variance, stats_.x.variance, stats_.covariance
    var = (s_yy - 2 * r * s_xy + r * r * s_xx) / (stats_.n * x_bar * x_bar)
    return r, max(var, 0.0)


def ratio_difference(
    *,
    control: PairedStats,
    variant: PairedStats,
    alternative: str = "two-sided",
    level: float = 0.95,
) -> Effect:
    """Difference of ratio metrics (``y`` = numerator, ``x`` = denominator per unit).

    Parameters
    ----------
    control, variant : PairedStats
        Per-unit numerator/denominator aggregates of each arm (e.g. clicks/sessions).
    alternative, level
        As in `mean_difference`.

    Returns
    -------
    Effect
        ``kind="ratio"``; ``control_mean`` and ``variant_mean`` are ``Σy/Σx`` per arm.

    Raises
    ------
    InvalidInput
        Fewer than 2 units in an arm, or a denominator summing to 0.

    References
    ----------
    Deng, Knoblich & Lu (2018), "Applying the Delta Method in Metric Analytics", KDD.
    """
    r_c, var_c = ratio_mean_and_var(control)
    r_v, var_v = ratio_mean_and_var(variant)
    return effect_from_means(
        kind="ratio",
        n_control=control.n,
        n_variant=variant.n,
        control_mean=r_c,
        control_var=var_c,
        variant_mean=r_v,
        variant_var=var_v,
        alternative=alternative,
        level=level,
    )


__all__ = [
    "TINY_CONTROL_REASON",
    "ZERO_CONTROL_REASON",
    "NonInferiority",
    "effect_from_means",
    "mean_difference",
    "non_inferiority",
    "proportion_difference",
    "ratio_difference",
    "relative_effect",
]
