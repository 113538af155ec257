"""The per-unit join and the per-variant aggregation, pushed into DuckDB SQL.

Rules (each one pinned by a hand-computed case in ``tests/test_join.py``):

- a unit's first exposure defines its variant and its start; units exposed to more than
  one variant of the experiment (crossovers) are excluded and counted;
- outcomes count only at or after the unit's start, and before ``start + attribution
  window`` when a window is given;
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from abtest.errors import InvalidInput
from abtest.experiment import Metric, MetricType, metric_name_problem
from analysis.aggregates import PairedStats, SampleStats
from analysis.load import (
    Source,
    connect,
    register_covariates,
    register_exposures,
    register_outcomes,
)

if TYPE_CHECKING:
    import duckdb

DEFAULT_COVARIATE_WINDOW: Final = timedelta(days=14)
_MAX_VARIANTS: Final = 255
_MEAN_TYPES: Final = (MetricType.BINOMIAL, MetricType.COUNT, MetricType.SUM)


def parse_metric(text: str, *, field_name: str = "metric") -> Metric:
    """``"purchase:binomial"``, ``"clicks/searches:ratio"``, ``"latency_ms:p95:quantile"``.

    Raises
    ------
    InvalidInput
        Not ``NAME:TYPE``, an unknown type, or a name that does not fit the type.
    """
    name, sep, type_name = text.rpartition(":")
    if not sep or not name:
        raise InvalidInput(f"metric '{text}' must be NAME:TYPE, e.g. purchase:binomial", field_name)
    try:
        metric_type = MetricType(type_name)
    except ValueError:
        choices = ", ".join(t.value for t in MetricType)
        raise InvalidInput(
            f"metric '{text}': unknown type '{type_name}' (one of: {choices})", field_name
        ) from None
    problem = metric_name_problem(name, metric_type)
    if problem:
        raise InvalidInput(f"metric '{text}': {problem}", field_name)
    return Metric(name, metric_type)


def source_metrics(metric: Metric) -> tuple[str, ...]:
    """The event names a metric reads: ``clicks/searches`` -> (clicks, searches)."""
    if metric.type is MetricType.RATIO:
        num, den = metric.name.split("/")
        return (num, den)
    if metric.type is MetricType.QUANTILE:
        return (metric.name.rpartition(":")[0],)
    return (metric.name,)


def quantile_level(metric: Metric) -> float:
    """``latency_ms:p95`` -> 0.95."""
    return float(metric.name.rpartition(":")[2][1:]) / 100.0


@dataclass(frozen=True)
class QuantileSample:
    """Event values of one variant with the (integer-coded) unit each belongs to."""

    values: np.ndarray = field(compare=False)
    units: np.ndarray = field(compare=False)

    @property
    def n_units(self) -> int:
        """Units with at least one value."""
        return int(np.unique(self.units).size)


@dataclass(frozen=True)
class MetricAggregates:
    """One metric's per-variant aggregates.

    ``stats``: `SampleStats` of the per-unit value (binomial, count, sum) or `PairedStats`
    with y = numerator and x = denominator (ratio); empty for quantile metrics.
    ``covariate``: `PairedStats` with y = the metric and x = its pre-exposure value, for
    CUPED (binomial, count, sum), or None when no covariate was asked for.
    ``samples``: event values for quantile metrics, else None.
    """

    metric: Metric
    stats: Mapping[str, SampleStats | PairedStats]
    covariate: Mapping[str, PairedStats] | None = None
    samples: Mapping[str, QuantileSample] | None = None


@dataclass(frozen=True)
class Aggregates:
    """Everything the statistics need, reduced from the joined data.

    ``daily`` holds cumulative aggregates at the end of each UTC day (columns ``day,
    variant, metric, n, sum_y, sum_x, sum_yy, sum_xx, sum_xy``; x is 0 except for ratio
    metrics) for binomial, count, sum and ratio metrics; ``exposures_per_day`` the new
    units per day and variant (``day, variant, units``).
    """

    experiment: str
    config_versions: tuple[str, ...]
    units: Mapping[str, int]
    excluded_units: int
    start: datetime
    end: datetime
    metrics: Mapping[str, MetricAggregates]
    daily: pd.DataFrame = field(compare=False, repr=False)
    exposures_per_day: pd.DataFrame = field(compare=False, repr=False)

    @property
    def total_units(self) -> int:
        """Units exposed, crossovers included."""
        return sum(self.units.values()) + self.excluded_units

    @property
    def days(self) -> float:
        """Length of the data in days (first to last exposure or outcome)."""
        return max((self.end - self.start).total_seconds() / 86400.0, 0.0)

    def daily_stats(self, metric: str) -> dict[object, dict[str, PairedStats]]:
        """Cumulative `PairedStats` by day and variant for one metric (see ``daily``)."""
        rows = self.daily[self.daily["metric"] == metric]
        moments = rows[["sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy"]].to_numpy(dtype=float)
        out: dict[object, dict[str, PairedStats]] = {}
        for day, variant, n, sums in zip(
            rows["day"], rows["variant"], rows["n"].to_numpy(dtype=np.int64), moments, strict=True
        ):
            out.setdefault(day, {})[str(variant)] = PairedStats(int(n), *map(float, sums))
        return out


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
) -> Aggregates:
    """Join the registered ``exposures`` and ``outcomes`` views and aggregate per variant.

    ``covariate_window``: the pre-exposure window whose events give each unit's CUPED
    covariate (the same metric, same type); None for no covariate.  With
    ``use_covariate_table`` the view ``covariates(unit_id, metric, value)`` supplies it
    instead (units missing from it get 0, which keeps CUPED unbiased: any pre-exposure
    covariate does).

    Raises
    ------
    InvalidInput
        No metric, an unknown experiment, several experiments and none chosen, or a
        metric with no events in the outcomes.
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
    present = {str(r[0]) for r in con.execute("SELECT DISTINCT metric FROM outcomes").fetchall()}
    for metric in metrics:
        for name in source_metrics(metric):
            if name not in present:
                raise InvalidInput(
                    f"metric '{name}' (of '{metric.name}') has no events in the outcomes "
                    f"(present: {', '.join(sorted(present)[:20])})",
                    "metrics",
                )
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
        f"CAST(list_position([{_in_list(variants)}], variant) AS BIGINT) AS code "
        "FROM exposures WHERE experiment = ?) GROUP BY unit_id",
        [experiment],
    )
    code = "(((packed % 256) + 256) % 256)"  # the remainder of a negative packed is negative
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _assigned AS SELECT unit_id, "
        f"[{_in_list(variants)}][{code}] AS variant, "
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
    post = "e.ts >= a.first_ts" + (
        f" AND e.ts < a.first_ts + {_interval(attribution_window)}" if attribution_window else ""
    )
    pre = (
        f"e.ts < a.first_ts AND e.ts >= a.first_ts - {_interval(covariate_window)}"
        if covariate_window
        else "FALSE"
    )
    # Dedupe by event id first (earliest row wins), then keep events in either window.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _events AS "
        "WITH d AS (SELECT event_id, arg_min({'u': unit_id, 'm': metric, 'v': value}, ts) AS r,"
        f" min(ts) AS ts FROM outcomes WHERE metric IN ({_in_list(names)}) GROUP BY event_id) "
        "SELECT e.r.u AS unit_id, a.variant, e.r.m AS metric, e.r.v AS value, e.ts, "
        f"({post}) AS post FROM d AS e JOIN _assigned AS a ON e.r.u = a.unit_id "
        f"WHERE ({post}) OR ({pre})"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unit_values AS SELECT unit_id, variant, metric, "
        "count(*) FILTER (WHERE post) AS c, coalesce(sum(value) FILTER (WHERE post), 0) AS s, "
        "count(*) FILTER (WHERE NOT post) AS pc, "
        "coalesce(sum(value) FILTER (WHERE NOT post), 0) AS ps "
        "FROM _events GROUP BY unit_id, variant, metric"
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
    daily_frame = (
        _daily(con, [m for m in metrics if m.type is not MetricType.QUANTILE], units)
        if daily
        else _empty_daily()
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
    )


# -- SQL pieces ---------------------------------------------------------------------------
def _value_sql(metric_type: MetricType, count: str, total: str) -> str:
    """The per-unit value from its event count and value sum."""
    if metric_type is MetricType.BINOMIAL:
        return f"CAST({count} > 0 AS DOUBLE)"
    if metric_type is MetricType.COUNT:
        return f"CAST({count} AS DOUBLE)"
    return f"CAST({total} AS DOUBLE)"


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
            "SELECT variant, unit_id, value FROM _events WHERE post AND metric = ?",
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
    y = _value_sql(metric.type, "c", "s")
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
        x = _value_sql(metric.type, "pc", "ps") if pre_window else "0.0"
        paired = _paired(
            con, f"SELECT variant, {y} AS y, {x} AS x FROM _unit_values WHERE metric = ?",
            units, [metric.name],
        )  # fmt: skip
    stats: dict[str, SampleStats | PairedStats] = {v: p.y for v, p in paired.items()}
    covariate = paired if (pre_window or covariate_table) else None
    return MetricAggregates(metric, stats, covariate)


def _daily(
    con: duckdb.DuckDBPyConnection, metrics: Sequence[Metric], units: Mapping[str, int]
) -> pd.DataFrame:
    """Cumulative aggregates per day: each unit adds the change of its value on that day.

    A unit whose cumulative value moves from a to b on day d changes Σy by b - a and Σy²
    by b² - a² (likewise x and xy); summing these changes over days gives the moments of
    the cumulative per-unit values at every day's end without a grid of units by days.
    """
    days = con.execute(
        "SELECT min(d), max(d) FROM (SELECT CAST(first_ts AS DATE) AS d FROM _assigned "
        "UNION ALL SELECT CAST(ts AS DATE) FROM _events WHERE post)"
    ).fetchall()[0]
    assert days is not None
    grid = pd.date_range(days[0], days[1], freq="D")
    new_units = con.execute(
        "SELECT CAST(first_ts AS DATE) AS day, variant, count(*) AS n FROM _assigned GROUP BY ALL"
    ).df()
    new_units["day"] = pd.to_datetime(new_units["day"])
    frames = []
    for metric in metrics:
        if metric.type is MetricType.RATIO:
            num, den = source_metrics(metric)
            y_raw, x_raw = (f"sum(value) FILTER (WHERE metric = {_in_list([num])})",
                            f"sum(value) FILTER (WHERE metric = {_in_list([den])})")  # fmt: skip
            y_val, x_val = "coalesce(cy, 0)", "coalesce(cx, 0)"
            y_prev, x_prev = "coalesce(py, 0)", "coalesce(px, 0)"
            names = [num, den]
        else:
            y_raw = "sum(value)" if metric.type is MetricType.SUM else "count(*)"
            x_raw = "0.0"
            y_val = _value_sql(metric.type, "cy", "cy")
            y_prev = _value_sql(metric.type, "coalesce(py, 0)", "coalesce(py, 0)")
            x_val = x_prev = "0.0"
            names = [metric.name]
        sql = (
            f"WITH inc AS (SELECT unit_id, variant, CAST(ts AS DATE) AS day, {y_raw} AS iy, "
            f"{x_raw} AS ix FROM _events WHERE post AND metric IN ({_in_list(names)}) "
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
    return pd.concat(frames, ignore_index=True) if frames else _empty_daily()


def _empty_daily() -> pd.DataFrame:
    columns = ["day", "variant", "metric", "n", "sum_y", "sum_x", "sum_yy", "sum_xx", "sum_xy"]
    return pd.DataFrame({c: [] for c in columns})


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


def _interval(window: timedelta | None) -> str:
    assert window is not None
    return f"INTERVAL {int(window.total_seconds() * 1_000_000)} MICROSECONDS"


def _in_list(names: Sequence[str]) -> str:
    return ", ".join("'" + n.replace("'", "''") + "'" for n in names)
