"""Numerical core of `analysis.planning.power`: normal and t power curves and their inverses.

Private: the public, validated and documented API is `analysis.planning.power`.  Everything here is
vectorised over numpy arrays (broadcasting) and free of Python loops over scenarios; the
only loops are a fixed number of whole-array iterations.

A design is reduced to three arrays, all "per unit of the control arm":

- ``dist``: the distance between the true effect and the null value, ``|delta - delta0| > 0``;
- ``s0``, ``s1``: the standard deviation of the difference estimator times ``sqrt(n_control)``
  under the null and under the alternative, so ``SE = s / sqrt(n_control)``.

The test statistic is ``Z = (estimate - delta0) / SE0``; a one-sided test rejects when
``Z > z_{1-a}`` and a two-sided test when ``|Z| > z_{1-a/2}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import nctdtr, ndtr, ndtri, stdtrit

from abtest.errors import InvalidInput

Alternative = Literal["two-sided", "greater", "less"]
Correction = Literal["bonferroni", "sidak", "none"]
Test = Literal["z", "t"]
FloatArray = NDArray[np.float64]

ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater", "less")
CORRECTIONS: tuple[str, ...] = ("bonferroni", "sidak", "none")
TESTS: tuple[str, ...] = ("z", "t")

_FIXED_POINT_ITERATIONS = 60
_SOLVER_ITERATIONS = 100
_ROOT_WIDTH = 1e-13  # relative width at which a bracket counts as closed
_ROOT_POWER_TOLERANCE = 1e-15  # |power - target| that counts as a root
# Root finders stop at this relative change; ceil() then gets a tolerance of the same size
# so a root at 64 + 1e-13 (numerical noise) is 64, not 65.
_RELATIVE_TOLERANCE = 1e-10


# ---------------------------------------------------------------------------------------
# validation: one InvalidInput per problem, naming the field and the offending value
# ---------------------------------------------------------------------------------------


def as_float(value: ArrayLike, field: str) -> FloatArray:
    """``value`` as a float array, rejecting nan and non-numbers with `InvalidInput`."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"must be a number or an array of numbers, got {value!r}", field
        ) from exc
    if np.isnan(array).any():
        raise InvalidInput("must not be nan", field)
    return array


def require(
    ok: NDArray[np.bool_] | bool,
    values: ArrayLike,
    field: str,
    rule: str,
    *,
    message: str = "must be {rule}, got {value:g}",
) -> None:
    """Raise `InvalidInput` naming the first value of ``values`` where ``ok`` is false."""
    ok_array = np.asarray(ok)
    if ok_array.all():
        return
    shape = np.broadcast_shapes(ok_array.shape, np.shape(values))
    ok_full = np.broadcast_to(ok_array, shape)
    bad = np.broadcast_to(np.asarray(values, dtype=np.float64), shape)[~ok_full]
    raise InvalidInput(message.format(rule=rule, value=bad.flat[0]), field)


def check_choice(value: str, choices: tuple[str, ...], field: str) -> None:
    """Reject a string option outside ``choices``."""
    if value not in choices:
        raise InvalidInput(f"must be one of {', '.join(choices)}; got {value!r}", field)


def check_count(value: int, field: str, minimum: int) -> None:
    """Reject a non-integer or too-small count (variants, guardrails)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InvalidInput(f"must be an integer >= {minimum}, got {value!r}", field)


# ---------------------------------------------------------------------------------------
# alpha and power adjustments
# ---------------------------------------------------------------------------------------


def per_comparison_alpha(alpha: FloatArray, comparisons: int, correction: str) -> FloatArray:
    """Family-wise alpha split over ``comparisons`` tests (Bonferroni, Sidak or none)."""
    if correction == "bonferroni":
        return alpha / comparisons
    if correction == "sidak":
        return -np.expm1(np.log1p(-alpha) / comparisons)
    return alpha


def guardrail_power(power: FloatArray, n_guardrails: int) -> FloatArray:
    """Power of each test so all ``n_guardrails + 1`` tests are powered: 1 - beta / (G + 1)."""
    return 1.0 - (1.0 - power) / (n_guardrails + 1)


def critical_z(alpha: FloatArray, two_sided: bool) -> FloatArray:
    """Upper critical value of the standard normal; ``-ndtri(a)`` keeps precision at tiny a."""
    return -ndtri(alpha / 2.0 if two_sided else alpha)


# ---------------------------------------------------------------------------------------
# normal (z) test
# ---------------------------------------------------------------------------------------


def z_power(
    dist: FloatArray,
    s0: FloatArray,
    s1: FloatArray,
    n: FloatArray,
    crit: FloatArray,
    *,
    two_sided: bool,
) -> FloatArray:
    """Power of the z-test; the two-sided version includes the (small) opposite tail."""
    u = np.sqrt(n)
    power = ndtr((dist * u - crit * s0) / s1)
    if two_sided:
        power = power + ndtr((-dist * u - crit * s0) / s1)
    return np.asarray(power, dtype=np.float64)


def z_sample_size(
    dist: FloatArray,
    s0: FloatArray,
    s1: FloatArray,
    power: FloatArray,
    crit: FloatArray,
    *,
    two_sided: bool,
) -> FloatArray:
    """Continuous n_control at which `z_power` equals ``power``.

    One-sided: the closed form ``((z_a s0 + z_b s1) / dist)^2``.  Two-sided: start there
    (which ignores the opposite tail, so it is an upper bound) and iterate
    ``sqrt(n) = (z_a s0 + s1 ndtri(power - opposite_tail(n))) / dist``; the sequence
    decreases monotonically to the exact root of statsmodels' two-tailed power equation.
    """
    u = np.maximum((crit * s0 + ndtri(power) * s1) / dist, 0.0)
    if two_sided:
        for _ in range(_FIXED_POINT_ITERATIONS):
            opposite = ndtr((-dist * u - crit * s0) / s1)
            target = np.maximum(power - opposite, np.finfo(np.float64).tiny)
            new_u = np.maximum((crit * s0 + ndtri(target) * s1) / dist, 0.0)
            done = np.all(np.abs(new_u - u) <= _RELATIVE_TOLERANCE * 1e-3 * np.maximum(u, 1.0))
            u = new_u
            if done:
                break
    return np.asarray(u * u, dtype=np.float64)


def z_effect(
    s: FloatArray, n: FloatArray, power: FloatArray, crit: FloatArray, two_sided: bool
) -> FloatArray:
    """Smallest ``dist`` with power ``power`` when ``s0 = s1 = s`` (means, ratios).

    The closed form ``(z_a + z_b) s / sqrt(n)``, refined for the two-sided opposite tail by
    the same monotone fixed-point iteration as `z_sample_size`.
    """
    u = np.sqrt(n)
    dist = (crit + ndtri(power)) * s / u
    if two_sided:
        for _ in range(_FIXED_POINT_ITERATIONS):
            opposite = ndtr(-dist * u / s - crit)
            target = np.maximum(power - opposite, np.finfo(np.float64).tiny)
            new = (crit + ndtri(target)) * s / u
            done = np.all(np.abs(new - dist) <= _RELATIVE_TOLERANCE * 1e-3 * np.abs(dist))
            dist = new
            if done:
                break
    return np.asarray(np.maximum(dist, 0.0), dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Student t test (pooled variance, statsmodels' TTestIndPower / G*Power)
# ---------------------------------------------------------------------------------------


def _nct_cdf(df: FloatArray, nc: FloatArray, t: FloatArray) -> FloatArray:
    """CDF of the noncentral t; where scipy's ``nctdtr`` returns nan (far tails, where it
    underflows), the normal approximation of Abramowitz & Stegun 26.7.10 takes over."""
    exact = nctdtr(df, nc, t)
    if not np.isnan(exact).any():
        return np.asarray(exact, dtype=np.float64)
    approx = ndtr((t * (1.0 - 1.0 / (4.0 * df)) - nc) / np.sqrt(1.0 + t * t / (2.0 * df)))
    return np.asarray(np.where(np.isnan(exact), approx, exact), dtype=np.float64)


def t_power(
    d: FloatArray, n: FloatArray, ratio: FloatArray, alpha: FloatArray, two_sided: bool
) -> FloatArray:
    """Power of the two-sample t-test from the noncentral t distribution.

    ``d`` is the standardised distance, ``df = n1 + n2 - 2`` and the noncentrality is
    ``d * sqrt(n1 n2 / (n1 + n2))`` (Cohen 1988, ch. 2; statsmodels ``TTestIndPower``).
    """
    n2 = ratio * n
    df = n + n2 - 2.0
    nc = d * np.sqrt(n * n2 / (n + n2))
    tail = alpha / 2.0 if two_sided else alpha
    crit = -stdtrit(df, tail)
    power = 1.0 - _nct_cdf(df, nc, crit)
    if two_sided:
        # The opposite tail is below 1e-17 once nc > crit + 9; skipping it there halves
        # the cost of a grid, whose nctdtr calls dominate.
        far = np.broadcast_to(nc > crit + 9.0, np.shape(power))
        opposite = np.zeros(np.shape(power))
        near = ~far
        if near.any():
            df_b, nc_b, crit_b = np.broadcast_arrays(df, nc, crit)
            opposite[near] = _nct_cdf(df_b[near], nc_b[near], -crit_b[near])
        power = power + opposite
    return np.asarray(power, dtype=np.float64)


def solve_increasing(
    f: Callable[[FloatArray, list[FloatArray]], FloatArray],
    target: ArrayLike,
    lo: ArrayLike,
    hi: ArrayLike,
    *params: ArrayLike,
) -> FloatArray:
    """Root of ``f(x, params) = target`` for f increasing in x with ``f(lo) < target``.

    Elementwise over the broadcast of all arguments.  ``hi`` is doubled until it brackets
    the root; then the Illinois variant of regula falsi (Dowell & Jarratt 1971) shrinks
    each bracket: it keeps the bracket like bisection but converges superlinearly, and only
    the still-open brackets are evaluated again, so a noncentral-t root costs ~10
    evaluations.  Returns the upper end (``f >= target``), or ``lo`` where already
    ``f(lo) >= target``.
    """
    arrays = np.broadcast_arrays(lo, hi, target, *params)
    shape = arrays[0].shape
    lo_, hi_, tgt, *ps = (np.array(a, dtype=np.float64).ravel() for a in arrays)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f_hi = f(hi_, ps) - tgt
        for _ in range(64):
            short = f_hi < 0
            if not short.any():
                break
            lo_ = np.where(short, hi_, lo_)
            hi_ = np.where(short, hi_ * 2.0, hi_)
            f_hi = np.where(short, f(hi_, ps) - tgt, f_hi)
        f_lo = f(lo_, ps) - tgt
        hi_ = np.where(f_lo >= 0, lo_, hi_)  # already reached at lo: lo is the answer
        active = np.flatnonzero(hi_ - lo_ > _ROOT_WIDTH * np.abs(hi_))
        side = np.zeros(lo_.shape)
        for _ in range(_SOLVER_ITERATIONS):
            if active.size == 0:
                break
            a, b, fa, fb = lo_[active], hi_[active], f_lo[active], f_hi[active]
            x = b - fb * (b - a) / (fb - fa)
            x = np.where((x > a) & (x < b), x, 0.5 * (a + b))
            fx = f(x, [p[active] for p in ps]) - tgt[active]
            up = fx >= 0
            last = side[active]
            fa = np.where(up & (last > 0), 0.5 * fa, fa)
            fb = np.where(~up & (last < 0), 0.5 * fb, fb)
            hit = np.abs(fx) <= _ROOT_POWER_TOLERANCE
            lo_[active] = np.where(hit, x, np.where(up, a, x))
            hi_[active] = np.where(up | hit, x, b)
            f_lo[active] = np.where(up, fa, fx)
            f_hi[active] = np.where(up, fx, fb)
            side[active] = np.where(up, 1.0, -1.0)
            width = hi_[active] - lo_[active]
            active = active[width > _ROOT_WIDTH * np.abs(hi_[active])]
    return hi_.reshape(shape)


def t_sample_size(
    d: FloatArray, power: FloatArray, ratio: FloatArray, alpha: FloatArray, two_sided: bool
) -> FloatArray:
    """Continuous n_control at which `t_power` equals ``power`` (root of the exact equation).

    The z solution is a lower bound (the t-test is less powerful at equal n), and the
    smallest design with one degree of freedom bounds n from below as well: where that
    design is already powered, it is the answer.
    """
    s = np.sqrt(1.0 + 1.0 / ratio)
    crit = critical_z(alpha, two_sided)
    n_z = z_sample_size(d, s, s, power, crit, two_sided=two_sided)
    lo = np.maximum(n_z, 3.0 / (1.0 + ratio))

    # Guenther (1981): the t correction is about z^2 / 4 units per arm.
    return solve_increasing(
        lambda n, ps: t_power(ps[0], n, ps[1], ps[2], two_sided),
        power,
        lo,
        lo * 1.01 + crit**2,
        d,
        ratio,
        alpha,
    )


def t_effect(
    n: FloatArray, power: FloatArray, ratio: FloatArray, alpha: FloatArray, two_sided: bool
) -> FloatArray:
    """Smallest standardised effect ``d`` the t-test detects with ``power`` at n_control ``n``."""
    s = np.sqrt(1.0 + 1.0 / ratio)
    d_z = z_effect(s, n, power, critical_z(alpha, two_sided), two_sided)
    return solve_increasing(
        lambda d, ps: t_power(d, ps[0], ps[1], ps[2], two_sided),
        power,
        d_z,
        d_z * 1.2 + 1e-12,
        n,
        ratio,
        alpha,
    )


def ceil_n(n: FloatArray) -> NDArray[np.int64]:
    """Round a continuous sample size up, forgiving root-finding noise, and at least 1."""
    return np.maximum(np.ceil(n * (1.0 - _RELATIVE_TOLERANCE)), 1.0).astype(np.int64)


def days_to_enrol(
    total_n: ArrayLike, daily_units: ArrayLike, traffic: ArrayLike
) -> NDArray[np.int64]:
    """Whole days until ``daily_units * traffic`` new units a day reach ``total_n``."""
    total = as_float(total_n, "total_n")
    require((total >= 0) & np.isfinite(total), total, "total_n", "a non-negative number")
    daily = as_float(daily_units, "daily_units")
    require((daily > 0) & np.isfinite(daily), daily, "daily_units", "a positive number")
    share = as_float(traffic, "traffic")
    require((share > 0) & (share <= 1), share, "traffic", "in (0, 1]")
    return np.ceil(total / (daily * share) * (1.0 - _RELATIVE_TOLERANCE)).astype(np.int64)
