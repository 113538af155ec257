"""Planning for ratio metrics (clicks per session, revenue per order): the delta method.

A ratio metric ``R = sum(Y) / sum(X)`` over units is, for planning, a mean metric with
baseline ``mu_Y / mu_X`` and the per-unit delta-method standard deviation of
`ratio_metric_variance`; every option and convention is that of `analysis.planning.power`
(``n_per_variant`` counts units, the randomisation unit, not denominator events).
"""

from __future__ import annotations

from numpy.typing import ArrayLike

from analysis.planning import designs
from analysis.planning.curves import Alternative, Correction, FloatArray, Test
from analysis.planning.designs import Design, Setup
from analysis.planning.results import (
    MinimumDetectableEffect,
    SampleSize,
    mde_value,
    n_input,
    solve_mde_common_sd,
    solve_n,
    solve_power,
)

__all__ = [
    "minimum_detectable_effect_ratio",
    "power_ratio",
    "ratio_metric_variance",
    "sample_size_ratio",
]


def ratio_metric_variance(
    *,
    mean_numerator: ArrayLike,
    mean_denominator: ArrayLike,
    var_numerator: ArrayLike,
    var_denominator: ArrayLike,
    covariance: ArrayLike,
) -> FloatArray:
    """Per-unit variance of a ratio metric ``R = E[Y] / E[X]`` by the delta method.

    ``n * Var(R_hat) ~ (var_Y - 2 R cov_XY + R^2 var_X) / mu_X^2``.

    References
    ----------
    A. Deng, U. Knoblich, J. Lu, "Applying the Delta Method in Metric Analytics", KDD 2018,
    sec. 3 (eq. 2).

    Examples
    --------
    >>> round(float(ratio_metric_variance(mean_numerator=2.0, mean_denominator=4.0,
    ...     var_numerator=1.0, var_denominator=4.0, covariance=0.0)), 12)
    0.125
    """
    moments = designs.ratio_moments(
        mean_numerator=mean_numerator,
        mean_denominator=mean_denominator,
        var_numerator=var_numerator,
        var_denominator=var_denominator,
        covariance=covariance,
    )
    return moments[1] ** 2


def _ratio(
    s: Setup,
    *,
    moments: tuple[FloatArray, FloatArray],
    mde: ArrayLike | None,
    relative: bool,
    margin: ArrayLike | None,
    name: str,
) -> Design:
    baseline, sd = moments
    effect = designs.absolute(mde_value(mde, margin, name), baseline, relative, name)
    m = (
        None
        if margin is None
        else designs.absolute(margin, baseline, relative, "non_inferiority_margin")
    )
    return designs.mean_design(
        s, sd_diff=designs.mean_sd(s, sd, None), std=sd, effect=effect, margin=m, name=name
    )


def sample_size_ratio(
    *,
    mean_numerator: ArrayLike,
    mean_denominator: ArrayLike,
    var_numerator: ArrayLike,
    var_denominator: ArrayLike,
    covariance: ArrayLike,
    mde: ArrayLike | None = None,
    relative: bool = False,
    alpha: ArrayLike = 0.05,
    power: ArrayLike = 0.8,
    alternative: Alternative = "two-sided",
    ratio: ArrayLike = 1.0,
    variants: int = 1,
    correction: Correction = "bonferroni",
    cuped_rho: ArrayLike = 0.0,
    non_inferiority_margin: ArrayLike | None = None,
    n_guardrails: int = 0,
    test: Test = "z",
) -> SampleSize:
    """Units per variant to detect a change of a ratio metric ``mu_Y / mu_X``.

    `analysis.power.sample_size_mean` with ``baseline = mu_Y / mu_X`` and
    ``std = sqrt(ratio_metric_variance(...))`` (delta method, Deng et al. 2018), the
    treatment arm assumed to have the same per-unit variance.

    Parameters
    ----------
    mean_numerator, mean_denominator : array_like
        Per-unit means of the numerator Y and the denominator X (X non-zero).
    var_numerator, var_denominator, covariance : array_like
        Per-unit variances of Y and X and their covariance.
    mde, relative, alpha, power, alternative, ratio, variants, correction, cuped_rho,
    non_inferiority_margin, n_guardrails, test
        As in `analysis.power.sample_size_mean`; a relative ``mde`` is a fraction of the
        baseline ratio.

    Returns
    -------
    SampleSize

    References
    ----------
    A. Deng, U. Knoblich, J. Lu, "Applying the Delta Method in Metric Analytics", KDD 2018.

    Examples
    --------
    >>> int(sample_size_ratio(mean_numerator=2.0, mean_denominator=4.0, var_numerator=1.0,
    ...     var_denominator=4.0, covariance=0.0, mde=0.05, relative=True).n_per_variant)
    3140
    """
    s = designs.setup(
        alpha=alpha,
        power=power,
        alternative=alternative,
        ratio=ratio,
        variants=variants,
        correction=correction,
        cuped_rho=cuped_rho,
        n_guardrails=n_guardrails,
        test=test,
        non_inferiority=non_inferiority_margin is not None,
    )
    moments = designs.ratio_moments(
        mean_numerator=mean_numerator,
        mean_denominator=mean_denominator,
        var_numerator=var_numerator,
        var_denominator=var_denominator,
        covariance=covariance,
    )
    return solve_n(
        _ratio(
            s,
            moments=moments,
            mde=mde,
            relative=relative,
            margin=non_inferiority_margin,
            name="mde",
        )
    )


def power_ratio(
    *,
    mean_numerator: ArrayLike,
    mean_denominator: ArrayLike,
    var_numerator: ArrayLike,
    var_denominator: ArrayLike,
    covariance: ArrayLike,
    effect: ArrayLike | None = None,
    n_per_variant: ArrayLike,
    relative: bool = False,
    alpha: ArrayLike = 0.05,
    alternative: Alternative = "two-sided",
    ratio: ArrayLike = 1.0,
    variants: int = 1,
    correction: Correction = "bonferroni",
    cuped_rho: ArrayLike = 0.0,
    non_inferiority_margin: ArrayLike | None = None,
    test: Test = "z",
) -> FloatArray:
    """Power for a ratio metric at ``n_per_variant`` units (see `sample_size_ratio`)."""
    s = designs.setup(
        alpha=alpha,
        power=None,
        alternative=alternative,
        ratio=ratio,
        variants=variants,
        correction=correction,
        cuped_rho=cuped_rho,
        n_guardrails=0,
        test=test,
        non_inferiority=non_inferiority_margin is not None,
    )
    moments = designs.ratio_moments(
        mean_numerator=mean_numerator,
        mean_denominator=mean_denominator,
        var_numerator=var_numerator,
        var_denominator=var_denominator,
        covariance=covariance,
    )
    design = _ratio(
        s,
        moments=moments,
        mde=effect,
        relative=relative,
        margin=non_inferiority_margin,
        name="effect",
    )
    return solve_power(design, n_per_variant)


def minimum_detectable_effect_ratio(
    *,
    mean_numerator: ArrayLike,
    mean_denominator: ArrayLike,
    var_numerator: ArrayLike,
    var_denominator: ArrayLike,
    covariance: ArrayLike,
    n_per_variant: ArrayLike,
    alpha: ArrayLike = 0.05,
    power: ArrayLike = 0.8,
    alternative: Alternative = "two-sided",
    ratio: ArrayLike = 1.0,
    variants: int = 1,
    correction: Correction = "bonferroni",
    cuped_rho: ArrayLike = 0.0,
    n_guardrails: int = 0,
    test: Test = "z",
) -> MinimumDetectableEffect:
    """Smallest change of a ratio metric detectable at ``n_per_variant`` units.

    `analysis.power.minimum_detectable_effect_mean` on the delta-method sd; ``relative``
    is a fraction of the baseline ratio.
    """
    s = designs.setup(
        alpha=alpha,
        power=power,
        alternative=alternative,
        ratio=ratio,
        variants=variants,
        correction=correction,
        cuped_rho=cuped_rho,
        n_guardrails=n_guardrails,
        test=test,
    )
    baseline, sd = designs.ratio_moments(
        mean_numerator=mean_numerator,
        mean_denominator=mean_denominator,
        var_numerator=var_numerator,
        var_denominator=var_denominator,
        covariance=covariance,
    )
    sd_unit = sd * s.variance_factor**0.5
    return solve_mde_common_sd(
        s, designs.mean_sd(s, sd, None), sd_unit, n_input(n_per_variant), baseline
    )
