"""The per-unit join and the per-variant aggregation, pushed into DuckDB SQL.

Rules (each one pinned by a hand-computed case in ``tests/test_join.py``):

- a unit's first exposure defines its variant and its start; units exposed to more than
  one variant of the experiment (crossovers) are excluded and counted;
- outcomes count only at or after the unit's start, and before ``start + attribution
  window`` when a window is given (a metric's own ``attribution_window_hours``, from its
  catalogue definition, wins for the events it reads);
- a count or sum metric with a ``cap`` has each unit's value capped at it;
- exposed units without outcomes count as zero / not converted: ``n`` is the number of
  assigned units, never the number of units with events;
- a duplicated ``event_id`` counts once (its earliest row);
- per-unit values by metric type: ``binomial`` 1 if the unit had an event else 0;
  ``count`` its number of events; ``sum`` the sum of its values; ``ratio`` ``num/den``
  the pair (Σ num values, Σ den values); ``quantile`` ``name:pNN`` the event values
  themselves, kept with their unit for a unit-clustered interval.

Only sufficient statistics (`SampleStats`, `PairedStats`) leave the engine, except for
quantile metrics, whose event values are needed whole.  Because zero-valued units add
nothing to Σy, Σy² or Σxy, the sums come from the units that have events and ``n`` from
the unit table: no zero rows are ever materialised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from abtest.errors import InvalidInput
from abtest.experiment import Metric, MetricType
from analysis.data.daily import daily_aggregates, empty_daily
from analysis.data.load import (
    Source,
    connect,
    register_covariates,
    register_exposures,
    register_outcomes,
)
from analysis.data.metric_spec import (
    interval_sql,
    longest_window,
    parse_metric,
    quantile_level,
    source_metrics,
    sql_list,
    value_sql,
    window_sql,
)
from analysis.data.tables import (
    DEFAULT_COVARIATE_WINDOW,
    DEFAULT_OBSERVATION_WINDOW,
    Aggregates,
    EventCounts,
    MetricAggregates,
    QuantileSample,
)
from analysis.statistics.aggregates import PairedStats, SampleStats

if TYPE_CHECKING:
    import duckdb

_MAX_VARIANTS: Final = 255


def join_and_aggregate(
    exposures: Source,
    outcomes: Source,
    *,
    metrics: Sequence[Metric],
    experiment: str | None = None,
    attribution_window: timedelta | None = None,
    covariate_window: timedelta | None = DEFAULT_COVARIATE_WINDOW,
    covariates: Source | None = None,
    daily: bool = True,
    observation_window: timedelta | None = None,
    as_of: datetime | None = None,
) -> Aggregates:
    """Load both sources into a fresh DuckDB connection and run `aggregate`."""
    con = connect()
    try:
        register_exposures(con, exposures)
        register_outcomes(con, outcomes)
        if covariates is not None:
            register_covariates(con, covariates)
        return aggregate(
            con,
            metrics=metrics,
            experiment=experiment,
            attribution_window=attribution_window,
            covariate_window=None if covariates is not None else covariate_window,
            use_covariate_table=covariates is not None,
            daily=daily,
            observation_window=observation_window,
            as_of=as_of,
        )
    finally:
        con.close()


def aggregate(
    con: duckdb.DuckDBPyConnection,
    *,
    metrics: Sequence[Metric],
    experiment: str | None = None,
    attribution_window: timedelta | None = None,
    covariate_window: timedelta | None = DEFAULT_COVARIATE_WINDOW,
    use_covariate_table: bool = False,
    daily: bool = True,
    observation_window: timedelta | None = None,
    as_of: datetime | None = None,
) -> Aggregates:
    """Join the registered ``exposures`` and ``outcomes`` views and aggregate per variant.

    ``covariate_window``: the pre-exposure window whose events give each unit's CUPED
    covariate (the same metric, same type); None for no covariate.  With
    ``use_covariate_table`` the view ``covariates(unit_id, metric, value)`` supplies it
    instead (units missing from it get 0, which keeps CUPED unbiased: any pre-exposure
    covariate does).  ``observation_window``: the per-unit window of the daily looks
    (`analysis.data.daily`); default the attribution window, else
    `DEFAULT_OBSERVATION_WINDOW`.  ``as_of``: the time the data are complete up to (for
    live data, the time of the analysis); a unit's window has closed when it ends by then.
    Default (and never less than) the last exposure or counted outcome.

    A metric without events (yet) is not an error: its aggregates are zeros and
    `Aggregates.events_missing` names it, so the analysis can say so on its row.

    Raises
    ------
    InvalidInput
        No metric, a metric listed twice, an unknown experiment, or several experiments
        and none chosen.
    """
    if not metrics:
        raise InvalidInput("at least one metric is required", "metrics")
    seen: set[str] = set()
    for metric in metrics:
        if metric.name in seen:
            raise InvalidInput(f"metric '{metric.name}' is listed twice", "metrics")
        seen.add(metric.name)
    experiment = _resolve_experiment(con, experiment)
    names = sorted({name for m in metrics for name in source_metrics(m)})
    found = con.execute(
        "SELECT DISTINCT variant, config_version FROM exposures WHERE experiment = ?",
        [experiment],
    ).fetchall()
    variants = sorted({str(r[0]) for r in found})
    versions = tuple(sorted({str(r[1]) for r in found if r[1] is not None}))
    if len(variants) > _MAX_VARIANTS:
        raise InvalidInput(
            f"experiment '{experiment}' has {len(variants)} variants in the exposures "
            f"(at most {_MAX_VARIANTS} are supported)",
            "exposures.variant",
        )
    # One aggregate finds each unit's first exposure and its variant: the minimum of
    # (epoch microseconds * 256 + variant code) orders by time first and carries the code
    # along.  Integers instead of strings and timestamps make this 10M-row group-by, the
    # heaviest step of the analysis, about 1.5x faster than arg_min(variant, ts).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _units AS SELECT unit_id, "
        "min(epoch_us(ts) * 256 + code) AS packed, min(code) <> max(code) AS crossed "
        "FROM (SELECT unit_id, ts, "
        f"CAST(list_position([{sql_list(variants)}], variant) AS BIGINT) AS code "
        "FROM exposures WHERE experiment = ?) GROUP BY unit_id",
        [experiment],
    )
    code = "(((packed % 256) + 256) % 256)"  # the remainder of a negative packed is negative
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _assigned AS SELECT unit_id, "
        f"[{sql_list(variants)}][{code}] AS variant, "
        f"make_timestamp((packed - {code}) // 256) AS first_ts FROM _units WHERE NOT crossed"
    )
    units = {
        str(v): int(n)
        for v, n in con.execute(
            "SELECT variant, count(*) FROM _assigned GROUP BY variant ORDER BY variant"
        ).fetchall()
    }
    excluded_row = con.execute("SELECT count(*) FROM _units WHERE crossed").fetchall()[0]
    excluded = int(excluded_row[0]) if excluded_row else 0
    late = window_sql(metrics, attribution_window, event="e.r.m", time="e.ts", start="a.first_ts")
    post = f"e.ts >= a.first_ts AND NOT ({late})"
    pre = (
        f"e.ts < a.first_ts AND e.ts >= a.first_ts - {interval_sql(covariate_window)}"
        if covariate_window
        else "FALSE"
    )
    # Dedupe by event id first (earliest row wins); keep every event of an assigned unit,
    # marked as counted (post) or covariate (pre); the rest are counted as dropped.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _dedup AS SELECT event_id, "
        "arg_min({'u': unit_id, 'm': metric, 'v': value}, ts) AS r, min(ts) AS ts, "
        f"count(*) AS copies FROM outcomes WHERE metric IN ({sql_list(names)}) GROUP BY event_id"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _events AS "
        "SELECT e.r.u AS unit_id, a.variant, e.r.m AS metric, e.r.v AS value, e.ts, "
        f"({post}) AS post, ({pre}) AS pre, a.first_ts "
        "FROM _dedup AS e JOIN _assigned AS a ON e.r.u = a.unit_id"
    )
    events, metric_events = _event_counts(con)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unit_values AS SELECT unit_id, variant, metric, "
        "count(*) FILTER (WHERE post) AS c, coalesce(sum(value) FILTER (WHERE post), 0) AS s, "
        "count(*) FILTER (WHERE pre) AS pc, "
        "coalesce(sum(value) FILTER (WHERE pre), 0) AS ps "
        "FROM _events WHERE post OR pre GROUP BY unit_id, variant, metric"
    )
    results = {
        m.name: _metric_aggregates(con, m, units, covariate_window is not None, use_covariate_table)
        for m in metrics
    }
    span = con.execute(
        "SELECT least(min(first_ts), (SELECT min(ts) FROM _events WHERE post)), "
        "greatest(max(first_ts), (SELECT max(ts) FROM _events WHERE post)) FROM _assigned"
    ).fetchall()[0]
    assert span is not None
    exposures_per_day = con.execute(
        "SELECT CAST(first_ts AS DATE) AS day, variant, count(*) AS units FROM _assigned "
        "GROUP BY ALL ORDER BY day, variant"
    ).df()
    window = (observation_window or attribution_window or longest_window(metrics)
              or DEFAULT_OBSERVATION_WINDOW)  # fmt: skip
    daily_frame = (
        daily_aggregates(
            con,
            [m for m in metrics if m.type is not MetricType.QUANTILE],
            units,
            window=window,
            end=_as_of(span[1], as_of),
        )
        if daily and span[1] is not None
        else empty_daily()
    )
    return Aggregates(
        experiment=experiment,
        config_versions=versions,
        units=units,
        excluded_units=excluded,
        start=span[0],
        end=span[1],
        metrics=results,
        daily=daily_frame,
        exposures_per_day=exposures_per_day,
        observation_window=window,
        events=events,
        metric_events=metric_events,
        undefined_metrics=_undefined_metrics(con, names),
    )


# -- SQL pieces ---------------------------------------------------------------------------
_MOMENTS: Final = (
    "SELECT variant, sum(y), sum(x), sum(y * y), sum(x * x), sum(x * y) FROM ({}) GROUP BY variant"
)


def _paired(
    con: duckdb.DuckDBPyConnection, per_unit_sql: str, units: Mapping[str, int], params: list[str]
) -> dict[str, PairedStats]:
    rows = {str(r[0]): r[1:] for r in con.execute(_MOMENTS.format(per_unit_sql), params).fetchall()}
    out = {}
    for variant, n in units.items():
        sums = rows.get(variant, (0.0,) * 5)
        out[variant] = PairedStats(n, *(float(s or 0.0) for s in sums))
    return out


def _metric_aggregates(
    con: duckdb.DuckDBPyConnection,
    metric: Metric,
    units: Mapping[str, int],
    pre_window: bool,
    covariate_table: bool,
) -> MetricAggregates:
    if metric.type is MetricType.QUANTILE:
        frame = con.execute(
            # A fixed order makes the seeded bootstrap reproducible whatever order the
            # events arrived in.
            "SELECT variant, unit_id, value FROM _events WHERE post AND metric = ? "
            "ORDER BY unit_id, value",
            [source_metrics(metric)[0]],
        ).df()
        codes = pd.factorize(frame["unit_id"])[0]
        samples = {}
        for variant in units:
            mask = (frame["variant"] == variant).to_numpy()
            samples[variant] = QuantileSample(
                frame["value"].to_numpy(dtype=float)[mask], codes[mask].astype(np.int64)
            )
        return MetricAggregates(metric, {}, None, samples)
    if metric.type is MetricType.RATIO:
        num, den = source_metrics(metric)
        sql = (
            "SELECT variant, sum(s) FILTER (WHERE metric = ?) AS y, "
            "sum(s) FILTER (WHERE metric = ?) AS x FROM _unit_values "
            "WHERE metric IN (?, ?) GROUP BY unit_id, variant"
        )
        per_unit = f"SELECT variant, coalesce(y, 0) AS y, coalesce(x, 0) AS x FROM ({sql})"
        ratio = _paired(con, per_unit, units, [num, den, num, den])
        return MetricAggregates(metric, dict(ratio))
    y = value_sql(metric.type, "c", "s", metric.cap)
    if covariate_table:
        sql = (
            f"SELECT coalesce(v.variant, c.variant) AS variant, coalesce({y}, 0) AS y, "
            "coalesce(c.x, 0) AS x FROM (SELECT * FROM _unit_values WHERE metric = ?) AS v "
            "FULL JOIN (SELECT k.unit_id, a.variant, CAST(k.value AS DOUBLE) AS x "
            "FROM covariates AS k JOIN _assigned AS a USING (unit_id) WHERE k.metric = ?) AS c "
            "ON v.unit_id = c.unit_id"
        )
        paired = _paired(con, sql, units, [metric.name, metric.name])
    else:
        x = value_sql(metric.type, "pc", "ps", metric.cap) if pre_window else "0.0"
        paired = _paired(
            con, f"SELECT variant, {y} AS y, {x} AS x FROM _unit_values WHERE metric = ?",
            units, [metric.name],
        )  # fmt: skip
    stats: dict[str, SampleStats | PairedStats] = {v: p.y for v, p in paired.items()}
    covariate = paired if (pre_window or covariate_table) else None
    return MetricAggregates(metric, stats, covariate)


def _as_of(end: datetime, as_of: datetime | None) -> datetime:
    """The later of the data's end and ``as_of`` (made naive UTC, as the data are)."""
    if as_of is None:
        return end
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    return max(end, as_of)


def _event_counts(con: duckdb.DuckDBPyConnection) -> tuple[EventCounts, dict[str, int]]:
    """Where each deduplicated event of the analysed metrics went (see `EventCounts`)."""
    total, copies = con.execute("SELECT count(*), coalesce(sum(copies), 0) FROM _dedup").fetchall()[
        0
    ]
    counted, covariate, before, outside = con.execute(
        "SELECT count(*) FILTER (WHERE post), count(*) FILTER (WHERE pre), "
        "count(*) FILTER (WHERE NOT post AND NOT pre AND ts < first_ts), "
        "count(*) FILTER (WHERE NOT post AND ts >= first_ts) FROM _events"
    ).fetchall()[0]
    crossover = con.execute(
        "SELECT count(*) FROM _dedup AS e JOIN _units AS u ON e.r.u = u.unit_id WHERE u.crossed"
    ).fetchall()[0][0]
    assigned = counted + covariate + before + outside
    per_metric = dict(
        con.execute("SELECT metric, count(*) FROM _events WHERE post GROUP BY metric").fetchall()
    )
    counts = EventCounts(
        total=int(total), counted=int(counted), covariate=int(covariate),
        unknown_unit=int(total - assigned - crossover), crossover_unit=int(crossover),
        before_exposure=int(before), outside_window=int(outside),
        duplicates=int(copies - total),
    )  # fmt: skip
    return counts, {str(k): int(v) for k, v in per_metric.items()}


def _undefined_metrics(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, int]:
    """Event names of this experiment's units that no analysed metric reads, with counts."""
    rows = con.execute(
        "SELECT o.metric, count(*) FROM outcomes AS o JOIN _assigned AS a USING (unit_id) "
        f"WHERE o.metric NOT IN ({sql_list(names)}) GROUP BY o.metric ORDER BY 2 DESC, 1"
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def _resolve_experiment(con: duckdb.DuckDBPyConnection, experiment: str | None) -> str:
    found = sorted(
        str(r[0]) for r in con.execute("SELECT DISTINCT experiment FROM exposures").fetchall()
    )
    if experiment is None:
        if len(found) > 1:
            raise InvalidInput(
                f"exposures hold several experiments ({', '.join(found[:10])}); choose one",
                "experiment",
            )
        return found[0]
    if experiment not in found:
        raise InvalidInput(
            f"experiment '{experiment}' has no exposures (found: {', '.join(found[:10])})",
            "experiment",
        )
    return experiment


__all__ = [
    "aggregate",
    "join_and_aggregate",
    "parse_metric",
    "quantile_level",
    "source_metrics",
]
