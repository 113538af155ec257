"""Reading exposures and outcomes: the one module of `analysis` that touches files and frames.

Sources are pandas DataFrames, single Parquet or CSV files, or directories of Parquet files
as ``abtest export`` writes them (searched recursively).  Nothing is read into Python
memory: each source becomes a typed, validated DuckDB view over the original data, so the
join in `analysis.data.join` runs inside the engine however large the files are.

Schemas (extra columns are ignored):

- exposures: ``unit_id, experiment, variant, timestamp[, config_version][, attributes]``
  (``attributes``: a map of text, the unit's attributes at assignment; a segment may also
  be a column of its own, such as ``country``)
- outcomes: ``event_id, unit_id, metric, value, timestamp`` (a missing ``value`` column
  or a null value means 1, as in ``POST /v1/events``)

Timestamps may be timestamps (with or without a time zone; naive ones are taken as UTC),
dates, ISO-8601 strings, or numbers of seconds since the Unix epoch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pandas as pd

from abtest.attributes import check_attribute_name
from abtest.errors import InvalidInput

if TYPE_CHECKING:
    import duckdb

Source = pd.DataFrame | str | os.PathLike[str]
"""A DataFrame, a ``.parquet`` / ``.csv`` file, or a directory of Parquet files."""

EXPOSURE_COLUMNS: Final = ("unit_id", "experiment", "variant", "timestamp")
OUTCOME_COLUMNS: Final = ("event_id", "unit_id", "metric", "timestamp")

_TEXT_TYPES: Final = ("VARCHAR", "UUID")
_INT_PREFIXES: Final = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                        "USMALLINT", "UINTEGER", "UBIGINT")  # fmt: skip
_NUMERIC_PREFIXES: Final = (*_INT_PREFIXES, "FLOAT", "DOUBLE", "DECIMAL")


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB connection with UTC as its time zone."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # Row order of intermediate tables is irrelevant here; keeping it costs time and memory.
    con.execute("SET preserve_insertion_order = false")
    return con


def register_exposures(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    *,
    name: str = "exposures",
    segment: str | None = None,
) -> None:
    """Create the validated view ``name(unit_id, experiment, variant, ts, config_version)``.

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
    raw, glob = _register_raw(con, source, name)
    types = _column_types(con, raw, name, EXPOSURE_COLUMNS)
    for column in ("experiment", "variant"):
        _require_text(types, column, name)
    _require_key(types, "unit_id", name)
    version = (
        "CAST(config_version AS VARCHAR)" if "config_version" in types else "CAST(NULL AS VARCHAR)"
    )
    extra = "" if segment is None else f", {_segment_sql(con, raw, types, segment)} AS segment"
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT CAST(unit_id AS VARCHAR) AS unit_id, "
        f"CAST(experiment AS VARCHAR) AS experiment, CAST(variant AS VARCHAR) AS variant, "
        f"{_timestamp_sql(types['timestamp'], name)} AS ts, {version} AS config_version{extra} "
        f"FROM {raw}"
    )
    _check_rows(
        con, raw=raw, name=name, not_null=("unit_id", "experiment", "variant", "timestamp"),
        types=types, parquet_glob=glob,
    )  # fmt: skip


def register_outcomes(
    con: duckdb.DuckDBPyConnection, source: Source, *, name: str = "outcomes"
) -> None:
    """Create the validated view ``name(event_id, unit_id, metric, value, ts)``.

    Raises
    ------
    InvalidInput
        As `register_exposures`; also when ``value`` is not numeric or not finite.
    """
    raw, glob = _register_raw(con, source, name)
    types = _column_types(con, raw, name, OUTCOME_COLUMNS)
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
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT CAST(event_id AS VARCHAR) AS event_id, "
        f"CAST(unit_id AS VARCHAR) AS unit_id, CAST(metric AS VARCHAR) AS metric, "
        f"{value} AS value, {_timestamp_sql(types['timestamp'], name)} AS ts FROM {raw}"
    )
    _check_rows(
        con, raw=raw, name=name, not_null=("event_id", "unit_id", "metric", "timestamp"),
        types=types, parquet_glob=glob,
    )  # fmt: skip
    if "value" in types:
        bad = con.execute(
            f"SELECT count(*) FROM {raw} "
            "WHERE value IS NOT NULL AND NOT isfinite(CAST(value AS DOUBLE))"
        ).fetchall()[0]
        if bad and bad[0]:
            raise InvalidInput(f"{name}.value has {bad[0]} non-finite value(s)", f"{name}.value")


def register_covariates(
    con: duckdb.DuckDBPyConnection, source: Source, *, name: str = "covariates"
) -> None:
    """Create the view ``name(unit_id, metric, value)``: one pre-exposure value per unit.

    Raises
    ------
    InvalidInput
        Missing columns, an empty source, or a non-numeric ``value``.
    """
    raw, _ = _register_raw(con, source, name)
    types = _column_types(con, raw, name, ("unit_id", "metric", "value"))
    _require_key(types, "unit_id", name)
    _require_text(types, "metric", name)
    if not types["value"].startswith(_NUMERIC_PREFIXES):
        raise InvalidInput(f"column 'value' of {name} must be numeric", f"{name}.value")
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT CAST(unit_id AS VARCHAR) AS unit_id, "
        f"CAST(metric AS VARCHAR) AS metric, CAST(value AS DOUBLE) AS value FROM {raw}"
    )


def read_exposures(source: Source) -> pd.DataFrame:
    """Validated exposures as a DataFrame (``timestamp`` as naive UTC datetimes)."""
    con = connect()
    register_exposures(con, source)
    frame: pd.DataFrame = con.execute(
        "SELECT unit_id, experiment, variant, ts AS timestamp, config_version FROM exposures"
    ).df()
    return frame


def read_outcomes(source: Source) -> pd.DataFrame:
    """Validated outcomes as a DataFrame (``timestamp`` as naive UTC datetimes)."""
    con = connect()
    register_outcomes(con, source)
    frame: pd.DataFrame = con.execute(
        "SELECT event_id, unit_id, metric, value, ts AS timestamp FROM outcomes"
    ).df()
    return frame


def attribute_names(source: Source, *, limit: int = 50) -> list[str]:
    """The attribute names kept with the exposures (keys of their ``attributes`` map),
    sorted; empty when they carry none.  What ``segment`` can be."""
    con = connect()
    try:
        raw, _ = _register_raw(con, source, "exposures")
        types = _column_types(con, raw, "exposures", EXPOSURE_COLUMNS)
        if not types.get("attributes", "").startswith("MAP("):
            return []
        rows = con.execute(
            f"SELECT DISTINCT unnest(map_keys(attributes)) AS name FROM {raw} "
            f"ORDER BY name LIMIT {int(limit)}"
        ).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows]


def fingerprint(source: Source) -> str:
    """SHA-256 of the input data, re-derivable by anyone holding the same inputs.

    Files: the bytes of every file (a directory's Parquet files in sorted relative-path
    order, each preceded by its path).  DataFrames: pandas' stable row hashes
    (`pandas.util.hash_pandas_object`, index excluded) of the columns in sorted order.
    """
    digest = hashlib.sha256()
    if isinstance(source, pd.DataFrame):
        frame = source[sorted(source.columns, key=str)]
        digest.update(",".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()
    path = Path(source)
    files = [path] if path.is_file() else _parquet_files(path)
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# -- helpers ------------------------------------------------------------------------------
def _parquet_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.parquet") if p.is_file())


def _register_raw(
    con: duckdb.DuckDBPyConnection, source: Source, name: str
) -> tuple[str, str | None]:
    """Expose ``source`` as the view ``_raw_<name>``; return its name and Parquet glob."""
    raw = f"_raw_{name}"
    glob: str | None = None
    if isinstance(source, pd.DataFrame):
        con.register(raw, source)
        return raw, None
    if not isinstance(source, str | os.PathLike):
        raise InvalidInput(
            f"{name} must be a DataFrame or a path, not {type(source).__name__}", name
        )
    path = Path(source)
    if path.is_dir():
        if not _parquet_files(path):
            raise InvalidInput(f"{name}: no Parquet files in directory {path}", name)
        glob = str(path / "**" / "*.parquet")
        scan = f"read_parquet({_quote(glob)}, union_by_name = true)"
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            glob = str(path)
            scan = f"read_parquet({_quote(glob)})"
        elif suffix == ".csv":
            scan = f"read_csv({_quote(str(path))}, header = true, auto_detect = true)"
        else:
            raise InvalidInput(f"{name}: {path} is neither .parquet nor .csv", name)
    else:
        raise InvalidInput(f"{name}: {path} does not exist", name)
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {raw} AS SELECT * FROM {scan}")
    except Exception as exc:  # duckdb raises many error types for unreadable files
        raise InvalidInput(f"{name}: cannot read {path}: {_first_line(exc)}", name) from exc
    return raw, glob


def _column_types(
    con: duckdb.DuckDBPyConnection, raw: str, name: str, required: Sequence[str]
) -> dict[str, str]:
    try:
        count = con.execute(f"SELECT count(*) FROM {raw}").fetchall()[0]
    except Exception as exc:  # e.g. a corrupt Parquet file found only when scanned
        raise InvalidInput(f"{name}: cannot read the data: {_first_line(exc)}", name) from exc
    if not count or not count[0]:
        raise InvalidInput(f"{name} is empty (no rows)", name)
    rows = con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall()
    types = {str(row[0]): str(row[1]).upper() for row in rows}
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


def _segment_sql(
    con: duckdb.DuckDBPyConnection, raw: str, types: dict[str, str], segment: str
) -> str:
    """SQL for one attribute of each exposure: its own column, else ``attributes[segment]``
    (a map, as exports write it, or a struct, as pandas writes a column of dicts)."""
    check_attribute_name(segment, "segment")
    if segment in types and segment not in (*EXPOSURE_COLUMNS, "config_version", "attributes"):
        return f'CAST("{segment}" AS VARCHAR)'
    sql = f"CAST(attributes[{_quote(segment)}] AS VARCHAR)"
    if types.get("attributes", "").startswith(("MAP(", "STRUCT(")):
        try:
            con.execute(f"SELECT {sql} FROM {raw} LIMIT 0")
        except Exception:  # duckdb: a struct without that field is a binder error
            pass
        else:
            return sql
    raise InvalidInput(
        f"the exposures carry no attribute '{segment}' (neither a column '{segment}' nor "
        "a key of an 'attributes' column; exports keep the attributes sent at assignment)",
        "segment",
    )


def _timestamp_sql(column_type: str, name: str) -> str:
    """SQL turning the ``timestamp`` column into a naive UTC TIMESTAMP.

    Through epoch microseconds: plain arithmetic, where a cast of TIMESTAMPTZ goes
    through ICU time-zone rules and is several times slower on 10M rows.
    """
    if column_type.startswith("TIMESTAMP WITH TIME ZONE"):
        return "make_timestamp(epoch_us(timestamp))"
    if column_type.startswith(("TIMESTAMP", "DATE")):
        return "CAST(timestamp AS TIMESTAMP)"
    if column_type.startswith(_TEXT_TYPES):
        return "make_timestamp(epoch_us(CAST(timestamp AS TIMESTAMPTZ)))"
    if column_type.startswith(_NUMERIC_PREFIXES):
        return "make_timestamp(CAST(round(timestamp * 1e6) AS BIGINT))"
    raise InvalidInput(
        f"column 'timestamp' of {name} must be a timestamp, date, ISO string or epoch "
        f"seconds, not {column_type}",
        f"{name}.timestamp",
    )


def _check_rows(
    con: duckdb.DuckDBPyConnection,
    *,
    raw: str,
    name: str,
    not_null: Sequence[str],
    types: dict[str, str],
    parquet_glob: str | None,
) -> None:
    """Nulls per required column and unparsable timestamps.

    Parquet files carry null counts in their row-group statistics; they answer without a
    scan of 10M rows.  Other sources (and files without statistics) are scanned once.
    """
    nulls: dict[str, int] | None = None
    if parquet_glob is not None:
        rows = con.execute(
            "SELECT path_in_schema, sum(stats_null_count), "
            "count(*) FILTER (WHERE stats_null_count IS NULL) "
            f"FROM parquet_metadata({_quote(parquet_glob)}) GROUP BY 1"
        ).fetchall()
        found = {str(r[0]): (int(r[1] or 0), int(r[2])) for r in rows}
        if all(c in found and found[c][1] == 0 for c in not_null):
            nulls = {c: found[c][0] for c in not_null}
    parse_check = types["timestamp"].startswith(_TEXT_TYPES)
    if nulls is None or parse_check:
        parts = [f"count(*) FILTER (WHERE {c} IS NULL)" for c in not_null]
        parts.append(
            "count(*) FILTER (WHERE timestamp IS NOT NULL "
            "AND TRY_CAST(timestamp AS TIMESTAMPTZ) IS NULL)"
            if parse_check
            else "0"
        )
        try:
            row = con.execute(f"SELECT {', '.join(parts)} FROM {raw}").fetchall()[0]
        except Exception as exc:  # e.g. a corrupt Parquet file found only when scanned
            raise InvalidInput(f"{name}: cannot read the data: {_first_line(exc)}", name) from exc
        nulls = dict(zip(not_null, (int(v) for v in row[:-1]), strict=True))
        if row[-1]:
            raise InvalidInput(
                f"{name}.timestamp has {row[-1]} value(s) that are not ISO-8601 timestamps",
                f"{name}.timestamp",
            )
    for column in not_null:
        if nulls[column]:
            raise InvalidInput(
                f"{name}.{column} has {nulls[column]} missing value(s)", f"{name}.{column}"
            )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
