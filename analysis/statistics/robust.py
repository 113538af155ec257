"""Robust location and scale along the last axis of an array, NaN left out (vectorised).

The median and the MAD (scaled to estimate a normal's standard deviation) barely move for
a few outliers, which is what a baseline that must not learn the very outages it looks
for needs (Hampel 1974; Rousseeuw & Croux 1993 on the MAD's efficiency).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
MAD_TO_SD: Final = 1.482602218505602  # 1 / Φ⁻¹(3/4): the MAD of a normal is 0.6745 SD


def finite_median(values: FloatArray) -> tuple[FloatArray, NDArray[np.int64]]:
    """Median of the finite values along the last axis and their count (NaN when none)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    ordered = np.sort(np.where(finite, values, np.inf), axis=-1)  # non-finite go last
    lower = np.maximum((count - 1) // 2, 0)[..., None]
    upper = np.maximum(count // 2, 0)[..., None]
    lo = np.take_along_axis(ordered, np.minimum(lower, values.shape[-1] - 1), axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, np.minimum(upper, values.shape[-1] - 1), axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):
        median = np.where(count > 0, (lo + hi) / 2, np.nan)
    return median, count


def robust_baseline(history: ArrayLike) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
    """Median, MAD-based standard deviation and count of the finite values of each row.

    Parameters
    ----------
    history : array_like
        Periods along the last axis; NaN (or inf) marks a period to leave out.

    Returns
    -------
    (median, sd, count)
        ``sd = 1.4826 · median(|x - median|)``, a consistent estimate of the SD of normal data
        that a few outliers (the outages being looked for) barely move (Hampel 1974).

    Examples
    --------
    >>> median, sd, n = robust_baseline([[10.0, 12.0, 11.0, 400.0, float("nan")]])
    >>> float(median[0]), round(float(sd[0]), 3), int(n[0])
    (11.5, 1.483, 4)
    """
    values = np.asarray(history, dtype=float)
    if values.ndim == 0:
        values = values[None]
    if values.shape[-1] == 0:
        shape = values.shape[:-1]
        return np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, np.int64)
    median, count = finite_median(values)
    deviation = np.abs(values - median[..., None])
    mad, _ = finite_median(np.where(np.isfinite(values), deviation, np.nan))
    return median, MAD_TO_SD * mad, count


__all__ = ["MAD_TO_SD", "finite_median", "robust_baseline"]
