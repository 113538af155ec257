"""Multiple-comparison adjustment across variants and metrics (Holm, Benjamini-Hochberg)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput

Method = Literal["holm", "bh"]
METHODS: tuple[str, ...] = ("holm", "bh")


def adjust_p_values(p_values: ArrayLike, *, method: str = "holm") -> NDArray[np.float64]:
    """Adjusted p-values controlling the family-wise error (Holm) or the FDR (BH).

    Parameters
    ----------
    p_values : array_like
        Raw p-values in [0, 1], any shape; nan entries (tests that could not run) stay
        nan and do not count towards the family size.
    method : {"holm", "bh"}
        ``"holm"``: Holm's step-down Bonferroni (family-wise error rate, valid under any
        dependence; the default).  ``"bh"``: Benjamini-Hochberg step-up (false discovery
        rate, for independent or positively dependent tests).

    Returns
    -------
    ndarray
        Adjusted p-values, same shape, each >= its raw p-value and <= 1; reject a
        hypothesis when its adjusted p-value is <= alpha.

    References
    ----------
    Holm (1979), "A simple sequentially rejective multiple test procedure", Scand. J.
    Statist. 6.  Benjamini & Hochberg (1995), JRSS B 57.  Agrees with
    ``statsmodels.stats.multitest.multipletests(method="holm" | "fdr_bh")``.

    Examples
    --------
    >>> adjust_p_values([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}", field="method")
    p = np.asarray(p_values, dtype=float)
    finite = ~np.isnan(p)
    if ((p[finite] < 0) | (p[finite] > 1)).any():
        raise InvalidInput("p-values must lie in [0, 1]", field="p_values")
    out = np.full(p.shape, np.nan)
    vals = p[finite]
    m = vals.size
    if m == 0:
        return out
    order = np.argsort(vals, kind="stable")
    ranked = vals[order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        # Step-down: p_(i) * (m - i + 1), made monotone from the smallest upwards.
        adj = np.maximum.accumulate(ranked * (m - rank + 1))
    else:
        # Step-up: p_(i) * m / i, made monotone from the largest downwards.
        adj = np.minimum.accumulate((ranked * m / rank)[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(adj, 1.0)
    out[finite] = adjusted
    return out


__all__ = ["METHODS", "adjust_p_values"]
