"""Validated inputs of `analysis.planning.power`, reduced to the arrays the numerical core needs.

Private.  Each public function of `analysis.planning.power` calls `setup` (the options every metric
shares) and one of the metric helpers here; all checks raise `abtest.errors.InvalidInput`
naming the argument, so the CLI and the service report them as exit 2 / HTTP 400.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from abtest.errors import InvalidInput
from analysis.planning import curves as pm
from analysis.planning.curves import FloatArray


@dataclass(frozen=True)
class Setup:
    """Options shared by every metric, after the family-wise and guardrail adjustments."""

    alpha: FloatArray  # per comparison
    power: FloatArray  # per test
    ratio: FloatArray
    variance_factor: FloatArray  # 1 - rho^2
    alternative: str
    variants: int
    test: str

    @property
    def two_sided(self) -> bool:
        """Whether the test rejects in both tails."""
        return self.alternative == "two-sided"

    @property
    def sign(self) -> float:
        """Direction of the alternative effect: -1 for "less", else +1."""
        return -1.0 if self.alternative == "less" else 1.0


@dataclass(frozen=True)
class Design:
    """One fully specified test: the `_power_math` arrays plus the setup."""

    setup: Setup
    dist: FloatArray  # |true effect - null value|, absolute units
    s0: FloatArray  # sd of the difference times sqrt(n_control), under H0
    s1: FloatArray  # same under H1
    sd: FloatArray  # per-unit sd for the t-test (common variance)


def setup(
    *,
    alpha: ArrayLike,
    power: ArrayLike | None,
    alternative: str,
    ratio: ArrayLike,
    variants: int,
    correction: str,
    cuped_rho: ArrayLike,
    n_guardrails: int,
    test: str,
    non_inferiority: bool = False,
) -> Setup:
    """Validate and adjust the options common to all metrics (``power=None``: not needed)."""
    pm.check_choice(alternative, pm.ALTERNATIVES, "alternative")
    pm.check_choice(correction, pm.CORRECTIONS, "correction")
    pm.check_choice(test, pm.TESTS, "test")
    pm.check_count(variants, "variants", 1)
    pm.check_count(n_guardrails, "n_guardrails", 0)
    if non_inferiority and alternative == "two-sided":
        raise InvalidInput(
            "a non-inferiority test is one-sided: use 'greater' (higher is better) or 'less'",
            "alternative",
        )
    a = pm.as_float(alpha, "alpha")
    pm.require((a > 0) & (a <= 0.5), a, "alpha", "in (0, 0.5]")
    r = pm.as_float(ratio, "ratio")
    pm.require((r > 0) & np.isfinite(r), r, "ratio", "a positive finite number")
    rho = pm.as_float(cuped_rho, "cuped_rho")
    pm.require(np.abs(rho) < 1, rho, "cuped_rho", "in (-1, 1)")
    if power is None:
        p = np.full_like(a, np.nan)
    else:
        p = pm.as_float(power, "power")
        pm.require((p > 0) & (p < 1), p, "power", "in (0, 1)")
        pm.require(p > a, p, "power", "greater than alpha")
        p = pm.guardrail_power(p, n_guardrails)
    return Setup(
        alpha=pm.per_comparison_alpha(a, variants, correction),
        power=p,
        ratio=r,
        variance_factor=1.0 - rho * rho,
        alternative=alternative,
        variants=variants,
        test=test,
    )


def absolute(
    value: ArrayLike, baseline: FloatArray | None, relative: bool, field: str
) -> FloatArray:
    """``value`` in metric units: times ``|baseline|`` when ``relative``."""
    v = pm.as_float(value, field)
    if not relative:
        return v
    if baseline is None:
        raise InvalidInput(f"a relative {field} needs a baseline", "baseline")
    pm.require(baseline != 0, baseline, "baseline", "non-zero for a relative effect")
    return np.asarray(v * np.abs(baseline), dtype=np.float64)


def effect_and_null(
    s: Setup, effect: FloatArray, margin: FloatArray | None, name: str = "mde"
) -> tuple[FloatArray, FloatArray]:
    """Signed true effect and null value: (sign*mde, 0) or NI (sign*mde, -sign*margin)."""
    pm.require(np.isfinite(effect), effect, name, "finite")
    if margin is None:
        pm.require(effect > 0, effect, name, "> 0")
        return s.sign * effect, np.zeros_like(effect)
    pm.require((margin > 0) & np.isfinite(margin), margin, "non_inferiority_margin", "> 0")
    pm.require(
        effect + margin > 0,
        effect,
        name,
        "greater than -non_inferiority_margin (the "
        "assumed true effect must lie on the non-inferior side of the margin)",
    )
    return s.sign * effect, -s.sign * margin


def proportion_sds(
    p1: FloatArray,
    p2: FloatArray,
    ratio: FloatArray,
    variance_factor: FloatArray,
    *,
    pooled: bool,
) -> tuple[FloatArray, FloatArray]:
    """``s0, s1`` of a difference of proportions (times sqrt(n_control)).

    Under H1 the unpooled ``p1 q1 + p2 q2 / r``; under H0 the pooled
    ``pbar qbar (1 + 1/r)`` with ``pbar = (p1 + r p2) / (1 + r)`` when ``pooled``
    (superiority, Fleiss), else the unpooled one (non-inferiority, Chow, Shao & Wang).
    """
    r = ratio
    var1 = (p1 * (1 - p1) + p2 * (1 - p2) / r) * variance_factor
    if pooled:
        pbar = (p1 + r * p2) / (1 + r)
        var0 = pbar * (1 - pbar) * (1 + 1 / r) * variance_factor
    else:
        var0 = var1
    return np.sqrt(var0), np.sqrt(var1)


def check_proportion(baseline: ArrayLike) -> FloatArray:
    """A baseline conversion rate strictly inside (0, 1)."""
    p = pm.as_float(baseline, "baseline")
    pm.require((p > 0) & (p < 1), p, "baseline", "in (0, 1) for a proportion")
    return p


def proportion_design(
    s: Setup,
    baseline: FloatArray,
    effect: FloatArray,
    margin: FloatArray | None,
    name: str = "mde",
) -> Design:
    """A difference of two proportions: control ``baseline``, treatment ``baseline + effect``."""
    delta, delta0 = effect_and_null(s, effect, margin, name)
    p2 = baseline + delta
    pm.require(
        (p2 >= 0) & (p2 <= 1),
        p2,
        name,
        "",
        message="pushes the treatment proportion outside [0, 1] (to {value:g})",
    )
    s0, s1 = proportion_sds(baseline, p2, s.ratio, s.variance_factor, pooled=margin is None)
    return Design(setup=s, dist=np.abs(delta - delta0), s0=s0, s1=s1, sd=s1)


def check_std(std: ArrayLike, field: str) -> FloatArray:
    """A positive finite standard deviation."""
    sd = pm.as_float(std, field)
    pm.require((sd > 0) & np.isfinite(sd), sd, field, "a positive finite number")
    return sd


def mean_sd(s: Setup, std: FloatArray, std_treatment: FloatArray | None) -> FloatArray:
    """``sqrt(var_c + var_t / r)`` after CUPED: the sd of the difference times sqrt(n_c)."""
    var_t = std * std if std_treatment is None else std_treatment * std_treatment
    if std_treatment is not None and s.test == "t":
        raise InvalidInput(
            "the t-test assumes one common std; leave std_treatment unset or use test='z'",
            "std_treatment",
        )
    return np.asarray(np.sqrt((std * std + var_t / s.ratio) * s.variance_factor), np.float64)


def mean_design(
    s: Setup,
    *,
    sd_diff: FloatArray,
    std: FloatArray,
    effect: FloatArray,
    margin: FloatArray | None,
    name: str = "mde",
) -> Design:
    """A difference of means with a known (common or per-arm) standard deviation."""
    delta, delta0 = effect_and_null(s, effect, margin, name)
    sd_unit = np.asarray(std * np.sqrt(s.variance_factor), dtype=np.float64)
    return Design(setup=s, dist=np.abs(delta - delta0), s0=sd_diff, s1=sd_diff, sd=sd_unit)


def ratio_moments(
    *,
    mean_numerator: ArrayLike,
    mean_denominator: ArrayLike,
    var_numerator: ArrayLike,
    var_denominator: ArrayLike,
    covariance: ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Baseline ratio ``mu_Y / mu_X`` and its per-unit delta-method sd (Deng et al. 2018)."""
    mu_y = pm.as_float(mean_numerator, "mean_numerator")
    mu_x = pm.as_float(mean_denominator, "mean_denominator")
    var_y = pm.as_float(var_numerator, "var_numerator")
    var_x = pm.as_float(var_denominator, "var_denominator")
    cov = pm.as_float(covariance, "covariance")
    pm.require(mu_x != 0, mu_x, "mean_denominator", "non-zero")
    pm.require(var_y >= 0, var_y, "var_numerator", ">= 0")
    pm.require(var_x >= 0, var_x, "var_denominator", ">= 0")
    pm.require(
        cov * cov <= var_x * var_y * (1 + 1e-9),
        cov,
        "covariance",
        "at most sqrt(var_numerator * var_denominator) in absolute value",
    )
    ratio = mu_y / mu_x
    var = (var_y - 2 * ratio * cov + ratio * ratio * var_x) / (mu_x * mu_x)
    sd = np.sqrt(np.maximum(var, 0.0))
    pm.require(
        sd > 0, sd, "var_numerator", "", message="gives the ratio a zero variance (sd {value:g})"
    )
    return np.asarray(ratio, np.float64), np.asarray(sd, np.float64)
