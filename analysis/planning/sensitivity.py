"""Sensitivity from history: what each metric could detect, estimated from a pre-period.

Input is one row per unit with one column per metric (per-unit totals over the pre-period),
as a pandas DataFrame; `per_unit_frame` builds it from the exported outcome events
(`analysis.load.read_outcomes`).  From it, `metric_summary` estimates each metric's
baseline and per-unit standard deviation, `sensitivity_by_duration` the MDE after
candidate durations, and `capping_sensitivity` how winsorizing a heavy-tailed metric
(revenue) shrinks its MDE.

Assumption, stated once: the per-unit distribution over the planned test window is that
of the pre-period window (use a pre-period as long as the test).  Pure: frames in, frames
out; no file access here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.errors import InvalidInput
from analysis.planning.duration import DEFAULT_DAYS, n_per_variant_after_days
from analysis.planning.power import (
    minimum_detectable_effect_mean,
    minimum_detectable_effect_proportion,
)
from analysis.planning.ratio_metric import ratio_metric_variance

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "capping_sensitivity",
    "metric_summary",
    "per_unit_frame",
    "sensitivity_by_duration",
    "winsorize",
]

DEFAULT_PERCENTILES = (None, 99.9, 99.5, 99.0, 95.0)


def per_unit_frame(outcomes: pd.DataFrame, *, units: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-unit totals (rows: ``unit_id``; columns: metrics) from exported outcome events.

    ``outcomes`` has the export columns ``unit_id, metric[, value]`` (a missing or null
    value counts 1, as in ``POST /v1/events``).  ``units`` lists every eligible unit, so
    units without events get zeros; without it only units with an event appear, which
    overstates means.
    """
    import pandas as pd

    missing = {"unit_id", "metric"} - set(outcomes.columns)
    if missing:
        raise InvalidInput(f"missing column(s) {', '.join(sorted(missing))}", "outcomes")
    values = outcomes["value"] if "value" in outcomes else pd.Series(1.0, index=outcomes.index)
    events = pd.DataFrame(
        {
            "unit_id": outcomes["unit_id"],
            "metric": outcomes["metric"],
            "value": pd.to_numeric(values, errors="coerce").fillna(1.0),
        }
    )
    table = events.pivot_table(
        index="unit_id", columns="metric", values="value", aggfunc="sum", fill_value=0.0
    )
    if units is not None:
        table = table.reindex(pd.Index(list(units), name="unit_id").unique(), fill_value=0.0)
    table.columns.name = None
    return table.astype(float)


def _column(frame: pd.DataFrame, name: str) -> NDArray[np.float64]:
    if name not in frame.columns:
        raise InvalidInput(f"no column '{name}' in the frame", "metrics")
    try:
        values = np.asarray(frame[name], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"column '{name}' is not numeric", "metrics") from exc
    if values.size < 2 or not np.isfinite(values).all():
        raise InvalidInput(f"column '{name}' needs >= 2 finite values", "metrics")
    return values


def metric_summary(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    ratios: Mapping[str, tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Baseline and per-unit standard deviation of each metric.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per unit, one numeric column per metric.
    metrics : sequence of str, optional
        Columns to summarise (default: every numeric column not used by ``ratios``).
        A column of only 0 and 1 is a proportion (std ``sqrt(p (1 - p))``), any other a
        mean (sample std, ddof = 1).
    ratios : mapping, optional
        ``{"name": ("numerator", "denominator")}``: ratio metrics, with the delta-method
        per-unit std of `analysis.ratio_metric_variance`.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, kind, n_units, baseline, std``.
    """
    import pandas as pd

    ratios = dict(ratios or {})
    used = {column for pair in ratios.values() for column in pair}
    if metrics is None:
        numeric = frame.select_dtypes("number").columns
        metrics = [str(c) for c in numeric if c not in used]
    rows: list[dict[str, Any]] = []
    for name in metrics:
        y = _column(frame, name)
        binary = bool(np.isin(y, (0.0, 1.0)).all())
        mean = float(y.mean())
        std = float(np.sqrt(mean * (1 - mean))) if binary else float(y.std(ddof=1))
        kind = "proportion" if binary else "mean"
        rows.append({"metric": name, "kind": kind, "n_units": y.size, "baseline": mean, "std": std})
    for name, (numerator, denominator) in ratios.items():
        y, x = _column(frame, numerator), _column(frame, denominator)
        variance = ratio_metric_variance(
            mean_numerator=y.mean(),
            mean_denominator=x.mean(),
            var_numerator=y.var(ddof=1),
            var_denominator=x.var(ddof=1),
            covariance=np.cov(y, x)[0, 1],
        )
        rows.append(
            {
                "metric": name,
                "kind": "ratio",
                "n_units": y.size,
                "baseline": float(y.mean() / x.mean()),
                "std": float(np.sqrt(variance)),
            }
        )
    if not rows:
        raise InvalidInput("no numeric metric columns to summarise", "metrics")
    return pd.DataFrame(rows, columns=["metric", "kind", "n_units", "baseline", "std"])


def _mde(
    kind: str, baseline: float, std: float, n: ArrayLike, options: dict[str, Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(absolute, relative) MDE; nan for a constant metric, where no change is measurable."""
    if kind == "proportion" and 0 < baseline < 1:
        found = minimum_detectable_effect_proportion(baseline=baseline, n_per_variant=n, **options)
    elif std > 0:
        found = minimum_detectable_effect_mean(
            std=std, baseline=baseline if baseline else None, n_per_variant=n, **options
        )
    else:
        nan = np.full(np.shape(n), np.nan)
        return nan, nan
    return found.absolute, found.relative


def sensitivity_by_duration(
    frame: pd.DataFrame,
    *,
    daily_units: float | None = None,
    period_days: float | None = None,
    traffic: float = 1.0,
    days: Sequence[int] = DEFAULT_DAYS,
    metrics: Sequence[str] | None = None,
    ratios: Mapping[str, tuple[str, str]] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """MDE of every metric after each candidate duration, from pre-period data.

    Parameters
    ----------
    frame, metrics, ratios
        As in `metric_summary`.
    daily_units : float, optional
        New eligible units per day.  Default: ``len(frame) / period_days``.
    period_days : float, optional
        Length of the pre-period that ``frame`` covers (needed without ``daily_units``).
    traffic, days
        As in `analysis.mde_by_duration`.
    **options
        ``alpha``, ``power``, ``alternative``, ``ratio``, ``variants``, ``correction``,
        ``cuped_rho``, ``n_guardrails`` of the ``minimum_detectable_effect_*`` functions.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, kind, baseline, std, days, n_per_variant, mde_absolute,
        mde_relative``, one row per metric and duration.  A relative MDE above, say, 20%
        flags a metric that cannot detect any realistic change: say so before the test.
    """
    import pandas as pd

    if daily_units is None:
        if period_days is None or not period_days > 0:
            raise InvalidInput("give daily_units, or period_days > 0 to derive it", "daily_units")
        daily_units = len(frame) / period_days
    summary = metric_summary(frame, metrics=metrics, ratios=ratios)
    n = n_per_variant_after_days(
        days=list(days),
        daily_units=daily_units,
        traffic=traffic,
        ratio=options.get("ratio", 1.0),
        variants=options.get("variants", 1),
    )
    if (n < 1).any():
        raise InvalidInput("too short to enrol one unit per arm", "days")
    parts = []
    for row in summary.to_dict(orient="records"):
        absolute, relative = _mde(
            str(row["kind"]), float(row["baseline"]), float(row["std"]), n, options
        )
        parts.append(
            pd.DataFrame(
                {
                    "metric": row["metric"],
                    "kind": row["kind"],
                    "baseline": row["baseline"],
                    "std": row["std"],
                    "days": np.asarray(days, dtype=np.int64),
                    "n_per_variant": n,
                    "mde_absolute": absolute,
                    "mde_relative": relative,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def winsorize(
    values: ArrayLike, *, percentile: float, lower_percentile: float | None = None
) -> NDArray[np.float64]:
    """Cap values above their ``percentile``-th percentile (and below ``lower_percentile``).

    Returns a new array; the input is not modified.  Capping trades a little bias (the
    capped mean is a different metric) for much less variance on heavy tails (Kohavi,
    Tang & Xu, *Trustworthy Online Controlled Experiments*, 2020, ch. 22).

    Examples
    --------
    >>> winsorize([1.0, 2.0, 3.0, 100.0], percentile=75).tolist()
    [1.0, 2.0, 3.0, 27.25]
    """
    y = np.array(values, dtype=np.float64)
    if not 0 < percentile <= 100:
        raise InvalidInput(f"must be in (0, 100], got {percentile}", "percentile")
    if lower_percentile is not None and not 0 <= lower_percentile < percentile:
        raise InvalidInput(
            f"must be in [0, percentile), got {lower_percentile}", "lower_percentile"
        )
    if y.size == 0 or not np.isfinite(y).all():
        raise InvalidInput("needs finite values", "values")
    upper = np.percentile(y, percentile)
    lower = -np.inf if lower_percentile is None else np.percentile(y, lower_percentile)
    return np.clip(y, lower, upper)


def capping_sensitivity(
    values: ArrayLike,
    *,
    n_per_variant: float,
    percentiles: Sequence[float | None] = DEFAULT_PERCENTILES,
    **options: Any,
) -> pd.DataFrame:
    """How capping a heavy-tailed metric at each percentile changes its MDE.

    Parameters
    ----------
    values : array_like
        Per-unit pre-period values of one metric (e.g. revenue per user).
    n_per_variant : float
        Control-arm units the test will have.
    percentiles : sequence
        Caps to compare; ``None`` is the uncapped metric.
    **options
        Options of `analysis.minimum_detectable_effect_mean` (``alpha``, ``power``, ...).

    Returns
    -------
    pandas.DataFrame
        Columns ``percentile, cap, share_capped, mean, std, mde_absolute, mde_relative``;
        the relative MDE is relative to the capped mean, i.e. to the metric actually tested.
        For a sparse metric (most units 0) a low percentile is 0 itself: everything is
        capped to 0, the std is 0 and the MDE nan; choose percentiles inside the tail.
    """
    import pandas as pd

    y = np.asarray(values, dtype=np.float64)
    rows = []
    for percentile in percentiles:
        capped = y if percentile is None else winsorize(y, percentile=percentile)
        cap = float(capped.max())
        mean, std = float(capped.mean()), float(capped.std(ddof=1))
        absolute, relative = _mde("mean", mean, std, n_per_variant, options)
        rows.append(
            {
                "percentile": np.nan if percentile is None else float(percentile),
                "cap": np.nan if percentile is None else cap,
                "share_capped": 0.0 if percentile is None else float(np.mean(y > cap)),
                "mean": mean,
                "std": std,
                "mde_absolute": float(absolute),
                "mde_relative": float(relative),
            }
        )
    return pd.DataFrame(rows)
