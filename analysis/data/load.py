"""Reading exposures and outcomes: the one module of `analysis` that validates input data.

Sources are pandas DataFrames, single Parquet or CSV files, or folders of Parquet files as
``abtest export`` writes them (searched recursively), as local paths or fsspec URLs
(`analysis.data.sources`).  Nothing is read into Python memory: each source becomes a
typed, validated view inside the engine (`analysis.data.engines`: DuckDB by default,
or Spark), so the join in `analysis.data.join` runs there however large the files are.
The validation is written once, in DuckDB's SQL, and runs on either engine.

Schemas (extra columns are ignored):

- exposures: ``unit_id, experiment, variant, timestamp[, config_version][, attributes]``
  (``attributes``: a map of text, the unit's attributes at assignment; a segment may also
  be a column of its own, such as ``country``)
- outcomes: ``event_id, unit_id, metric, value, timestamp`` (a missing ``value`` column
  or a null value means 1, as in ``POST /v1/events``)

Timestamps may be timestamps (with or without a time zone; naive ones are taken as UTC),
dates, ISO-8601 strings, or numbers of seconds since the Unix epoch.  The views hold them
as ``ts`` (a naive UTC timestamp) and ``ts_us`` (microseconds since the epoch, what the
join computes with).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import pandas as pd

from abtest.attributes import check_attribute_name
from abtest.errors import InvalidInput
from analysis.data.engines.duckdb import DuckDBEngine, connect, quote
from analysis.data.sources import Source, fingerprint, locate

if TYPE_CHECKING:
    from analysis.data.engines import Engine

__all__ = [
    "EXPOSURE_COLUMNS", "OUTCOME_COLUMNS", "Source", "connect", "fingerprint",
    "read_exposures", "read_outcomes", "register_covariates", "register_exposures",
    "register_outcomes",
]  # fmt: skip

EXPOSURE_COLUMNS: Final = ("unit_id", "experiment", "variant", "timestamp")
OUTCOME_COLUMNS: Final = ("event_id", "unit_id", "metric", "timestamp")

_TEXT_TYPES: Final = ("VARCHAR", "UUID")
_INT_PREFIXES: Final = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                        "USMALLINT", "UINTEGER", "UBIGINT")  # fmt: skip
_NUMERIC_PREFIXES: Final = (*_INT_PREFIXES, "FLOAT", "DOUBLE", "DECIMAL")


def register_exposures(
    engine: Engine,
    source: Source,
    *,
    name: str = "exposures",
    experiment: str | None = None,
    segment: str | None = None,
) -> None:
    """Create the validated view ``name(unit_id, experiment, variant, ts, ts_us,
    config_version)``.

    ``experiment``: when given and a folder holds ``experiment=<key>/`` (the export's
    layout), only that folder is read.

    With ``segment`` (an attribute name such as ``country``) the view has one more column,
    ``segment``: the exposure's value of that attribute as text (null when not set), read
    from a column of that name or else from the ``attributes`` map column that
    ``abtest export`` writes.

    Raises
    ------
    InvalidInput
        The source is missing, empty, lacks a column, or has a column of the wrong type or
        with nulls; ``field`` names the column (``exposures.variant``).  ``segment``: a
        bad attribute name, or exposures that carry no such attribute (field ``segment``).
    """
    raw, files = _register_raw(engine, source, name, experiment)
    types = _column_types(engine, raw, name, EXPOSURE_COLUMNS)
    for column in ("experiment", "variant"):
        _require_text(types, column, name)
    _require_key(types, "unit_id", name)
    version = (
        "CAST(config_version AS VARCHAR)" if "config_version" in types else "CAST(NULL AS VARCHAR)"
    )
    ts_us = _epoch_us_sql(types["timestamp"], name)
    extra = "" if segment is None else f", {_segment_sql(engine, raw, types, segment)} AS segment"
    engine.view(
        name,
        f"SELECT CAST(unit_id AS VARCHAR) AS unit_id, "
        f"CAST(experiment AS VARCHAR) AS experiment, CAST(variant AS VARCHAR) AS variant, "
        f"make_timestamp({ts_us}) AS ts, {ts_us} AS ts_us, {version} AS config_version{extra} "
        f"FROM {raw}",
    )
    _check_rows(
        engine, raw=raw, name=name, not_null=("unit_id", "experiment", "variant", "timestamp"),
        types=types, files=files,
    )  # fmt: skip


def register_outcomes(engine: Engine, source: Source, *, name: str = "outcomes") -> None:
    """Create the validated view ``name(event_id, unit_id, metric, value, ts, ts_us)``.

    Raises
    ------
    InvalidInput
        As `register_exposures`; also when ``value`` is not numeric or not finite.
    """
    raw, files = _register_raw(engine, source, name, None)
    types = _column_types(engine, raw, name, OUTCOME_COLUMNS)
    _require_text(types, "metric", name)
    _require_key(types, "unit_id", name)
    _require_key(types, "event_id", name)
    if "value" in types:
        if not types["value"].startswith(_NUMERIC_PREFIXES):
            raise InvalidInput(
                f"column 'value' of {name} must be numeric, not {types['value']}", f"{name}.value"
            )
        value = "COALESCE(CAST(value AS DOUBLE), 1.0)"
    else:
        value = "1.0"
    ts_us = _epoch_us_sql(types["timestamp"], name)
    engine.view(
        name,
        f"SELECT CAST(event_id AS VARCHAR) AS event_id, "
        f"CAST(unit_id AS VARCHAR) AS unit_id, CAST(metric AS VARCHAR) AS metric, "
        f"{value} AS value, make_timestamp({ts_us}) AS ts, {ts_us} AS ts_us FROM {raw}",
    )
    _check_rows(
        engine, raw=raw, name=name, not_null=("event_id", "unit_id", "metric", "timestamp"),
        types=types, files=files, finite="value" in types,
    )  # fmt: skip


def register_covariates(engine: Engine, source: Source, *, name: str = "covariates") -> None:
    """Create the view ``name(unit_id, metric, value)``: one pre-exposure value per unit.

    Raises
    ------
    InvalidInput
        Missing columns, an empty source, or a non-numeric ``value``.
    """
    raw, _ = _register_raw(engine, source, name, None)
    types = _column_types(engine, raw, name, ("unit_id", "metric", "value"))
    _check_rows(engine, raw=raw, name=name, not_null=(), types=types, files=None)
    _require_key(types, "unit_id", name)
    _require_text(types, "metric", name)
    if not types["value"].startswith(_NUMERIC_PREFIXES):
        raise InvalidInput(f"column 'value' of {name} must be numeric", f"{name}.value")
    engine.view(
        name,
        "SELECT CAST(unit_id AS VARCHAR) AS unit_id, "
        f"CAST(metric AS VARCHAR) AS metric, CAST(value AS DOUBLE) AS value FROM {raw}",
    )


def read_exposures(source: Source) -> pd.DataFrame:
    """Validated exposures as a DataFrame (``timestamp`` as naive UTC datetimes)."""
    engine = DuckDBEngine()
    register_exposures(engine, source)
    return engine.frame(
        "SELECT unit_id, experiment, variant, ts AS timestamp, config_version FROM exposures"
    )


def read_outcomes(source: Source) -> pd.DataFrame:
    """Validated outcomes as a DataFrame (``timestamp`` as naive UTC datetimes)."""
    engine = DuckDBEngine()
    register_outcomes(engine, source)
    return engine.frame("SELECT event_id, unit_id, metric, value, ts AS timestamp FROM outcomes")


def attribute_names(source: Source, *, experiment: str | None = None, limit: int = 50) -> list[str]:
    """The attribute names kept with the exposures (keys of their ``attributes`` map),
    sorted; empty when they carry none.  What ``segment`` can be.  ``experiment``: read
    only its folders of an export (as `register_exposures`)."""
    engine = DuckDBEngine()
    try:
        raw, _ = _register_raw(engine, source, "exposures", experiment)
        types = _column_types(engine, raw, "exposures", EXPOSURE_COLUMNS)
        if not types.get("attributes", "").startswith("MAP("):
            return []
        rows = engine.rows(
            f"SELECT DISTINCT unnest(map_keys(attributes)) AS name FROM {raw} "
            f"ORDER BY name LIMIT {int(limit)}"
        )
    finally:
        engine.close()
    return [str(r[0]) for r in rows]


# -- helpers ------------------------------------------------------------------------------
def _register_raw(
    engine: Engine, source: Source, name: str, experiment: str | None
) -> tuple[str, list[str] | None]:
    """Expose ``source`` as the view ``_raw_<name>``; return its name and Parquet files."""
    raw = f"_raw_{name}"
    if isinstance(source, pd.DataFrame):
        engine.scan_frame(raw, source)
        return raw, None
    if not isinstance(source, str | os.PathLike):
        raise InvalidInput(
            f"{name} must be a DataFrame or a path, not {type(source).__name__}", name
        )
    try:
        location = locate(source)
    except InvalidInput as exc:
        raise InvalidInput(f"{name}: {exc.message}", name) from None
    shown = os.fspath(source)
    files: list[str] | None = None
    try:
        if location.is_dir():
            folders = [location]
            if experiment is not None:  # the export's folders of this experiment, if any
                mine = [location.join(f"experiment={experiment}"), location.join(experiment)]
                folders = [f for f in mine if f.is_dir()] or folders
            files = [file for folder in folders for file in folder.parquet_files()]
            if not files:
                raise InvalidInput(f"{name}: no Parquet files in directory {shown}", name)
            engine.scan_parquet(raw, folders, files)
        elif location.is_file():
            suffix = location.path.rpartition(".")[2].lower()
            if suffix == "parquet":
                files = [location.path]
                engine.scan_parquet(raw, [location], files)
            elif suffix == "csv":
                engine.scan_csv(raw, location)
            else:
                raise InvalidInput(f"{name}: {shown} is neither .parquet nor .csv", name)
        else:
            raise InvalidInput(f"{name}: {shown} does not exist", name)
    except InvalidInput:
        raise
    except Exception as exc:  # engines and filesystems raise many error types
        raise InvalidInput(f"{name}: cannot read {shown}: {_first_line(exc)}", name) from exc
    return raw, files


def _column_types(engine: Engine, raw: str, name: str, required: Sequence[str]) -> dict[str, str]:
    try:
        types = engine.column_types(raw)
    except Exception as exc:  # e.g. a corrupt Parquet file
        raise InvalidInput(f"{name}: cannot read the data: {_first_line(exc)}", name) from exc
    missing = [c for c in required if c not in types]
    if missing:
        raise InvalidInput(
            f"{name} is missing column(s): {', '.join(missing)} "
            f"(has: {', '.join(types) or 'none'})",
            f"{name}.{missing[0]}",
        )
    return types


def _require_text(types: dict[str, str], column: str, name: str) -> None:
    if not types[column].startswith(_TEXT_TYPES):
        raise InvalidInput(
            f"column '{column}' of {name} must be text, not {types[column]}", f"{name}.{column}"
        )


def _require_key(types: dict[str, str], column: str, name: str) -> None:
    if not types[column].startswith((*_TEXT_TYPES, *_INT_PREFIXES)):
        raise InvalidInput(
            f"column '{column}' of {name} must be text or integer, not {types[column]}",
            f"{name}.{column}",
        )


def _segment_sql(engine: Engine, raw: str, types: dict[str, str], segment: str) -> str:
    """SQL for one attribute of each exposure: its own column, else ``attributes[segment]``
    (a map, as exports write it, or a struct, as pandas writes a column of dicts)."""
    check_attribute_name(segment, "segment")
    if segment in types and segment not in (*EXPOSURE_COLUMNS, "config_version", "attributes"):
        return f'CAST("{segment}" AS VARCHAR)'
    sql = f"CAST(attributes[{quote(segment)}] AS VARCHAR)"
    if types.get("attributes", "").startswith(("MAP(", "STRUCT(")):
        try:
            engine.rows(f"SELECT {sql} FROM {raw} LIMIT 0")
        except Exception:  # a struct without that field: a binder (or analysis) error
            pass
        else:
            return sql
    raise InvalidInput(
        f"the exposures carry no attribute '{segment}' (neither a column '{segment}' nor "
        "a key of an 'attributes' column; exports keep the attributes sent at assignment)",
        "segment",
    )


def _epoch_us_sql(column_type: str, name: str) -> str:
    """SQL turning the ``timestamp`` column into microseconds since the Unix epoch (UTC).

    Plain arithmetic on the stored microseconds, where a cast of TIMESTAMPTZ goes through
    ICU time-zone rules and is several times slower on 10M rows.
    """
    if column_type in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):
        return "epoch_us(timestamp)"
    if column_type.startswith(("TIMESTAMP", "DATE")):
        # Dates and other precisions (TIMESTAMP_NS from pandas' nanoseconds, _MS, _S):
        # epoch_us takes microsecond timestamps only.
        zoned = "TZ" in column_type or "TIME ZONE" in column_type
        return f"epoch_us(CAST(timestamp AS {'TIMESTAMPTZ' if zoned else 'TIMESTAMP'}))"
    if column_type.startswith(_TEXT_TYPES):
        return "epoch_us(CAST(timestamp AS TIMESTAMPTZ))"
    if column_type.startswith(_NUMERIC_PREFIXES):
        return "CAST(round(timestamp * 1e6) AS BIGINT)"
    raise InvalidInput(
        f"column 'timestamp' of {name} must be a timestamp, date, ISO string or epoch "
        f"seconds, not {column_type}",
        f"{name}.timestamp",
    )


def _check_rows(
    engine: Engine,
    *,
    raw: str,
    name: str,
    not_null: Sequence[str],
    types: dict[str, str],
    files: list[str] | None,
    finite: bool = False,
) -> None:
    """Rows at all, nulls per required column, unparsable timestamps, non-finite values.

    One query (on Spark every query is a job: one scan, not four).  Parquet files carry
    null counts in their row-group statistics; where the engine reads them, they answer
    without scanning those columns.
    """
    nulls: dict[str, int] | None = None
    if files is not None and not_null:
        found = engine.parquet_null_counts(files)
        if all(found.get(c) is not None for c in not_null):
            nulls = {c: int(found[c] or 0) for c in not_null}
    parts = ["count(*)"]
    if nulls is None:
        parts += [f"count(*) FILTER (WHERE {c} IS NULL)" for c in not_null]
    if not_null and types["timestamp"].startswith(_TEXT_TYPES):
        parts.append("count(*) FILTER (WHERE timestamp IS NOT NULL "
                     "AND TRY_CAST(timestamp AS TIMESTAMPTZ) IS NULL)")  # fmt: skip
    if finite:
        number = "CAST(value AS DOUBLE)"
        parts.append(f"count(*) FILTER (WHERE isnan({number}) "
                     f"OR abs({number}) = CAST('inf' AS DOUBLE))")  # fmt: skip
    try:
        row = list(engine.rows(f"SELECT {', '.join(parts)} FROM {raw}")[0])
    except Exception as exc:  # e.g. a corrupt Parquet file found only when scanned
        raise InvalidInput(f"{name}: cannot read the data: {_first_line(exc)}", name) from exc
    if not row[0]:
        raise InvalidInput(f"{name} is empty (no rows)", name)
    row = row[1:]
    if nulls is None:
        nulls = dict(zip(not_null, (int(v) for v in row[: len(not_null)]), strict=True))
        row = row[len(not_null) :]
    if not_null and types["timestamp"].startswith(_TEXT_TYPES):
        unparsed, row = row[0], row[1:]
        if unparsed:
            raise InvalidInput(
                f"{name}.timestamp has {unparsed} value(s) that are not ISO-8601 timestamps",
                f"{name}.timestamp",
            )
    for column in not_null:
        if nulls[column]:
            raise InvalidInput(
                f"{name}.{column} has {nulls[column]} missing value(s)", f"{name}.{column}"
            )
    if finite and row[0]:
        raise InvalidInput(f"{name}.value has {row[0]} non-finite value(s)", f"{name}.value")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
