"""What one monitor check reads: every exposure and outcome since an experiment began, from
the exported files and the streams together, without disturbing ``abtest export``.

``abtest export`` writes each batch of a stream to Parquet and only then acknowledges and
deletes its entries (`abtest.export`).  So at any moment every row is in the stream, in a
file, or in both (a batch written but not yet deleted).  A check therefore

1. reads the exposure counters (exact, never trimmed),
2. reads each stream's entries with ``XRANGE`` (read-only: no consumer group, no XACK,
   XDEL or XTRIM; a long-running monitor remembers what it read and asks only for the
   entries after the last id it saw),
3. then lists and reads the export directory's files (cached by path: a file is never
   changed once renamed, and a re-written batch gets the same name and rows),

and keeps each distinct row once (a row of the stream and the same row in a file are equal
in every column: an exposure is one per unit and experiment, an outcome has its
event_id).  The order makes it complete: an entry gone from the stream by step 2 was
deleted after its file was durable, so that file is listed in step 3; an entry still in the
stream is read in step 2.  ``tests/test_monitor_data.py`` crashes an export at each of its
steps and checks that a check in between sees every row exactly once.

The counters read first bound what the streams can hold: a check that sees fewer exposures
than were counted is *incomplete* (the export ran into a directory this monitor cannot
read), and the rollout decision then holds instead of acting (`MonitorData.complete`).

`MonitorData` is what both the rollout decision and the health checks get: the joined
per-variant aggregates (`analysis.data.tables.Aggregates`, with the daily looks of the
observation window) and hourly series of exposures and events.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd
import pyarrow as pa

from abtest import keys
from abtest.errors import InvalidInput
from abtest.export import StreamSource, sources_for
from abtest.export_files import Kind, files, folder_key, parse, read_file
from abtest.store import ExposureCounts, StoredExperiment
from analysis.data.tables import DEFAULT_OBSERVATION_WINDOW, Aggregates

if TYPE_CHECKING:
    import duckdb

    from abtest.redis_client import RedisClient

_PAGE: Final = 10_000  # entries per XRANGE call: bounds each call's time in Redis
_COLUMNS: Final = {
    Kind.EXPOSURES: ("unit_id", "experiment", "variant", "ts_us", "config_version"),
    Kind.OUTCOMES: ("event_id", "unit_id", "metric", "value", "ts_us"),
}
_TYPES: Final = {
    "unit_id": pa.string(), "experiment": pa.string(), "variant": pa.string(),
    "ts_us": pa.int64(), "config_version": pa.int64(), "event_id": pa.string(),
    "metric": pa.string(), "value": pa.float64(),
}  # fmt: skip


@dataclass(frozen=True)
class ReadStats:
    """Where the rows of one read came from: stream entries read, files read (new and
    cached), rows in both (dropped once), malformed entries skipped."""

    stream_entries: int = 0
    files_read: int = 0
    files_cached: int = 0
    duplicate_rows: int = 0
    malformed: int = 0

    def to_dict(self) -> dict[str, int]:
        """Plain JSON form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class MonitorData:
    """One experiment as one check read it.

    ``aggregates``: per-variant aggregates of every metric of the experiment, with the
    daily looks of ``observation_window`` (None when no unit was exposed yet, or the
    experiment has no metric; ``note`` says which).  ``exposures_by_hour``: new units per
    hour and variant (``hour, variant, units``); ``events_by_hour``: counted events per
    hour, variant and metric (``hour, variant, metric, events, total, units``: their
    number, sum of values and distinct units).  ``counts``: the store's exact exposure
    counters, read before the data; ``seen_units``: exposed units the check found.
    """

    stored: StoredExperiment
    as_of: datetime
    observation_window: timedelta
    counts: ExposureCounts
    seen_units: int
    aggregates: Aggregates | None
    exposures_by_hour: pd.DataFrame = field(repr=False)
    events_by_hour: pd.DataFrame = field(repr=False)
    note: str = ""
    stats: ReadStats = field(default_factory=ReadStats)

    @property
    def missing_units(self) -> int:
        """Exposures the store counted that the check did not find (0 when complete)."""
        return max(0, self.counts.total - self.seen_units)

    @property
    def complete(self) -> bool:
        """Whether the check saw every counted exposure."""
        return self.missing_units == 0

    @property
    def incomplete_reason(self) -> str:
        """Why the data are incomplete ('' when complete)."""
        if self.complete:
            return ""
        return (f"{self.missing_units:,} of {self.counts.total:,} counted exposures are "
                "neither in Redis nor in the export directory this monitor reads (point "
                "ABTEST_EXPORT_DIR at the directory abtest export writes to)")  # fmt: skip


class _StreamCache:
    """The rows a monitor already read from one stream, and the last id it read."""

    def __init__(self) -> None:
        self.last_id = "-"
        self.tables: list[pa.Table] = []


class MonitorReader:
    """Reads `MonitorData` for experiments; keeps what it read between checks (the stream
    rows up to the last id seen, and the parsed export files), so a long-running monitor
    asks Redis only for new entries.  ``export_dir`` None: Redis only (then exported rows
    are missed, which `MonitorData.complete` reports)."""

    def __init__(self, redis: RedisClient, export_dir: str | Path | None) -> None:
        self.redis = redis
        self.export_dir = None if export_dir is None else Path(export_dir)
        self._streams: dict[str, _StreamCache] = {}
        self._files: dict[Path, tuple[pa.Table, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def read(
        self,
        experiments: Sequence[StoredExperiment],
        *,
        counts: Mapping[str, ExposureCounts],
        now: datetime,
        default_window: timedelta = DEFAULT_OBSERVATION_WINDOW,
    ) -> dict[str, MonitorData]:
        """`MonitorData` of each experiment as of ``now`` (see the module docstring).

        ``counts``: each experiment's exposure counters, read by the caller *before*
        this call (the completeness check relies on that order).
        """
        with self._lock:
            stats: dict[str, int] = {"stream_entries": 0, "malformed": 0}
            sources = [source for s in experiments
                       for source in sources_for(self.redis, s.experiment.key)]  # fmt: skip
            exposures = [self._stream(source, stats) for source in sources
                         if source.kind is Kind.EXPOSURES]  # fmt: skip
            seen_streams = set()
            outcomes = []
            for source in sources:  # every experiment lists the same outcome streams
                if source.kind is Kind.OUTCOMES and source.stream not in seen_streams:
                    seen_streams.add(source.stream)
                    outcomes.append(self._stream(source, stats))
            wanted = {s.experiment.key for s in experiments}
            file_exposures, file_outcomes, read_files, cached = self._read_files(wanted)
        exposure_table = _concat(Kind.EXPOSURES, [*exposures, *file_exposures])
        outcome_table = _concat(Kind.OUTCOMES, [*outcomes, *file_outcomes])
        con = _connect(exposure_table, outcome_table)
        try:
            duplicates = _duplicates(con, exposure_table.num_rows, outcome_table.num_rows)
            read_stats = ReadStats(stats["stream_entries"], read_files, cached, duplicates,
                                   stats["malformed"])  # fmt: skip
            return {
                s.experiment.key: _experiment_data(
                    con,
                    s,
                    counts[s.experiment.key],
                    now=now,
                    default_window=default_window,
                    stats=read_stats,
                )
                for s in experiments
            }
        finally:
            con.close()

    # -- streams ------------------------------------------------------------------------
    def _stream(self, source: StreamSource, stats: dict[str, int]) -> pa.Table:
        kind = source.kind
        cache = self._streams.setdefault(source.stream, _StreamCache())
        entries: list[dict[str, str]] = []
        start = cache.last_id if cache.last_id == "-" else f"({cache.last_id}"
        while True:
            page = self.redis.xrange(source.stream, min=start, max="+", count=_PAGE)
            if not page:
                break
            entries += [entry for _, entry in page]
            stats["stream_entries"] += len(page)
            cache.last_id = page[-1][0]
            start = f"({cache.last_id}"
            if len(page) < _PAGE:
                break
        variants = None
        if source.experiment is not None and entries:
            # Read after the entries: codes only ever grow, so every code in them is known.
            codes = self.redis.hgetall(keys.variant_codes(source.experiment))
            variants = {code: variant for variant, code in codes.items()}
        if entries:
            fast = _columns(kind, entries, source.experiment, variants)
            if fast is not None:
                cache.tables.append(fast)
            else:  # some entry is not of the common form: parse each, as export does
                rows: list[dict[str, Any]] = []
                for entry in entries:
                    try:
                        rows.append(parse(kind, entry, experiment=source.experiment,
                                          variants=variants))  # fmt: skip
                    except ValueError:
                        stats["malformed"] += 1  # export quarantines it; nothing to count
                if rows:
                    cache.tables.append(_table(kind, rows))
        return _concat(kind, cache.tables)

    # -- files --------------------------------------------------------------------------
    def _read_files(self, wanted: set[str]) -> tuple[list[pa.Table], list[pa.Table], int, int]:
        if self.export_dir is None:
            return [], [], 0, 0
        found: dict[Kind, list[pa.Table]] = {Kind.EXPOSURES: [], Kind.OUTCOMES: []}
        new = cached = 0
        for kind in (Kind.EXPOSURES, Kind.OUTCOMES):
            for path in files(self.export_dir, kind):
                key = folder_key(path)
                if key is not None and key not in wanted:
                    continue  # another experiment's folder: not read, not cached
                hit = self._files.get(path)
                if hit is None:
                    try:
                        raw = read_file(path, kind)
                    except FileNotFoundError:  # replaced by a re-run of its batch
                        continue
                    table = _from_file(kind, raw)
                    names = frozenset(table["experiment"].unique().to_pylist()
                                      if kind is Kind.EXPOSURES else ())  # fmt: skip
                    hit = self._files[path] = (table, names)
                    new += 1
                else:
                    cached += 1
                if kind is Kind.OUTCOMES or hit[1] & wanted:
                    found[kind].append(hit[0])
        return found[Kind.EXPOSURES], found[Kind.OUTCOMES], new, cached


def _columns(
    kind: Kind,
    entries: Sequence[Mapping[str, str]],
    experiment: str | None,
    variants: Mapping[str, str] | None,
) -> pa.Table | None:
    """The entries as one table in a few vectorised steps, when every one has the form the
    store writes (compact exposures, outcome events) and parses cleanly; else None, and the
    caller parses entry by entry (`abtest.export_files.parse`: the same rows)."""
    import pyarrow.compute as pc

    try:
        if kind is Kind.EXPOSURES:
            if experiment is None or variants is None:
                return None
            columns = {
                "unit_id": pa.array([e["u"] for e in entries], pa.string()),
                "experiment": pa.array([experiment] * len(entries), pa.string()),
                "variant": pa.array([variants[e["v"]] for e in entries], pa.string()),
                "ts_us": pa.array([e["t"] for e in entries], pa.string()).cast(pa.int64()),
                "config_version": pa.array([e["c"] for e in entries],
                                           pa.string()).cast(pa.int64()),
            }  # fmt: skip
        else:
            values = pa.array([e["value"] for e in entries], pa.string()).cast(pa.float64())
            if not pc.all(pc.is_finite(values)).as_py():
                return None
            columns = {
                "event_id": pa.array([e["event_id"] for e in entries], pa.string()),
                "unit_id": pa.array([e["unit_id"] for e in entries], pa.string()),
                "metric": pa.array([e["metric"] for e in entries], pa.string()),
                "value": values,
                "ts_us": pa.array([e["timestamp"] for e in entries],
                                  pa.string()).cast(pa.int64()),
            }  # fmt: skip
    except (KeyError, TypeError, pa.ArrowInvalid):
        return None
    return pa.table(columns)


def _table(kind: Kind, rows: list[dict[str, Any]]) -> pa.Table:
    columns = {}
    for name in _COLUMNS[kind]:
        source = "timestamp" if name == "ts_us" else name
        columns[name] = pa.array([row[source] for row in rows], type=_TYPES[name])
    return pa.table(columns)


def _from_file(kind: Kind, raw: pa.Table) -> pa.Table:
    columns = {}
    for name in _COLUMNS[kind]:
        if name == "ts_us":
            columns[name] = raw["timestamp"].cast(pa.int64())
        else:
            columns[name] = raw[name].cast(_TYPES[name])
    return pa.table(columns)


def _concat(kind: Kind, tables: Sequence[pa.Table]) -> pa.Table:
    if not tables:
        return pa.schema([(n, _TYPES[n]) for n in _COLUMNS[kind]]).empty_table()
    return pa.concat_tables(tables)


def _connect(exposures: pa.Table, outcomes: pa.Table) -> duckdb.DuckDBPyConnection:
    from analysis.data.load import connect

    con = connect()
    con.register("_exposure_rows", exposures)
    con.register("_outcome_rows", outcomes)
    con.execute("CREATE TEMP TABLE _exposures_all AS SELECT DISTINCT * FROM _exposure_rows")
    con.execute("CREATE TEMP TABLE _outcomes_all AS SELECT DISTINCT * FROM _outcome_rows")
    # Each outcome with the experiments its unit is in, sorted by experiment: one pass
    # here instead of a scan of every outcome per experiment.
    con.execute(
        "CREATE TEMP TABLE _outcomes_by_experiment AS SELECT u.experiment, o.* "
        "FROM _outcomes_all AS o JOIN (SELECT DISTINCT unit_id, experiment "
        "FROM _exposures_all) AS u USING (unit_id) ORDER BY u.experiment"
    )
    return con


def _duplicates(con: duckdb.DuckDBPyConnection, exposure_rows: int, outcome_rows: int) -> int:
    kept = con.execute(
        "SELECT (SELECT count(*) FROM _exposures_all) + (SELECT count(*) FROM _outcomes_all)"
    ).fetchall()[0][0]
    return exposure_rows + outcome_rows - int(kept)


def _experiment_data(
    con: duckdb.DuckDBPyConnection,
    stored: StoredExperiment,
    counts: ExposureCounts,
    *,
    now: datetime,
    default_window: timedelta,
    stats: ReadStats,
) -> MonitorData:
    from analysis.data.engines.duckdb import DuckDBEngine
    from analysis.data.join import aggregate
    from analysis.data.metric_spec import sql_list

    experiment = stored.experiment
    key = experiment.key
    plan = experiment.rollout
    window = default_window if plan is None else timedelta(hours=plan.observation_hours)
    literal = sql_list([key])  # views cannot take parameters; the key is a quoted literal
    con.execute(
        "CREATE OR REPLACE TEMP VIEW exposures AS SELECT unit_id, experiment, variant, "
        "make_timestamp(ts_us) AS ts, ts_us, CAST(config_version AS VARCHAR) AS config_version "
        f"FROM _exposures_all WHERE experiment = {literal}"
    )  # fmt: skip
    con.execute(
        "CREATE OR REPLACE TEMP VIEW outcomes AS SELECT event_id, unit_id, metric, value, "
        f"make_timestamp(ts_us) AS ts, ts_us FROM _outcomes_by_experiment "
        f"WHERE experiment = {literal}"
    )  # fmt: skip
    seen = int(con.execute("SELECT count(DISTINCT unit_id) FROM exposures").fetchall()[0][0])
    by_hour = con.execute(
        "SELECT date_trunc('hour', first) AS hour, variant, count(*) AS units FROM "
        "(SELECT unit_id, variant, min(ts) AS first FROM exposures GROUP BY ALL) "
        "GROUP BY ALL ORDER BY hour, variant"
    ).df()
    aggregates, note = None, ""
    events = _empty_events()
    if not experiment.metrics:
        note = "the experiment has no metric"
    elif seen == 0:
        note = "no unit exposed yet"
    else:
        try:
            aggregates = aggregate(DuckDBEngine(con), metrics=experiment.metrics, experiment=key,
                                   covariate_window=None, observation_window=window,
                                   as_of=now)  # fmt: skip
        except InvalidInput as exc:
            note = exc.message
        else:
            # `_events` carries each unit's variant as its code: the index of the variant
            # in the sorted list of the experiment's variants (`analysis.data.join`).
            variants = sorted(str(r[0]) for r in con.execute(
                "SELECT DISTINCT variant FROM exposures").fetchall())  # fmt: skip
            names = " ".join(f"WHEN {i} THEN {sql_list([v])}" for i, v in enumerate(variants))
            events = con.execute(
                "SELECT date_trunc('hour', make_timestamp(ts_us)) AS hour, "
                f"CASE code {names} END AS variant, metric, count(*) AS events, "
                "sum(value) AS total, count(DISTINCT unit_id) AS units FROM _events "
                "WHERE post GROUP BY ALL ORDER BY hour, variant, metric"
            ).df()
    return MonitorData(
        stored=stored, as_of=now, observation_window=window, counts=counts, seen_units=seen,
        aggregates=aggregates, exposures_by_hour=by_hour, events_by_hour=events, note=note,
        stats=stats,
    )  # fmt: skip


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({"hour": pd.Series(dtype="datetime64[us]"),
                         "variant": pd.Series(dtype=str), "metric": pd.Series(dtype=str),
                         "events": pd.Series(dtype="int64"), "total": pd.Series(dtype=float),
                         "units": pd.Series(dtype="int64")})  # fmt: skip


__all__ = ["MonitorData", "MonitorReader", "ReadStats"]
