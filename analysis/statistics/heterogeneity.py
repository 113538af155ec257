"""Is the effect different across segments?  Cochran's Q and I² over per-segment estimates.

Each segment gives an independent estimate of the treatment effect with its standard error
(units belong to one segment, so the estimates are independent).  Under the null of one
common effect, Cochran's Q, the inverse-variance weighted sum of squared deviations from
the pooled estimate, is approximately chi-squared with k - 1 degrees of freedom; I² is the
share of the variation across segments beyond what sampling error explains.  The same
computation as a fixed-effect meta-analysis: statsmodels'
``statsmodels.stats.meta_analysis.combine_effects`` (``q``, ``i2``, ``tau2`` with
``method_re="dl"``) agrees to rounding (``tests/test_segments.py``).  Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from abtest.errors import InvalidInput
from analysis.statistics.results import json_float


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q test of one common effect across ``k`` segments.

    ``pooled_effect``/``pooled_se``: the inverse-variance (fixed-effect) pooled estimate;
    ``i_squared`` in [0, 1); ``tau_squared`` the DerSimonian-Laird between-segment
    variance of the effect.
    """

    q: float
    df: int
    p_value: float
    i_squared: float
    tau_squared: float
    pooled_effect: float
    pooled_se: float
    k: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (nan as null)."""
        return {
            "test": "cochran_q",
            "q": json_float(self.q),
            "df": self.df,
            "p_value": json_float(self.p_value),
            "i_squared": json_float(self.i_squared),
            "tau_squared": json_float(self.tau_squared),
            "pooled_effect": json_float(self.pooled_effect),
            "pooled_se": json_float(self.pooled_se),
            "k": self.k,
        }


def cochran_q(estimates: ArrayLike, standard_errors: ArrayLike) -> Heterogeneity:
    """Cochran's Q test of homogeneity, with I² and the DerSimonian-Laird tau².

    Parameters
    ----------
    estimates : array_like
        One effect estimate per segment (at least two).
    standard_errors : array_like
        Their standard errors, finite and > 0.

    Returns
    -------
    Heterogeneity
        ``Q = sum w_i (x_i - x_w)^2`` with ``w_i = 1 / se_i^2`` and ``x_w`` the weighted
        mean; ``p = P(chi2_{k-1} > Q)``; ``I^2 = max(0, (Q - (k - 1)) / Q)``;
        ``tau^2 = max(0, (Q - (k - 1)) / (sum w - sum w^2 / sum w))``.

    Raises
    ------
    InvalidInput
        Fewer than two segments, shapes that differ, a non-finite estimate, or a standard
        error that is not finite and > 0.

    References
    ----------
    Cochran (1954), "The combination of estimates from different experiments",
    Biometrics 10(1).  Higgins & Thompson (2002), "Quantifying heterogeneity in a
    meta-analysis", Statistics in Medicine 21 (I²).  DerSimonian & Laird (1986),
    Controlled Clinical Trials 7 (tau²).  Agrees with statsmodels'
    ``combine_effects(..., method_re="dl")``.

    Examples
    --------
    >>> h = cochran_q([0.10, 0.12, 0.30], [0.05, 0.05, 0.05])
    >>> round(h.q, 3), h.df, round(h.p_value, 4), round(h.i_squared, 3)
    (9.707, 2, 0.0078, 0.794)
    """
    x = np.asarray(estimates, dtype=float)
    se = np.asarray(standard_errors, dtype=float)
    if x.ndim != 1 or x.shape != se.shape:
        raise InvalidInput("estimates and standard errors must be 1-d and of one length",
                           "standard_errors")  # fmt: skip
    if x.size < 2:
        raise InvalidInput("a heterogeneity test needs at least two segments", "estimates")
    if not np.isfinite(x).all():
        raise InvalidInput("estimates must be finite", "estimates")
    if not (np.isfinite(se).all() and (se > 0).all()):
        raise InvalidInput("standard errors must be finite and > 0", "standard_errors")
    w = 1.0 / se**2
    pooled = float(np.sum(w * x) / np.sum(w))
    q = float(np.sum(w * (x - pooled) ** 2))
    df = int(x.size - 1)
    i_squared = max(0.0, (q - df) / q) if q > 0 else 0.0
    scale = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    tau_squared = max(0.0, (q - df) / scale) if scale > 0 else 0.0
    return Heterogeneity(
        q=q, df=df, p_value=float(stats.chi2.sf(q, df)), i_squared=i_squared,
        tau_squared=tau_squared, pooled_effect=pooled, pooled_se=math.sqrt(1 / float(np.sum(w))),
        k=int(x.size),
    )  # fmt: skip


__all__ = ["Heterogeneity", "cochran_q"]
