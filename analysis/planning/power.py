"""Planning an experiment: sample size, minimum detectable effect, power and duration.

Three metric types share one vocabulary:

- ``*_proportion``: a conversion rate, ``baseline`` in (0, 1);
- ``*_mean``: a per-unit mean with standard deviation ``std``;
- ``*_ratio``: a ratio of per-unit sums (clicks per session), whose per-unit variance
  comes from the delta method (`ratio_metric_variance`).

Conventions, identical in every function (all keyword-only, stateless, and broadcasting
over numpy arrays so a grid of scenarios is one call):

- ``n_per_variant`` is the size of the control arm; each treatment arm has
  ``ratio * n_per_variant`` units (``ratio`` = treatment / control, as statsmodels'
  ``ratio = nobs2 / nobs1``); ``variants`` treatment arms are each compared with control.
- ``alternative`` is SciPy's ``"two-sided" | "greater" | "less"``: "greater" means the
  treatment should raise the metric.  ``mde`` / ``effect`` are positive magnitudes in the
  direction of the alternative ("two-sided" sizes for an increase), absolute unless
  ``relative=True`` (then a fraction of ``baseline``).
- ``alpha`` is family-wise over the ``variants`` comparisons: by default Bonferroni,
  ``alpha / variants`` per comparison (``correction="sidak" | "none"`` exist).
- ``cuped_rho`` is the correlation between the metric and its pre-period covariate; CUPED
  multiplies every variance by ``1 - rho^2`` (Deng, Xu, Kohavi & Walker 2013).
- ``n_guardrails`` raises the power of each test to ``1 - (1 - power) / (G + 1)`` so the
  primary test and all G guardrail (non-inferiority) tests are jointly powered
  (Schultzberg, Ankargren & Franberg 2024; spotify-confidence ``add_adjusted_power``).
- ``non_inferiority_margin`` turns the test into a one-sided non-inferiority test against
  the margin; ``mde`` is then the assumed true effect (default 0).
- Integer sample sizes are rounded up.  Bad inputs raise `abtest.errors.InvalidInput`.

Which formula each function uses is stated in its docstring.  Ratio metrics live in
`analysis.planning.ratio_metric`, durations and the "MDE after 7/14/21/28 days" table in
`analysis.planning.duration`, the numerics in ``analysis.planning.curves`` and the input checks in
``analysis.planning.designs``; `analysis` re-exports every public name.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from analysis.planning import curves as pm
from analysis.planning import designs
from analysis.planning.curves import Alternative, Correction, FloatArray, Test
from analysis.planning.designs import Design, Setup
from analysis.planning.results import (
    MinimumDetectableEffect,
    SampleSize,
    mde_result,
    mde_value,
    n_input,
    solve_mde_common_sd,
    solve_n,
    solve_power,
)

__all__ = [
    "MinimumDetectableEffect",
    "SampleSize",
    "guardrail_adjusted_power",
    "minimum_detectable_effect_mean",
    "minimum_detectable_effect_proportion",
    "power_mean",
    "power_proportion",
    "sample_size_mean",
    "sample_size_proportion",
]


def guardrail_adjusted_power(*, power: ArrayLike, n_guardrails: int) -> FloatArray:
    """Power each test needs so that a success metric and its guardrails are jointly powered.

    Parameters
    ----------
    power : array_like
        Intended probability that the whole decision rule (one success metric and
        ``n_guardrails`` non-inferiority guardrails) detects what it should.
    n_guardrails : int
        Number of guardrail metrics.

    Returns
    -------
    ndarray
        ``1 - (1 - power) / (n_guardrails + 1)``: a Bonferroni bound on the type II errors.

    References
    ----------
    M. Schultzberg, S. Ankargren, M. Franberg, "Risk-aware product decisions in A/B tests
    with multiple metrics", arXiv:2402.11609 (2024); spotify-confidence
    ``multiple_comparison.add_adjusted_power`` (``power_correction = G + 1``).

    Examples
    --------
    >>> float(guardrail_adjusted_power(power=0.8, n_guardrails=3))
    0.95
    """
    pm.check_count(n_guardrails, "n_guardrails", 0)
    p = pm.as_float(power, "power")
    pm.require((p > 0) & (p < 1), p, "power", "in (0, 1)")
    return pm.guardrail_power(p, n_guardrails)


# ---------------------------------------------------------------------------------------
# proportions
# ---------------------------------------------------------------------------------------


def _proportion(
    s: Setup,
    *,
    baseline: ArrayLike,
    mde: ArrayLike | None,
    relative: bool,
    margin: ArrayLike | None,
    name: str,
) -> Design:
    p = designs.check_proportion(baseline)
    effect = designs.absolute(mde_value(mde, margin, name), p, relative, name)
    m = None if margin is None else designs.absolute(margin, p, relative, "non_inferiority_margin")
    return designs.proportion_design(s, p, effect, m, name)


def sample_size_proportion(
    *,
    baseline: ArrayLike,
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
) -> SampleSize:
    """Units per variant to detect a change of a conversion rate (two-proportion z-test).

    Superiority: variance pooled under H0 and unpooled under H1 (Fleiss),
    ``n_c = (z_a sqrt(pbar qbar (1 + 1/r)) + z_b sqrt(p1 q1 + p2 q2 / r))^2 / (p2 - p1)^2``
    with ``pbar = (p1 + r p2) / (1 + r)``; the two-sided root also counts the opposite tail,
    exactly as statsmodels ``power_proportions_2indep`` (``normal_power_het``).
    Non-inferiority: unpooled variance under both hypotheses, ``n_c = (z_a + z_b)^2
    (p1 q1 + p2 q2 / r) / (p2 - p1 + margin)^2`` (Chow, Shao & Wang, sec. 4.2).

    Parameters
    ----------
    baseline : array_like
        Control conversion rate ``p1`` in (0, 1).
    mde : array_like
        Effect to detect, ``p2 = p1 + mde`` (``p1 - mde`` for "less"); with a
        non-inferiority margin, the assumed true effect (default 0).
    relative : bool
        ``mde`` and the margin are fractions of ``baseline``.
    alpha, power, alternative, ratio, variants, correction, cuped_rho, n_guardrails
        See the module docstring.
    non_inferiority_margin : array_like, optional
        Largest tolerated loss; the test becomes one-sided against ``-margin``.

    Returns
    -------
    SampleSize

    Raises
    ------
    abtest.errors.InvalidInput
        A baseline outside (0, 1), an effect pushing ``p2`` outside [0, 1], and any other
        out-of-range argument.

    References
    ----------
    J. L. Fleiss, B. Levin, M. C. Paik, *Statistical Methods for Rates and Proportions*,
    3rd ed., Wiley 2003, sec. 4.2 (eq. 4.14, 4.19).
    S.-C. Chow, J. Shao, H. Wang, *Sample Size Calculations in Clinical Research*, 2nd ed.,
    Chapman & Hall 2008, sec. 4.2.

    Examples
    --------
    >>> int(sample_size_proportion(baseline=0.10, mde=0.01).n_per_variant)
    14751
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
        test="z",
        non_inferiority=non_inferiority_margin is not None,
    )
    return solve_n(
        _proportion(
            s,
            baseline=baseline,
            mde=mde,
            relative=relative,
            margin=non_inferiority_margin,
            name="mde",
        )
    )


def power_proportion(
    *,
    baseline: ArrayLike,
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
) -> FloatArray:
    """Power of the two-proportion z-test at ``n_per_variant`` for a true ``effect``.

    The same test and variances as `sample_size_proportion`:
    ``Phi((d sqrt(n) - z_a s0) / s1)`` plus, two-sided, the opposite tail
    ``Phi((-d sqrt(n) - z_a s0) / s1)`` (statsmodels ``power_proportions_2indep``).

    Examples
    --------
    >>> round(float(power_proportion(baseline=0.10, effect=0.01, n_per_variant=14751)), 4)
    0.8
    """
    s = designs.setup(
        alpha=alpha,
        power=None,
        alternative=alternative,
        ratio=ratio,
        variants=variants,
        correction=correction,
        cuped_rho=cuped_rho,
        n_guardrails=0,
        test="z",
        non_inferiority=non_inferiority_margin is not None,
    )
    design = _proportion(
        s,
        baseline=baseline,
        mde=effect,
        relative=relative,
        margin=non_inferiority_margin,
        name="effect",
    )
    return solve_power(design, n_per_variant)


def minimum_detectable_effect_proportion(
    *,
    baseline: ArrayLike,
    n_per_variant: ArrayLike,
    alpha: ArrayLike = 0.05,
    power: ArrayLike = 0.8,
    alternative: Alternative = "two-sided",
    ratio: ArrayLike = 1.0,
    variants: int = 1,
    correction: Correction = "bonferroni",
    cuped_rho: ArrayLike = 0.0,
    n_guardrails: int = 0,
) -> MinimumDetectableEffect:
    """Smallest change of a conversion rate detectable at ``n_per_variant`` (superiority).

    Inverts `power_proportion`: the variances depend on the effect, so the root is found
    by a whole-array bracketed search over ``(0, 1 - p1]`` (``(0, p1]`` for "less").
    Where even the largest possible effect is under-powered the result is nan.

    Examples
    --------
    >>> round(float(minimum_detectable_effect_proportion(
    ...     baseline=0.10, n_per_variant=14751).absolute), 5)
    0.01
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
        test="z",
    )
    p = designs.check_proportion(baseline)
    n = n_input(n_per_variant)
    crit = pm.critical_z(s.alpha, s.two_sided)
    room = 1.0 - p if s.sign > 0 else p

    def power_at(fraction: FloatArray, params: list[FloatArray]) -> FloatArray:
        p_, room_, n_, ratio_, vf_, crit_ = params
        delta = fraction * room_
        s0, s1 = designs.proportion_sds(p_, p_ + s.sign * delta, ratio_, vf_, pooled=True)
        return pm.z_power(delta, s0, s1, n_, crit_, two_sided=s.two_sided)

    # The root is searched on the fraction of the room to the boundary, so every probe
    # stays inside [0, 1].
    params = (p, room, n, s.ratio, s.variance_factor, crit)
    reachable = power_at(np.ones_like(room), list(params)) >= s.power
    fraction = pm.solve_increasing(power_at, np.where(reachable, s.power, -1.0), 0.0, 1.0, *params)
    absolute = np.where(reachable, fraction * room, np.nan)
    return mde_result(s, np.asarray(absolute, np.float64), n, p)


# ---------------------------------------------------------------------------------------
# means
# ---------------------------------------------------------------------------------------


def _mean(
    s: Setup,
    *,
    std: ArrayLike,
    std_treatment: ArrayLike | None,
    baseline: ArrayLike | None,
    mde: ArrayLike | None,
    relative: bool,
    margin: ArrayLike | None,
    name: str,
) -> Design:
    sd = designs.check_std(std, "std")
    sd_t = None if std_treatment is None else designs.check_std(std_treatment, "std_treatment")
    base = None if baseline is None else pm.as_float(baseline, "baseline")
    effect = designs.absolute(mde_value(mde, margin, name), base, relative, name)
    m = (
        None
        if margin is None
        else designs.absolute(margin, base, relative, "non_inferiority_margin")
    )
    return designs.mean_design(
        s, sd_diff=designs.mean_sd(s, sd, sd_t), std=sd, effect=effect, margin=m, name=name
    )


def sample_size_mean(
    *,
    std: ArrayLike,
    mde: ArrayLike | None = None,
    baseline: ArrayLike | None = None,
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
    std_treatment: ArrayLike | None = None,
    test: Test = "z",
) -> SampleSize:
    """Units per variant to detect a change of a mean.

    ``test="z"`` (default, large samples): ``n_c = (z_a + z_b)^2 (s_c^2 + s_t^2 / r) /
    delta^2`` (Chow, Shao & Wang, sec. 3.2), the two-sided root counting the opposite tail;
    identical to statsmodels ``NormalIndPower`` / ``zt_ind_solve_power`` with effect size
    ``delta / std``.  ``test="t"``: the exact root of the noncentral-t power of the pooled
    two-sample t-test (``df = n1 + n2 - 2``), identical to statsmodels ``TTestIndPower``
    and G*Power; it gives 64 per group for d = 0.5, alpha 0.05, power 0.8 (the z formula
    gives 63).

    Parameters
    ----------
    std : array_like
        Per-unit standard deviation (control; also treatment unless ``std_treatment``).
    mde : array_like
        Effect to detect (or, with a margin, the assumed true effect; default 0).
    baseline : array_like, optional
        Control mean; needed only for ``relative=True``.
    std_treatment : array_like, optional
        Treatment standard deviation for a Welch-type z design (not with ``test="t"``).
    test : {"z", "t"}
        Normal approximation or exact t-test power.

    Returns
    -------
    SampleSize

    References
    ----------
    S.-C. Chow, J. Shao, H. Wang, *Sample Size Calculations in Clinical Research*, 2nd ed.,
    2008, sec. 3.2.  J. Cohen, *Statistical Power Analysis for the Behavioral Sciences*,
    2nd ed., 1988, ch. 2 (table 2.4.1).  Faul et al., "G*Power 3", Behav. Res. Methods
    39 (2007).  Deng, Xu, Kohavi & Walker, "Improving the sensitivity of online controlled
    experiments by utilizing pre-experiment data" (CUPED), WSDM 2013.

    Examples
    --------
    >>> int(sample_size_mean(std=1.0, mde=0.5, test="t").n_per_variant)
    64
    >>> int(sample_size_mean(std=1.0, mde=0.5).n_per_variant)
    63
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
    return solve_n(
        _mean(
            s,
            std=std,
            std_treatment=std_treatment,
            baseline=baseline,
            mde=mde,
            relative=relative,
            margin=non_inferiority_margin,
            name="mde",
        )
    )


def power_mean(
    *,
    std: ArrayLike,
    effect: ArrayLike | None = None,
    n_per_variant: ArrayLike,
    baseline: ArrayLike | None = None,
    relative: bool = False,
    alpha: ArrayLike = 0.05,
    alternative: Alternative = "two-sided",
    ratio: ArrayLike = 1.0,
    variants: int = 1,
    correction: Correction = "bonferroni",
    cuped_rho: ArrayLike = 0.0,
    non_inferiority_margin: ArrayLike | None = None,
    std_treatment: ArrayLike | None = None,
    test: Test = "z",
) -> FloatArray:
    """Power of the two-sample z- or t-test of means at ``n_per_variant`` for ``effect``.

    z: ``Phi(d sqrt(n) / s - z_a)`` (+ opposite tail), statsmodels ``NormalIndPower.power``;
    t: noncentral t, statsmodels ``TTestIndPower.power``.

    Examples
    --------
    >>> round(float(power_mean(std=1.0, effect=0.5, n_per_variant=64, test="t")), 4)
    0.8015
    """
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
    design = _mean(
        s,
        std=std,
        std_treatment=std_treatment,
        baseline=baseline,
        mde=effect,
        relative=relative,
        margin=non_inferiority_margin,
        name="effect",
    )
    return solve_power(design, n_per_variant)


def minimum_detectable_effect_mean(
    *,
    std: ArrayLike,
    n_per_variant: ArrayLike,
    baseline: ArrayLike | None = None,
    alpha: ArrayLike = 0.05,
    power: ArrayLike = 0.8,
    alternative: Alternative = "two-sided",
    ratio: ArrayLike = 1.0,
    variants: int = 1,
    correction: Correction = "bonferroni",
    cuped_rho: ArrayLike = 0.0,
    n_guardrails: int = 0,
    std_treatment: ArrayLike | None = None,
    test: Test = "z",
) -> MinimumDetectableEffect:
    """Smallest change of a mean detectable at ``n_per_variant`` (sensitivity).

    z: ``(z_a + z_b) sqrt(s_c^2 + s_t^2 / r) / sqrt(n)`` refined for the two-sided opposite
    tail (statsmodels ``NormalIndPower.solve_power(effect_size=None)``); t: a root search on
    the noncentral-t power (``TTestIndPower``).  ``relative`` is nan without ``baseline``.

    Examples
    --------
    >>> round(float(minimum_detectable_effect_mean(std=1.0, n_per_variant=64,
    ...     test="t").absolute), 3)
    0.499
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
    sd = designs.check_std(std, "std")
    sd_t = None if std_treatment is None else designs.check_std(std_treatment, "std_treatment")
    base = None if baseline is None else pm.as_float(baseline, "baseline")
    sd_unit = np.asarray(sd * np.sqrt(s.variance_factor), np.float64)
    return solve_mde_common_sd(
        s, designs.mean_sd(s, sd, sd_t), sd_unit, n_input(n_per_variant), base
    )
