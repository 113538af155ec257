"""Result objects of `analysis.planning.power` and the solvers shared by its metric functions.

`SampleSize` and `MinimumDetectableEffect` are public (re-exported by `analysis`); the
``solve_*`` helpers turn a validated `Design` into them and are internal to the power
modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput
from analysis.planning import curves as pm
from analysis.planning.curves import FloatArray
from analysis.planning.designs import Design, Setup


def _plain(value: Any) -> Any:
    """numpy scalar/array -> int/float/list for JSON."""
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


@dataclass(frozen=True)
class SampleSize:
    """Units needed: ``n_per_variant`` in control, ``n_treatment`` in each treatment arm.

    Attributes are numpy arrays broadcast over the inputs (0-d for scalar inputs, so
    ``int(result.n_per_variant)`` works).  ``alpha`` and ``power`` are the per-comparison
    values actually used (after the family-wise and guardrail adjustments), ``effect`` the
    absolute effect minus the null value, ``n_per_variant_exact`` the unrounded root.
    """

    n_per_variant: NDArray[np.int64]
    n_treatment: NDArray[np.int64]
    total_n: NDArray[np.int64]
    n_per_variant_exact: FloatArray
    effect: FloatArray
    alpha: FloatArray
    power: FloatArray
    variants: int

    def days(self, *, daily_units: ArrayLike, traffic: ArrayLike = 1.0) -> NDArray[np.int64]:
        """Days to enrol `total_n` (see `analysis.duration.duration_days`)."""
        return pm.days_to_enrol(self.total_n, daily_units, traffic)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (lists for array inputs, numbers for scalars)."""
        return {
            "n_per_variant": _plain(self.n_per_variant),
            "n_treatment": _plain(self.n_treatment),
            "total_n": _plain(self.total_n),
            "n_per_variant_exact": _plain(self.n_per_variant_exact),
            "effect": _plain(self.effect),
            "alpha_per_comparison": _plain(self.alpha),
            "power_per_test": _plain(self.power),
            "variants": self.variants,
        }


@dataclass(frozen=True)
class MinimumDetectableEffect:
    """The smallest true effect detected with the requested power at ``n_per_variant``.

    ``absolute`` is in metric units, ``relative`` a fraction of the baseline (nan when no
    baseline was given).  For a proportion whose MDE would leave [0, 1], both are nan: no
    effect is detectable at that n.
    """

    absolute: FloatArray
    relative: FloatArray
    n_per_variant: FloatArray
    alpha: FloatArray
    power: FloatArray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "mde_absolute": _plain(self.absolute),
            "mde_relative": _plain(self.relative),
            "n_per_variant": _plain(self.n_per_variant),
            "alpha_per_comparison": _plain(self.alpha),
            "power_per_test": _plain(self.power),
        }


# ---------------------------------------------------------------------------------------
# solvers over a Design, shared by the proportion, mean and ratio functions
# ---------------------------------------------------------------------------------------


def solve_n(design: Design) -> SampleSize:
    s = design.setup
    if s.test == "t":
        n = pm.t_sample_size(design.dist / design.sd, s.power, s.ratio, s.alpha, s.two_sided)
    else:
        crit = pm.critical_z(s.alpha, s.two_sided)
        n = pm.z_sample_size(
            design.dist, design.s0, design.s1, s.power, crit, two_sided=s.two_sided
        )
    n_control, n_treatment, exact, effect, alpha, power = np.broadcast_arrays(
        pm.ceil_n(n), pm.ceil_n(s.ratio * n), n, design.dist, s.alpha, s.power
    )
    return SampleSize(
        n_per_variant=n_control,
        n_treatment=n_treatment,
        total_n=np.asarray(n_control + s.variants * n_treatment, dtype=np.int64),
        n_per_variant_exact=exact,
        effect=effect,
        alpha=alpha,
        power=power,
        variants=s.variants,
    )


def solve_power(design: Design, n_per_variant: ArrayLike) -> FloatArray:
    s = design.setup
    n = n_input(n_per_variant)
    if s.test == "t":
        return pm.t_power(design.dist / design.sd, n, s.ratio, s.alpha, s.two_sided)
    crit = pm.critical_z(s.alpha, s.two_sided)
    return pm.z_power(design.dist, design.s0, design.s1, n, crit, two_sided=s.two_sided)


def solve_mde_common_sd(
    s: Setup,
    sd_diff: FloatArray,
    sd_unit: FloatArray,
    n: FloatArray,
    baseline: FloatArray | None,
) -> MinimumDetectableEffect:
    if s.test == "t":
        absolute = pm.t_effect(n, s.power, s.ratio, s.alpha, s.two_sided) * sd_unit
    else:
        absolute = pm.z_effect(
            sd_diff, n, s.power, pm.critical_z(s.alpha, s.two_sided), s.two_sided
        )
    return mde_result(s, absolute, n, baseline)


def mde_result(
    s: Setup, absolute: FloatArray, n: FloatArray, baseline: FloatArray | None
) -> MinimumDetectableEffect:
    relative = np.full_like(absolute, np.nan) if baseline is None else absolute / np.abs(baseline)
    absolute, relative, n_b, alpha, power = np.broadcast_arrays(
        absolute, relative, n, s.alpha, s.power
    )
    return MinimumDetectableEffect(
        absolute=absolute, relative=relative, n_per_variant=n_b, alpha=alpha, power=power
    )


def n_input(n_per_variant: ArrayLike) -> FloatArray:
    n = pm.as_float(n_per_variant, "n_per_variant")
    pm.require((n > 0) & np.isfinite(n), n, "n_per_variant", "a positive finite number")
    return n


def mde_value(mde: ArrayLike | None, margin: ArrayLike | None, name: str) -> ArrayLike:
    if mde is not None:
        return mde
    if margin is None:
        raise InvalidInput("is required (the effect to detect)", name)
    return 0.0
