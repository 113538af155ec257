"""Daily cumulative aggregates: the series behind the sequential test and the chart.

Reads the ``_assigned`` view and ``_events`` table that `analysis.join.aggregate` builds.

Without an attribution window, each look holds every unit exposed so far with its outcomes
so far, so early looks see units with less time to convert; for metrics that accumulate
after exposure the estimand drifts upwards over the first days, and the mSPRT's running
intersection can end below the final estimate.

With an attribution window ``W`` (``matured_after``), a look holds only the units whose
window has closed by the end of that day (first exposure + W), each with its whole
windowed value: every look estimates the same per-unit quantity, the observations the
sequential test sees are fixed once seen, and the drift is gone.  Units whose window is
still open at the last day of data are in the fixed-horizon analysis but in no look yet.

References: LaunchDarkly's "metric measurement windows" (a context counts only once its
window has fully completed) and Statsig Warehouse Native's cohort windows with "wait for"
(units that have not been in the experiment for their window are left out) do the same;
the mSPRT of Johari et al. (2017) assumes such i.i.d. per-unit observations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from abtest.experiment import Metric, MetricType
from analysis.data.metric_spec import interval_sql, source_metrics, sql_list, value_sql
from analysis.statistics.aggregates import SampleStats

if TYPE_CHECKING:
    import duckdb

    from analysis.data.tables import Aggregates


def daily_aggregates(
    con: duckdb.DuckDBPyConnection,
    metrics: Sequence[Metric],
    units: Mapping[str, int],
    *,
    matured_after: timedelta | None = None,
) -> pd.DataFrame:
    """Cumulative aggregates per day: each unit adds the change of its value on that day.

    A unit whose cumulative value moves from a to b on day d changes Σy by b - a and Σy²
    by b² - a² (likewise x and xy); summing these changes over days gives the moments of
    the cumulative per-unit values at every day's end without a grid of units by days.
    With ``matured_after`` a unit enters on the day its window closes, with all its
    (windowed) events on that day, and days run to the last day of data.
    """
    last_day = con.execute(
        "SELECT max(d) FROM (SELECT CAST(first_ts AS DATE) AS d FROM _assigned "
        "UNION ALL SELECT CAST(ts AS DATE) FROM _events WHERE post)"
    ).fetchall()[0][0]
    if matured_after is None:
        unit_day, units_sql = "CAST(first_ts AS DATE)", "_assigned"
        events = "(SELECT *, CAST(ts AS DATE) AS day FROM _events)"
    else:
        unit_day = f"CAST(first_ts + {interval_sql(matured_after)} AS DATE)"
        units_sql = f"_assigned WHERE {unit_day} <= DATE '{last_day}'"
        # Every event of a matured unit counts on the day its window closed.
        events = (
            f"(SELECT e.*, {unit_day} AS day FROM _events AS e JOIN _assigned "
            f"USING (unit_id) WHERE {unit_day} <= DATE '{last_day}')"
        )
    new_units = con.execute(
        f"SELECT {unit_day} AS day, variant, count(*) AS n FROM {units_sql} GROUP BY ALL"
    ).df()
    if new_units.empty:
        return empty_daily()
    first_day = new_units["day"].min()
    grid = pd.date_range(first_day, last_day, freq="D")
    new_units["day"] = pd.to_datetime(new_units["day"])
    frames = []
    for metric in metrics:
        if metric.type is MetricType.RATIO:
            num, den = source_metrics(metric)
            y_raw, x_raw = (f"sum(value) FILTER (WHERE metric = {sql_list([num])})",
                            f"sum(value) FILTER (WHERE metric = {sql_list([den])})")  # fmt: skip
            y_val, x_val = "coalesce(cy, 0)", "coalesce(cx, 0)"
            y_prev, x_prev = "coalesce(py, 0)", "coalesce(px, 0)"
            names = [num, den]
        else:
            y_raw = "sum(value)" if metric.type is MetricType.SUM else "count(*)"
            x_raw = "0.0"
            y_val = value_sql(metric.type, "cy", "cy")
            y_prev = value_sql(metric.type, "coalesce(py, 0)", "coalesce(py, 0)")
            x_val = x_prev = "0.0"
            names = [metric.name]
        sql = (
            f"WITH inc AS (SELECT unit_id, variant, day, {y_raw} AS iy, "
            f"{x_raw} AS ix FROM {events} WHERE post AND metric IN ({sql_list(names)}) "
            "GROUP BY ALL), "
            "cum AS (SELECT unit_id, variant, day, sum(iy) OVER w AS cy, sum(ix) OVER w AS cx "
            "FROM inc WINDOW w AS (PARTITION BY unit_id ORDER BY day)), "
            "lagged AS (SELECT variant, day, cy, cx, lag(cy) OVER w AS py, lag(cx) OVER w AS px "
            "FROM cum WINDOW w AS (PARTITION BY unit_id ORDER BY day)), "
            f"vals AS (SELECT variant, day, {y_val} AS y, {x_val} AS x, {y_prev} AS y0, "
            f"{x_prev} AS x0 FROM lagged) "
            "SELECT day, variant, sum(y - y0) AS sum_y, sum(x - x0) AS sum_x, "
            "sum(y * y - y0 * y0) AS sum_yy, sum(x * x - x0 * x0) AS sum_xx, "
            "sum(x * y - x0 * y0) AS sum_xy FROM vals GROUP BY ALL"
        )
        changes = con.execute(sql).df()
        changes["day"] = pd.to_datetime(changes["day"])
        for variant in units:
            frame = pd.DataFrame({"day": grid.date})
            part = changes[changes["variant"] == variant].set_index("day").reindex(grid)
            arrivals = new_units[new_units["variant"] == variant].set_index("day")["n"]
            frame["n"] = arrivals.reindex(grid).fillna(0).cumsum().to_numpy(dtype=np.int64)
            for column in ("sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy"):
                frame[column] = part[column].fillna(0.0).astype(float).cumsum().to_numpy()
            frame.insert(1, "variant", variant)
            frame.insert(2, "metric", metric.name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else empty_daily()


def empty_daily() -> pd.DataFrame:
    """A daily frame with the columns and no rows."""
    columns = ["day", "variant", "metric", "n", "sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy"]
    return pd.DataFrame({c: [] for c in columns})


def daily_looks(
    agg: Aggregates, metric: str, control: str, variant: str
) -> tuple[list[object], list[tuple[SampleStats, SampleStats]]]:
    """The days and cumulative (control, variant) aggregates where both arms have >= 2 units.

    These are the looks of the sequential test, one per day, in time order.
    """
    days, looks = [], []
    for day, arms in sorted(agg.daily_stats(metric).items(), key=lambda item: str(item[0])):
        if control in arms and variant in arms and min(arms[control].n, arms[variant].n) >= 2:
            days.append(day)
            looks.append((arms[control].y, arms[variant].y))
    return days, looks
