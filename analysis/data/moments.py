"""Per-variant moments of every metric, fixed-horizon and per day, in one statement.

Each metric's per-unit value (`analysis.data.metric_spec.value_sql`) becomes
``(code, y, x)`` rows over ``_unit_values`` (and the ``covariates`` view when given); their
sums Σy, Σx, Σy², Σx², Σxy by variant code are `PairedStats` (n comes from the unit
table: a unit without events adds nothing to any sum).  With daily looks, the same sums
per day a unit's observation window closed (`analysis.data.daily`) ride along in the same
``UNION ALL``: on Spark each statement is a job, so one statement instead of one per
metric and one more for the days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import pandas as pd

from abtest.experiment import Metric, MetricType
from analysis.data.daily import SUMS, daily_per_unit_sql
from analysis.data.metric_spec import ratio_per_unit_sql, sql_list, value_sql
from analysis.data.tables import MetricAggregates, QuantileSample
from analysis.statistics.aggregates import PairedStats, SampleStats

_FIXED_HORIZON: Final = -1  # the ``day`` of the whole-experiment sums


def _per_unit_sql(metric: Metric, *, pre_window: bool, covariate_table: bool) -> str:
    """``(code, y, x)`` per unit with events: the metric, and its covariate or denominator."""
    if metric.type is MetricType.RATIO:
        return ratio_per_unit_sql(metric, total="s")
    y = value_sql(metric.type, "c", "s", metric.cap)
    name = sql_list([metric.name])
    if covariate_table:
        return (
            f"SELECT coalesce(v.code, c.code) AS code, coalesce({y}, 0) AS y, "
            "coalesce(c.x, 0) AS x "
            f"FROM (SELECT * FROM _unit_values WHERE metric = {name}) AS v "
            "FULL JOIN (SELECT k.unit_id, a.code, CAST(k.value AS DOUBLE) AS x "
            "FROM covariates AS k JOIN _units AS a ON k.unit_id = a.unit_id "
            f"WHERE NOT a.crossed AND k.metric = {name}) AS c ON v.unit_id = c.unit_id"
        )
    x = value_sql(metric.type, "pc", "ps", metric.cap) if pre_window else "0.0"
    return f"SELECT code, {y} AS y, {x} AS x FROM _unit_values WHERE metric = {name}"


def _sums(metric: Metric, per_unit: str, day: str) -> str:
    return (
        f"SELECT {sql_list([metric.name])} AS metric, code, {day} AS day, "
        "sum(y) AS sum_y, sum(x) AS sum_x, sum(y * y) AS sum_yy, sum(x * x) AS sum_xx, "
        f"sum(x * y) AS sum_xy FROM ({per_unit}) AS u GROUP BY code"
        + (f", {day}" if day != str(_FIXED_HORIZON) else "")
    )


def moments_sql(
    metrics: Sequence[Metric],
    *,
    pre_window: bool,
    covariate_table: bool,
    window_us: int,
    daily_end_us: int | None,
) -> str:
    """One query: ``metric, code, day, sum_y, sum_x, sum_yy, sum_xx, sum_xy``.

    ``day`` is -1 for the fixed-horizon sums and the day (since the epoch) a unit's
    observation window closed for the daily ones (only with ``daily_end_us``, the end of
    the data; quantile metrics have neither).
    """
    parts = []
    for metric in metrics:
        if metric.type is MetricType.QUANTILE:
            continue
        per_unit = _per_unit_sql(metric, pre_window=pre_window, covariate_table=covariate_table)
        parts.append(_sums(metric, per_unit, str(_FIXED_HORIZON)))
        if daily_end_us is not None:
            daily, day = daily_per_unit_sql(metric, window_us=window_us, end_us=daily_end_us)
            parts.append(_sums(metric, daily, day))
    if not parts:  # only quantile metrics: an empty result with the columns
        return (
            "SELECT '' AS metric, 0 AS code, 0 AS day, 0.0 AS sum_y, 0.0 AS sum_x, "
            "0.0 AS sum_yy, 0.0 AS sum_xx, 0.0 AS sum_xy WHERE FALSE"
        )
    return " UNION ALL ".join(parts)


def metric_aggregates(
    metric: Metric,
    sums: pd.DataFrame,
    variants: Sequence[str],
    units: Mapping[str, int],
    *,
    covariate: bool,
    samples: Mapping[str, QuantileSample] | None = None,
) -> MetricAggregates:
    """One metric's `MetricAggregates` from the rows of `moments_sql` (all metrics')."""
    if metric.type is MetricType.QUANTILE:
        return MetricAggregates(metric, {}, None, samples)
    mine = sums[(sums["metric"] == metric.name) & (sums["day"] == _FIXED_HORIZON)]
    by_code = dict(zip(mine["code"].astype(np.int64), mine[list(SUMS)].to_numpy(dtype=float),
                       strict=True))  # fmt: skip
    paired = {}
    for code, variant in enumerate(variants):
        if variant in units:
            moments = by_code.get(code, np.zeros(len(SUMS)))
            paired[variant] = PairedStats(units[variant], *(float(v) for v in moments))
    if metric.type is MetricType.RATIO:
        return MetricAggregates(metric, dict(paired))
    stats: dict[str, SampleStats | PairedStats] = {v: p.y for v, p in paired.items()}
    return MetricAggregates(metric, stats, paired if covariate else None)
