"""The mSPRT's mixing distribution, fixed before the data it tests.

The always-valid guarantee of the mixture SPRT (``P(∃ n: Λ_n >= 1/alpha) <= alpha``, Ville's
inequality) holds because Λ_n is a martingale under the null *for one fixed mixing
distribution*.  Re-choosing the mixing variance τ² from each look's variance (``τ² = r·V_n``)
makes every look the one the test is tuned for, so the statistic is no longer a martingale
and the false-positive rate under peeking grows with the number of looks.  A
`MixingPrior` is therefore stated in advance, from the plan or as an explicit prior, and
stored with the analysis settings.

Scales
------
``"sd"``
    τ in units of the metric's per-unit standard deviation (a standardised effect, like
    Cohen's d).  With ``s² = V / (1/n_c + 1/n_v)`` the plug-in per-unit variance,
    ``τ² = scale² s²`` and ``V / τ² = (1/n_c + 1/n_v) / scale²``: the test depends on the
    data only through the z statistic ``θ̂ / √V`` and on the sample sizes.  This is the
    mSPRT for a standardised mean; the only plug-in is s inside z, which Johari, Koomen,
    Pekelis & Walsh (2017, §4, "Peeking at A/B tests", KDD) show is asymptotically valid.
    Nothing about the mixing distribution moves with the looks.
``"relative"``
    τ as a fraction of the control mean (``τ = scale · |μ̂_c|``), for a relative MDE.
    μ̂_c is a plug-in of a nuisance parameter that converges (as s does); the stated
    number is fixed in advance.
``"absolute"``
    τ in metric units, for an absolute MDE of one metric.

A relative or absolute prior is a statement about one metric's scale; ``"sd"`` carries
over to every metric, which is why the analysis turns a plan into an ``"sd"`` prior
(`analysis.analyzer`).  Choosing τ near the effect one hopes to detect makes the test
most powerful around the sample that detects it (Johari et al. 2017, §4.2; Howard et al.
2021, §3.5: the boundary is tightest where ``τ² ≈ r(alpha) · V``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput

Scale = Literal["sd", "relative", "absolute"]
SCALES: Final = ("sd", "relative", "absolute")


def tau2_ratio(alpha: float) -> float:
    """``r = -2 log alpha + log(1 - 2 log alpha)``: the τ²/V that makes a CS tightest at V.

    References
    ----------
    Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
    confidence sequences", Ann. Statist. 49, §3: the two-sided normal-mixture boundary is
    close to tightest at intrinsic time ``m`` for
    ``rho² = (-2 log alpha + log(-2 log alpha + 1)) / m`` (the approximation also used by
    Waudby-Smith et al. (2021), "Time-uniform central limit theory and asymptotic
    confidence sequences").  Here V plays 1/m and τ² plays rho².
    """
    return -2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))


def default_tau2(*, variance_of_difference: float, alpha: float = 0.05) -> float:
    """Mixing variance τ² that makes the confidence sequence tightest at a *planned* V.

    Parameters
    ----------
    variance_of_difference : float
        ``V = sigma_c²/n_c + sigma_v²/n_v`` expected at the planned end of the experiment
        (from the power calculation).  It must come from the plan, never from the data
        being tested: a τ² re-derived from each look's V breaks the guarantee.
    alpha : float
        Significance level.

    Returns
    -------
    float
        ``τ² = r(alpha) · V`` (about 7.9 V at alpha = 0.05), see `tau2_ratio`.
    """
    return tau2_ratio(alpha) * variance_of_difference


@dataclass(frozen=True)
class MixingPrior:
    """Effect ~ N(0, τ²) under the alternative (one half per direction), fixed in advance.

    Parameters
    ----------
    scale : float
        τ on the given ``unit`` (> 0).
    unit : {"sd", "relative", "absolute"}
        See the module docstring.
    source : str
        Where the number came from ("mixing_sd", "mde", "plan", "default"), for the record.
    """

    scale: float
    unit: Scale = "sd"
    source: str = "mixing_sd"

    def __post_init__(self) -> None:
        if self.unit not in SCALES:
            raise InvalidInput(f"unit must be one of {', '.join(SCALES)}", field="unit")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise InvalidInput(f"the mixing scale must be finite and > 0, got {self.scale}",
                               field="mixing_sd")  # fmt: skip

    def tau2(
        self,
        *,
        variance: ArrayLike,
        n_control: ArrayLike,
        n_variant: ArrayLike,
        control_mean: ArrayLike,
    ) -> NDArray[np.float64]:
        """τ² in the units of the absolute effect at each look (vectorised).

        Parameters
        ----------
        variance : array_like
            ``V``, the variance of the absolute effect's estimate at each look.
        n_control, n_variant : array_like
            Units per arm at each look.
        control_mean : array_like
            Control mean at each look (used by the ``"relative"`` scale only).

        Returns
        -------
        ndarray
            τ² (nan where it is undefined: no units, or a zero control mean for a
            relative prior; such looks carry no evidence).
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.unit == "sd":
                design = 1 / np.asarray(n_control, float) + 1 / np.asarray(n_variant, float)
                out = self.scale**2 * np.asarray(variance, float) / design
            elif self.unit == "relative":
                out = (self.scale * np.abs(np.asarray(control_mean, float))) ** 2
                out = out + 0 * np.asarray(variance, float)
            else:
                out = np.full(np.shape(variance), self.scale**2)
        return np.where(np.isfinite(out) & (out > 0), out, np.nan)

    def describe(self) -> str:
        """One line for reasons and reports."""
        if self.unit == "sd":
            amount = f"{self.scale:.3g} per-unit SD"
        elif self.unit == "relative":
            amount = f"{self.scale:.3g} of the control mean"
        else:
            amount = f"{self.scale:.3g} in metric units"
        return f"mixing τ = {amount} ({self.source})"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"scale": self.scale, "unit": self.unit, "source": self.source}


__all__ = ["SCALES", "MixingPrior", "Scale", "default_tau2", "tau2_ratio"]
