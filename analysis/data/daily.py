"""Daily cumulative aggregates: the series behind the sequential test and the chart.

Reads the ``_units`` and ``_unit_values`` tables that `analysis.data.join.aggregate`
builds; its sums ride along in `analysis.data.moments`' one statement.

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
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from abtest.experiment import Metric, MetricType
from analysis.data.metric_spec import ratio_per_unit_sql, sql_list, value_sql
from analysis.statistics.aggregates import PairedStats

if TYPE_CHECKING:
    from analysis.data.tables import Aggregates

DAY_US: Final = 86_400_000_000
SUMS: Final = ("sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy")
"""The per-variant sums of a metric's (y, x) pairs, in the order the moments read them."""


def daily_per_unit_sql(metric: Metric, *, window_us: int, end_us: int) -> tuple[str, str]:
    """``(code, first_us, y, x)`` per unit whose observation window closed by ``end_us``,
    from its events inside the window (``oc``, ``os`` of ``_unit_values``), and the SQL of
    the day the window closed.  Units without events add nothing to the sums; their count
    comes from the unit table (`cumulative`'s ``arrived``)."""
    closed = f"first_us + {window_us} <= {end_us}"
    day = f"(first_us + {window_us}) // {DAY_US}"
    if metric.type is MetricType.RATIO:
        sql = ratio_per_unit_sql(
            metric, total="os", columns="code, first_us", where=f"oc > 0 AND {closed}"
        )
        return sql, day
    y = value_sql(metric.type, "oc", "os", metric.cap)
    return (
        f"SELECT code, first_us, {y} AS y, 0.0 AS x "
        f"FROM _unit_values WHERE oc > 0 AND metric = {sql_list([metric.name])} AND {closed}",
        day,
    )


def cumulative(
    metrics: Sequence[Metric],
    variants: Sequence[str | None],
    *,
    arrived: pd.DataFrame,
    sums: pd.DataFrame,
    end_us: int,
) -> pd.DataFrame:
    """The daily series: running sums over every day from the first window to close to
    the day of the end of the data.

    Parameters
    ----------
    metrics : sequence of Metric
        Binomial, count, sum and ratio metrics (quantile metrics have no per-unit value).
    variants : sequence of str or None
        The variants in the order of their codes; None for a code left out (no units).
    arrived : DataFrame
        ``code, close_day, units``: units whose window closed that day (by the end).
    sums : DataFrame
        ``metric, code, day, sum_y, sum_x, sum_yy, sum_xx, sum_xy`` of those units' values.
    end_us : int
        The end of the data, epoch microseconds.

    Returns
    -------
    DataFrame
        ``day, variant, metric, n, sum_y, sum_x, sum_yy, sum_xx, sum_xy``, cumulative.
    """
    metrics = list(metrics)
    if not metrics or arrived.empty:
        return empty_daily()
    days = np.arange(int(arrived["close_day"].min()), end_us // DAY_US + 1, dtype=np.int64)
    grid = pd.MultiIndex.from_product(
        [[m.name for m in metrics], [c for c, v in enumerate(variants) if v is not None], days],
        names=["metric", "code", "day"],
    )
    frame = pd.DataFrame(index=grid).reset_index()
    n = arrived.astype(np.int64).set_index(["code", "close_day"])["units"]
    frame["n"] = n.reindex(pd.MultiIndex.from_arrays([frame["code"], frame["day"]])).to_numpy()
    if len(sums):
        sums = sums.astype({"code": np.int64, "day": np.int64})
        added = sums.set_index(["metric", "code", "day"])[list(SUMS)].astype(float)
        frame[list(SUMS)] = added.reindex(grid).to_numpy()
    else:
        frame[list(SUMS)] = 0.0
    frame = frame.fillna({"n": 0, **dict.fromkeys(SUMS, 0.0)})
    running = frame.groupby(["metric", "code"], sort=False)[["n", *SUMS]].cumsum()
    out = pd.DataFrame({
        "day": [d.date() for d in pd.to_datetime(frame["day"] * DAY_US, unit="us")],
        "variant": [variants[c] for c in frame["code"]],
        "metric": frame["metric"],
        "n": running["n"].astype(np.int64),
        **{c: running[c].astype(float) for c in SUMS},
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
