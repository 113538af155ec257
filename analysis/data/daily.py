"""Daily cumulative aggregates: the series behind the sequential test and the chart.

Reads the ``_assigned`` view and ``_events`` table that `analysis.data.join.aggregate`
builds.

Every look uses a per-unit observation window ``W``: a unit enters the series once ``W``
has passed since its first exposure (on the day its window closes, and only if it closed
by the end of the data), with the value of its events in ``[exposure, exposure + W)``.
So every look estimates the same per-unit quantity, a unit's value is fixed once the
sequential test has seen it, and the i.i.d. observations the mSPRT assumes are what it
gets.  ``W`` is the attribution window when one is given; otherwise the analysis chooses
one (`analysis.data.tables.DEFAULT_OBSERVATION_WINDOW`, 24 h), because without it early
looks would see units that had less time to convert and the estimand would drift upwards
over the first days.  Units whose window is still open are in the fixed-horizon analysis
but in no look yet.

References: LaunchDarkly's "metric measurement windows" (a context counts only once its
window has fully completed) and Statsig Warehouse Native's cohort windows with "wait for"
(units that have not been in the experiment for their window are left out) do the same;
the mSPRT of Johari et al. (2017) assumes such i.i.d. per-unit observations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from abtest.experiment import Metric, MetricType
from analysis.data.metric_spec import micros, source_metrics, sql_list, value_sql
from analysis.statistics.aggregates import PairedStats

if TYPE_CHECKING:
    from analysis.data.engines import Engine
    from analysis.data.tables import Aggregates

DAY_US: Final = 86_400_000_000
_SUMS: Final = ("sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy")


def daily_aggregates(
    engine: Engine,
    metrics: Sequence[Metric],
    variants: Sequence[str | None],
    *,
    window: timedelta,
    end_us: int,
) -> pd.DataFrame:
    """Cumulative aggregates per day of the units whose observation window has closed.

    Parameters
    ----------
    engine : Engine
        With ``_units`` and ``_unit_values`` (see `analysis.data.join.aggregate`), whose
        ``oc`` / ``os`` hold each unit's events inside its observation window.
    metrics : sequence of Metric
        Binomial, count, sum and ratio metrics (quantile metrics have no per-unit value).
    variants : sequence of str or None
        The variants in the order of their codes; None for a code left out (no units).
    window : timedelta
        The per-unit observation window ``W`` (> 0).
    end_us : int
        The end of the data (epoch microseconds): a unit whose window closes after it is
        in no look.

    Returns
    -------
    DataFrame
        ``day, variant, metric, n, sum_y, sum_x, sum_yy, sum_xx, sum_xy``, cumulative over
        the days from the first window to close up to the day of ``end``.
    """
    metrics = list(metrics)
    if not metrics or not variants:
        return empty_daily()
    w = micros(window)
    closed = f"first_us + {w} <= {end_us}"
    day = f"(first_us + {w}) // {DAY_US}"
    # The engine returns what each day adds; the running sums over days are taken here.
    arrived = engine.frame(
        f"SELECT code, {day} AS day, count(*) AS n FROM _units "
        f"WHERE NOT crossed AND {closed} GROUP BY code, {day}"
    )
    if arrived.empty:
        return empty_daily()
    parts = []
    for metric in metrics:
        if metric.type is MetricType.RATIO:
            num, den = source_metrics(metric)
            per_unit = (
                f"SELECT code, first_us, sum(os) FILTER (WHERE metric = {sql_list([num])}) AS y, "
                f"sum(os) FILTER (WHERE metric = {sql_list([den])}) AS x FROM _unit_values "
                f"WHERE oc > 0 AND metric IN ({sql_list([num, den])}) AND {closed} "
                "GROUP BY unit_id, code, first_us"
            )
            y, x = "coalesce(y, 0)", "coalesce(x, 0)"
        else:
            per_unit = (
                f"SELECT code, first_us, {value_sql(metric.type, 'oc', 'os')} AS y, 0.0 AS x "
                f"FROM _unit_values WHERE oc > 0 AND metric = {sql_list([metric.name])} "
                f"AND {closed}"
            )
            y, x = "y", "x"
        # Units without events add nothing to the sums; their count comes from `arrived`.
        parts.append(
            f"SELECT {sql_list([metric.name])} AS metric, code, {day} AS day, sum({y}) AS sum_y, "
            f"sum({x}) AS sum_x, sum({y} * {y}) AS sum_yy, sum({x} * {x}) AS sum_xx, "
            f"sum({x} * {y}) AS sum_xy FROM ({per_unit}) AS u GROUP BY code, {day}"
        )
    sums = engine.frame(" UNION ALL ".join(parts))
    return _cumulative(metrics, variants, arrived, sums, end_us)


def _cumulative(
    metrics: Sequence[Metric],
    variants: Sequence[str | None],
    arrived: pd.DataFrame,
    sums: pd.DataFrame,
    end_us: int,
) -> pd.DataFrame:
    """Running sums over every day from the first window to close to the day of the end."""
    days = np.arange(int(arrived["day"].min()), end_us // DAY_US + 1, dtype=np.int64)
    grid = pd.MultiIndex.from_product(
        [[m.name for m in metrics], [c for c, v in enumerate(variants) if v is not None], days],
        names=["metric", "code", "day"],
    )
    n = arrived.astype({"code": np.int64, "day": np.int64, "n": np.int64}).set_index(
        ["code", "day"]
    )["n"]
    frame = pd.DataFrame(index=grid).reset_index()
    frame["n"] = n.reindex(pd.MultiIndex.from_arrays([frame["code"], frame["day"]])).to_numpy()
    if not sums.empty:
        sums = sums.astype({"code": np.int64, "day": np.int64})
        added = sums.set_index(["metric", "code", "day"])[list(_SUMS)].astype(float)
        frame[list(_SUMS)] = added.reindex(grid).to_numpy()
    else:
        frame[list(_SUMS)] = 0.0
    frame = frame.fillna({"n": 0, **dict.fromkeys(_SUMS, 0.0)})
    running = frame.groupby(["metric", "code"], sort=False)[["n", *_SUMS]].cumsum()
    out = pd.DataFrame({
        "day": [d.date() for d in pd.to_datetime(frame["day"] * DAY_US, unit="us")],
        "variant": [variants[c] for c in frame["code"]],
        "metric": frame["metric"],
        "n": running["n"].astype(np.int64),
        **{c: running[c].astype(float) for c in _SUMS},
    })  # fmt: skip
    return out.sort_values(["metric", "variant", "day"], ignore_index=True)


def empty_daily() -> pd.DataFrame:
    """A daily frame with the columns and no rows."""
    columns = ["day", "variant", "metric", "n", "sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy"]
    return pd.DataFrame({c: [] for c in columns})


def daily_looks(
    agg: Aggregates, metric: str, control: str, variant: str
) -> tuple[list[object], list[tuple[PairedStats, PairedStats]]]:
    """The days and cumulative (control, variant) aggregates the sequential test reads.

    One look per day, in time order, from the first day both arms have >= 2 matured
    units (and, for a ratio metric, a denominator other than 0 in both arms).
    """
    ratio = metric in agg.metrics and agg.metrics[metric].metric.type is MetricType.RATIO
    days, looks = [], []
    for day, arms in sorted(agg.daily_stats(metric).items(), key=lambda item: str(item[0])):
        if control not in arms or variant not in arms:
            continue
        c, v = arms[control], arms[variant]
        if min(c.n, v.n) < 2 or (ratio and (c.sum_x == 0 or v.sum_x == 0)):
            continue
        days.append(day)
        looks.append((c, v))
    return days, looks
