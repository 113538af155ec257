"""The per-unit join and the per-variant aggregation, as SQL that runs on any engine.

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

The statements are written once, in DuckDB's dialect, and run on the engine chosen
(`analysis.data.engines`: DuckDB as written, Spark transpiled by SQLGlot).  Only
sufficient statistics (`SampleStats`, `PairedStats`) leave the engine, except for quantile
metrics, whose event values are needed whole.  Because zero-valued units add nothing to
Σy, Σy² or Σxy, the sums come from the units that have events and ``n`` from the unit
table: no zero rows are ever materialised.  Variants travel as small integer codes and
times as epoch microseconds; names and datetimes come back only in the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from abtest.errors import InvalidInput
from abtest.experiment import Metric, MetricType
from analysis.data.daily import DAY_US, cumulative, empty_daily
from analysis.data.engines import open_engine
from analysis.data.load import Source, register_covariates, register_exposures, register_outcomes
from analysis.data.metric_spec import (
    micros,
    parse_metric,
    quantile_level,
    source_metrics,
    sql_list,
    window_sql,
)
from analysis.data.moments import metric_aggregates, moments_sql
from analysis.data.tables import (
    DEFAULT_COVARIATE_WINDOW,
    Aggregates,
    EventCounts,
    QuantileSample,
    observation_window_for,
)

if TYPE_CHECKING:
    from analysis.data.engines import Engine

_MAX_VARIANTS: Final = 255
_EPOCH: Final = datetime(1970, 1, 1)


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
    engine: str = "duckdb",
    spark_master: str | None = None,
) -> Aggregates:
    """Open both sources in a fresh engine (``"duckdb"`` or ``"spark"``) and `aggregate`."""
    runner = open_engine(engine, spark_master=spark_master)
    try:
        register_exposures(runner, exposures, experiment=experiment)
        register_outcomes(runner, outcomes)
        if covariates is not None:
            register_covariates(runner, covariates)
        return aggregate(
            runner,
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
        runner.close()


def aggregate(
    engine: Engine,
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
    experiment, variants, versions = _experiment_variants(engine, experiment)
    names = sorted({name for m in metrics for name in source_metrics(m)})
    late = window_sql(metrics, attribution_window, event="e.metric", time="e.ts_us",
                      start="u.first_us")  # fmt: skip
    window = observation_window_for(metrics, observation_window, attribution_window)
    _build_units(engine, experiment, variants)
    _build_events(engine, names, late, covariate_window, window)
    events, metric_events, span = _event_counts(engine, names)
    # The end of the data bounds the looks: a unit is in them once its window closed by then.
    looks_end = None if span[1] is None else max(span[1], _as_of_us(as_of))
    summary = _unit_summary(engine, variants, micros(window), looks_end)
    assigned = summary[~summary["crossed"]]
    counts = assigned.groupby("variant")["units"].sum()
    units = {v: int(counts[v]) for v in variants if v in counts.index}  # variants with units
    sums = engine.frame(
        moments_sql(metrics, pre_window=covariate_window is not None,
                    covariate_table=use_covariate_table, window_us=micros(window),
                    daily_end_us=looks_end if daily else None)
    )  # fmt: skip
    results = {
        m.name: metric_aggregates(
            m, sums, variants, units, covariate=covariate_window is not None or use_covariate_table,
            samples=_quantile_samples(engine, m, variants, units)
            if m.type is MetricType.QUANTILE else None,
        )
        for m in metrics
    }  # fmt: skip
    per_day = pd.DataFrame(assigned.groupby(["day", "variant"], as_index=False)["units"].sum())
    per_day["day"] = pd.to_datetime(per_day["day"] * DAY_US, unit="us")
    matured = assigned[assigned["matured"]]
    daily_frame = (
        cumulative(
            [m for m in metrics if m.type is not MetricType.QUANTILE],
            [v if v in units else None for v in variants],
            arrived=pd.DataFrame(
                matured.groupby(["code", "close_day"], as_index=False)["units"].sum()
            ),
            sums=sums[sums["day"] >= 0],
            end_us=looks_end,
        )
        if daily and looks_end is not None and len(matured)
        else empty_daily()
    )
    return Aggregates(
        experiment=experiment,
        config_versions=versions,
        units=units,
        excluded_units=int(summary.loc[summary["crossed"], "units"].sum()),
        start=_datetime(span[0]),
        end=_datetime(span[1]),
        metrics=results,
        daily=daily_frame,
        exposures_per_day=per_day.sort_values(["day", "variant"], ignore_index=True),
        observation_window=window,
        events=events,
        metric_events=metric_events,
        undefined_metrics=_undefined_metrics(engine, names),
    )


# -- the steps --------------------------------------------------------------------------------
def _experiment_variants(
    engine: Engine, experiment: str | None
) -> tuple[str, list[str], tuple[str, ...]]:
    """The experiment analysed, its variants (sorted) and config versions, in one scan."""
    rows = engine.rows(
        "SELECT experiment, variant, config_version FROM exposures "
        "GROUP BY experiment, variant, config_version"
    )
    found = sorted({str(r[0]) for r in rows})
    if experiment is None:
        if len(found) > 1:
            raise InvalidInput(
                f"exposures hold several experiments ({', '.join(found[:10])}); choose one",
                "experiment",
            )
        experiment = found[0]
    elif experiment not in found:
        raise InvalidInput(
            f"experiment '{experiment}' has no exposures (found: {', '.join(found[:10])})",
            "experiment",
        )
    mine = [r for r in rows if str(r[0]) == experiment]
    variants = sorted({str(r[1]) for r in mine})
    if len(variants) > _MAX_VARIANTS:
        raise InvalidInput(
            f"experiment '{experiment}' has {len(variants)} variants in the exposures "
            f"(at most {_MAX_VARIANTS} are supported)",
            "exposures.variant",
        )
    versions = tuple(sorted({str(r[2]) for r in mine if r[2] is not None}))
    return experiment, variants, versions


def _build_units(engine: Engine, experiment: str, variants: Sequence[str]) -> None:
    """``_units(unit_id, crossed, code, first_us)``: each unit's first exposure.

    One aggregate finds it and its variant: the minimum of (epoch microseconds * 256 +
    variant code) orders by time first and carries the code along.  Integers instead of
    strings and timestamps make this 10M-row group-by, the heaviest step of the
    analysis, about 1.5x faster than arg_min(variant, ts).
    """
    case = " ".join(f"WHEN {sql_list([v])} THEN {i}" for i, v in enumerate(variants))
    packed = (
        "SELECT unit_id, min(ts_us * 256 + code) AS packed, min(code) <> max(code) AS crossed "
        f"FROM (SELECT unit_id, ts_us, CASE variant {case} END AS code FROM exposures "
        f"WHERE experiment = {sql_list([experiment])}) AS x GROUP BY unit_id"
    )
    code = "(((packed % 256) + 256) % 256)"  # the remainder of a negative packed is negative
    engine.table(
        "_units",
        f"SELECT unit_id, crossed, CAST({code} AS INTEGER) AS code, "
        f"(packed - {code}) // 256 AS first_us FROM ({packed}) AS p",
    )


def _build_events(
    engine: Engine,
    names: Sequence[str],
    late: str,
    covariate_window: timedelta | None,
    window: timedelta,
) -> None:
    """``_events``: each deduplicated event of the analysed metrics with its unit's facts.

    Dedupe by event id first (earliest row wins, ties broken by content), then attach the
    unit (a left join: events of units never exposed stay, to be counted).  ``post``:
    counted (at or after the start and not ``late``, the SQL true past the event's
    metric's attribution window: `analysis.data.metric_spec.window_sql`); ``pre``: in the
    CUPED pre-exposure window; ``obs``: counted and inside the unit's observation window.
    """
    post = f"e.ts_us >= u.first_us AND NOT ({late})"
    pre = (
        f"e.ts_us < u.first_us AND e.ts_us >= u.first_us - {micros(covariate_window)}"
        if covariate_window
        else "FALSE"
    )
    # The smallest (time, unit, metric, value) of an id's rows: its earliest, and among rows
    # of the same time (a client reusing an id) one defined row, whatever order they arrive
    # in, so that every run and every engine keep the same one.
    dedup = (
        "SELECT r.t AS ts_us, r.u AS unit_id, r.m AS metric, r.v AS value, copies FROM ("
        "SELECT min({'t': ts_us, 'u': unit_id, 'm': metric, 'v': value}) AS r, "
        f"count(*) AS copies FROM outcomes WHERE metric IN ({sql_list(names)}) "
        "GROUP BY event_id) AS d"
    )
    engine.table(
        "_events",
        "SELECT e.unit_id, e.metric, e.value, e.ts_us, e.copies, u.code, u.crossed, u.first_us, "
        f"coalesce(({post}), FALSE) AS post, coalesce(({pre}), FALSE) AS pre, "
        f"coalesce(({post}) AND e.ts_us < u.first_us + {micros(window)}, FALSE) AS obs "
        f"FROM ({dedup}) AS e LEFT JOIN _units AS u ON e.unit_id = u.unit_id",
    )
    # Per unit and metric: counted (c, s), covariate (pc, ps) and observed (oc, os) events.
    engine.table(
        "_unit_values",
        "SELECT unit_id, code, metric, min(first_us) AS first_us, "
        "count(*) FILTER (WHERE post) AS c, coalesce(sum(value) FILTER (WHERE post), 0) AS s, "
        "count(*) FILTER (WHERE pre) AS pc, coalesce(sum(value) FILTER (WHERE pre), 0) AS ps, "
        "count(*) FILTER (WHERE obs) AS oc, coalesce(sum(value) FILTER (WHERE obs), 0) AS os "
        "FROM _events WHERE NOT crossed AND (post OR pre) GROUP BY unit_id, code, metric",
    )


def _unit_summary(
    engine: Engine, variants: Sequence[str], window_us: int, end_us: int | None
) -> pd.DataFrame:
    """Units by variant, crossover, day of first exposure, day their observation window
    closes and whether it closed by ``end_us``: every count the result needs, in one scan."""
    close = f"(first_us + {window_us})"
    matured = f"{close} <= {end_us}" if end_us is not None else "FALSE"
    frame = engine.frame(
        f"SELECT code, crossed, first_us // {DAY_US} AS day, {close} // {DAY_US} AS close_day, "
        f"{matured} AS matured, count(*) AS units FROM _units GROUP BY code, crossed, "
        f"first_us // {DAY_US}, {close} // {DAY_US}, {matured}"
    )
    frame["variant"] = [variants[int(c)] for c in frame["code"]]
    for column in ("crossed", "matured"):
        frame[column] = frame[column].astype(bool)
    return frame.astype({"units": np.int64, "code": np.int64, "day": np.int64,
                         "close_day": np.int64})  # fmt: skip


def _event_counts(
    engine: Engine, names: Sequence[str]
) -> tuple[EventCounts, dict[str, int], tuple[int | None, int | None]]:
    """Where each deduplicated event went (see `EventCounts`), counted events per name, and
    the span of the data (first to last exposure or counted event), in one query."""
    live = "NOT crossed"
    per_name = [f"count(*) FILTER (WHERE {live} AND post AND metric = {sql_list([n])})"
                for n in names]  # fmt: skip
    row = engine.rows(
        "SELECT count(*), coalesce(sum(copies), 0), count(*) FILTER (WHERE code IS NULL), "
        f"count(*) FILTER (WHERE crossed), count(*) FILTER (WHERE {live} AND post), "
        f"count(*) FILTER (WHERE {live} AND pre), "
        f"count(*) FILTER (WHERE {live} AND NOT post AND NOT pre AND ts_us < first_us), "
        f"count(*) FILTER (WHERE {live} AND NOT post AND ts_us >= first_us), "
        f"min(ts_us) FILTER (WHERE {live} AND post), max(ts_us) FILTER (WHERE {live} AND post), "
        "(SELECT min(first_us) FROM _units WHERE NOT crossed), "
        f"(SELECT max(first_us) FROM _units WHERE NOT crossed), {', '.join(per_name)} "
        "FROM _events"
    )[0]
    total, copies, unknown, crossover, counted, covariate, before, outside = map(int, row[:8])
    counts = EventCounts(
        total=total, counted=counted, covariate=covariate, unknown_unit=unknown,
        crossover_unit=crossover, before_exposure=before, outside_window=outside,
        duplicates=copies - total,
    )  # fmt: skip
    starts = [int(v) for v in (row[8], row[10]) if v is not None]
    ends = [int(v) for v in (row[9], row[11]) if v is not None]
    per_metric = {n: int(c) for n, c in zip(names, row[12:], strict=True) if c}
    return counts, per_metric, (min(starts, default=None), max(ends, default=None))


def _quantile_samples(
    engine: Engine, metric: Metric, variants: Sequence[str], units: Mapping[str, int]
) -> dict[str, QuantileSample]:
    """Every counted event value of the metric with its unit: exact, collected whole.

    A fixed order makes the seeded bootstrap reproducible whatever order the events
    arrived in, and the same on every engine.
    """
    frame = engine.frame(
        "SELECT code, unit_id, value FROM _events WHERE NOT crossed AND post "
        f"AND metric = {sql_list([source_metrics(metric)[0]])} ORDER BY unit_id, value"
    )
    codes = pd.factorize(frame["unit_id"])[0]
    values = frame["value"].to_numpy(dtype=float)
    variant_codes = frame["code"].to_numpy(dtype=np.int64)
    samples = {}
    for code, variant in enumerate(variants):
        if variant in units:
            mask = variant_codes == code
            samples[variant] = QuantileSample(values[mask], codes[mask].astype(np.int64))
    return samples


def _undefined_metrics(engine: Engine, names: Sequence[str]) -> dict[str, int]:
    """Event names of this experiment's units that no analysed metric reads, with counts."""
    rows = engine.rows(
        "SELECT o.metric, count(*) FROM outcomes AS o JOIN _units AS a ON o.unit_id = a.unit_id "
        f"WHERE NOT a.crossed AND o.metric NOT IN ({sql_list(names)}) GROUP BY o.metric"
    )
    return {str(k): int(n) for k, n in sorted(rows, key=lambda r: (-int(r[1]), str(r[0])))}


def _datetime(us: int | None) -> datetime:
    return _EPOCH + timedelta(microseconds=us or 0)


def _as_of_us(as_of: datetime | None) -> int:
    """``as_of`` in epoch microseconds (naive times are UTC); 0 when not given."""
    if as_of is None:
        return 0
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    return micros(as_of - _EPOCH)


__all__ = [
    "aggregate",
    "join_and_aggregate",
    "parse_metric",
    "quantile_level",
    "source_metrics",
]
