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

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from abtest.experiment import Metric, MetricType
from analysis.data.metric_spec import interval_sql, source_metrics, sql_list, value_sql
from analysis.statistics.aggregates import PairedStats

if TYPE_CHECKING:
    import duckdb

    from analysis.data.tables import Aggregates


def daily_aggregates(
    con: duckdb.DuckDBPyConnection,
    metrics: Sequence[Metric],
    units: Mapping[str, int],
    *,
    window: timedelta,
    end: datetime,
) -> pd.DataFrame:
    """Cumulative aggregates per day of the units whose observation window has closed.

    Parameters
    ----------
    con : duckdb connection
        With ``_assigned`` and ``_events`` (see `analysis.data.join.aggregate`).
    metrics : sequence of Metric
        Binomial, count, sum and ratio metrics (quantile metrics have no per-unit value).
    units : mapping
        The variants (their order is kept).
    window : timedelta
        The per-unit observation window ``W`` (> 0).
    end : datetime
        The end of the data: a unit whose window closes after it is not in any look.

    Returns
    -------
    DataFrame
        ``day, variant, metric, n, sum_y, sum_x, sum_yy, sum_xx, sum_xy``, cumulative over
        the days from the first window to close up to the day of ``end``.
    """
    metrics = list(metrics)
    if not metrics or not units:
        return empty_daily()
    closes = f"first_ts + {interval_sql(window)}"
    matured = (f"SELECT unit_id, variant, {closes} AS closes, CAST({closes} AS DATE) AS day "
               f"FROM _assigned WHERE {closes} <= $end")  # fmt: skip
    parts = []
    for metric in metrics:
        if metric.type is MetricType.RATIO:
            num, den = source_metrics(metric)
            y = f"coalesce(sum(e.value) FILTER (WHERE e.metric = {sql_list([num])}), 0)"
            x = f"coalesce(sum(e.value) FILTER (WHERE e.metric = {sql_list([den])}), 0)"
            names = [num, den]
        else:
            y = value_sql(metric.type, "count(*)", "sum(e.value)", metric.cap)
            x, names = "0.0", [metric.name]
        # Units without events add nothing to the sums; their count comes from `arrived`.
        parts.append(
            f"SELECT {sql_list([metric.name])} AS metric, m.variant, m.day, {y} AS y, {x} AS x "
            f"FROM _matured AS m JOIN _events AS e USING (unit_id) "
            f"WHERE e.post AND e.ts < m.closes AND e.metric IN ({sql_list(names)}) "
            "GROUP BY m.unit_id, m.variant, m.day"
        )
    sql = f"""
        WITH _matured AS ({matured}),
        arrived AS (SELECT day, variant, count(*) AS n FROM _matured GROUP BY ALL),
        sums AS (SELECT metric, variant, day, sum(y) AS y, sum(x) AS x, sum(y * y) AS yy,
                 sum(x * x) AS xx, sum(x * y) AS xy FROM ({" UNION ALL ".join(parts)})
                 GROUP BY ALL),
        grid AS (SELECT CAST(g.d AS DATE) AS day, v.variant, k.metric
                 FROM range((SELECT min(day) FROM arrived), CAST($end AS DATE) + 1,
                            INTERVAL 1 DAY) AS g(d),
                 (SELECT unnest([{sql_list(list(units))}]) AS variant) AS v,
                 (SELECT unnest([{sql_list([m.name for m in metrics])}]) AS metric) AS k)
        SELECT grid.day, grid.variant, grid.metric,
               CAST(sum(coalesce(arrived.n, 0)) OVER w AS BIGINT) AS n,
               sum(coalesce(sums.y, 0)) OVER w AS sum_y, sum(coalesce(sums.x, 0)) OVER w AS sum_x,
               sum(coalesce(sums.yy, 0)) OVER w AS sum_yy,
               sum(coalesce(sums.xx, 0)) OVER w AS sum_xx,
               sum(coalesce(sums.xy, 0)) OVER w AS sum_xy
        FROM grid LEFT JOIN arrived USING (day, variant) LEFT JOIN sums USING (metric, variant, day)
        WINDOW w AS (PARTITION BY grid.metric, grid.variant ORDER BY grid.day)
        ORDER BY grid.metric, grid.variant, grid.day
    """
    frame = con.execute(sql, {"end": end}).df()
    if frame.empty:
        return empty_daily()
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    for column in ("sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy"):
        frame[column] = frame[column].astype(float)
    return frame


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
