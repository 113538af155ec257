"""From units to calendar days: how long a test runs, and what it detects after N days.

Traffic model: ``daily_units`` new eligible units arrive per day (for user-randomised tests
count *new* users a day; returning users add no units), a fraction ``traffic`` of them
enters the experiment and is split control : treatment = 1 : ``ratio`` over
``1 + variants * ratio`` shares.  Pure arithmetic on top of `analysis.planning.power`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput
from analysis.planning import curves as pm
from analysis.planning.power import (
    minimum_detectable_effect_mean,
    minimum_detectable_effect_proportion,
)
from analysis.planning.ratio_metric import minimum_detectable_effect_ratio
from analysis.planning.results import MinimumDetectableEffect

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["duration_days", "mde_by_duration", "n_per_variant_after_days", "remaining_days"]

DEFAULT_DAYS = (7, 14, 21, 28)


def duration_days(
    *, total_n: ArrayLike, daily_units: ArrayLike, traffic: ArrayLike = 1.0
) -> NDArray[np.int64]:
    """Whole days until the experiment has enrolled ``total_n`` units.

    ``ceil(total_n / (daily_units * traffic))``.

    Parameters
    ----------
    total_n : array_like
        Units needed over all arms (`analysis.SampleSize.total_n`).
    daily_units : array_like
        New eligible units per day.
    traffic : array_like
        Fraction of eligible units allocated to the experiment, in (0, 1].

    Examples
    --------
    >>> int(duration_days(total_n=29502, daily_units=5000, traffic=0.5))
    12
    """
    return pm.days_to_enrol(total_n, daily_units, traffic)


def remaining_days(
    *,
    required_total_n: ArrayLike,
    current_total_n: ArrayLike,
    daily_units: ArrayLike,
    traffic: ArrayLike = 1.0,
) -> NDArray[np.int64]:
    """Extra whole days until a running test reaches ``required_total_n`` (0 if already there).

    For a running test, size ``required_total_n`` with the variance observed so far
    (e.g. `analysis.sample_size_mean` with the pooled std) and pass the units enrolled.

    Examples
    --------
    >>> int(remaining_days(required_total_n=30000, current_total_n=21000, daily_units=1000))
    9
    """
    required = pm.as_float(required_total_n, "required_total_n")
    current = pm.as_float(current_total_n, "current_total_n")
    pm.require(current >= 0, current, "current_total_n", ">= 0")
    return pm.days_to_enrol(np.maximum(required - current, 0.0), daily_units, traffic)


def n_per_variant_after_days(
    *,
    days: ArrayLike,
    daily_units: ArrayLike,
    traffic: ArrayLike = 1.0,
    ratio: ArrayLike = 1.0,
    variants: int = 1,
) -> NDArray[np.int64]:
    """Control-arm units enrolled after ``days``: ``floor(days daily traffic / (1 + k r))``.

    Examples
    --------
    >>> n_per_variant_after_days(days=[7, 14], daily_units=1000).tolist()
    [3500, 7000]
    """
    d = pm.as_float(days, "days")
    pm.require((d > 0) & np.isfinite(d), d, "days", "a positive number")
    daily = pm.as_float(daily_units, "daily_units")
    pm.require((daily > 0) & np.isfinite(daily), daily, "daily_units", "a positive number")
    share = pm.as_float(traffic, "traffic")
    pm.require((share > 0) & (share <= 1), share, "traffic", "in (0, 1]")
    r = pm.as_float(ratio, "ratio")
    pm.require((r > 0) & np.isfinite(r), r, "ratio", "a positive finite number")
    pm.check_count(variants, "variants", 1)
    return np.floor(d * daily * share / (1.0 + variants * r)).astype(np.int64)


def mde_by_duration(
    *,
    metric: Literal["proportion", "mean", "ratio"],
    daily_units: float,
    traffic: float = 1.0,
    days: Sequence[int] = DEFAULT_DAYS,
    **params: Any,
) -> pd.DataFrame:
    """The "detectable effect after 7, 14, 21, 28 days" table for one scenario.

    Parameters
    ----------
    metric : {"proportion", "mean", "ratio"}
        Which ``minimum_detectable_effect_*`` function to use.
    daily_units, traffic : float
        Traffic, as in `duration_days`.
    days : sequence of int
        Candidate durations.
    **params
        Keyword arguments of that function other than ``n_per_variant`` (``baseline``,
        ``std``, ``alpha``, ``power``, ``ratio``, ``variants``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per duration: ``days``, ``n_per_variant``, ``n_treatment``, ``total_n``,
        ``mde_absolute``, ``mde_relative``.

    Examples
    --------
    >>> table = mde_by_duration(metric="proportion", baseline=0.10, daily_units=2000)
    >>> table["days"].tolist(), table["n_per_variant"].tolist()
    ([7, 14, 21, 28], [7000, 14000, 21000, 28000])
    """
    import pandas as pd

    functions: dict[str, Callable[..., MinimumDetectableEffect]] = {
        "proportion": minimum_detectable_effect_proportion,
        "mean": minimum_detectable_effect_mean,
        "ratio": minimum_detectable_effect_ratio,
    }
    if metric not in functions:
        raise InvalidInput(f"must be one of {', '.join(functions)}; got {metric!r}", "metric")
    if "n_per_variant" in params:
        raise InvalidInput("is set by the table from days and traffic", "n_per_variant")
    ratio = params.get("ratio", 1.0)
    variants = params.get("variants", 1)
    d = np.asarray(days, dtype=np.float64)
    n = n_per_variant_after_days(
        days=d, daily_units=daily_units, traffic=traffic, ratio=ratio, variants=variants
    )
    pm.require(n >= 1, d, "days", "long enough to enrol at least one unit per arm")
    mde = functions[metric](n_per_variant=n, **params)
    n_treatment = np.floor(n * np.asarray(ratio, dtype=np.float64)).astype(np.int64)
    return pd.DataFrame(
        {
            "days": d.astype(np.int64),
            "n_per_variant": n,
            "n_treatment": n_treatment,
            "total_n": n + variants * n_treatment,
            "mde_absolute": mde.absolute,
            "mde_relative": mde.relative,
        }
    )
