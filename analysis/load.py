"""Reading exposures and outcomes: the one module of `analysis` that touches files and frames.

Sources are pandas DataFrames, single Parquet or CSV files, or directories of Parquet files
as ``abtest export`` writes them (searched recursively).  Nothing is read into Python
memory: each source becomes a typed, validated DuckDB view over the original data, so the
join in `analysis.join` runs inside the engine however large the files are.

Schemas (extra columns are ignored):

- exposures: ``unit_id, experiment, variant, timestamp[, config_version]``
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
    return con


def register_exposures(
    con: duckdb.DuckDBPyConnection, source: Source, *, name: str = "exposures"
) -> None:
    """Create the validated view ``name(unit_id, experiment, variant, ts, config_version)``.

    Raises
    ------
    InvalidInput
        The source is missing, empty, lacks a column, or has a column of the wrong type or
        with nulls; ``field`` names the column (``exposures.variant``).
    """
    raw = _register_raw(con, source, name)
    types = _column_types(con, raw, name, EXPOSURE_COLUMNS)
    for column in ("experiment", "variant"):
        _require_text(types, column, name)
    _require_key(types, "unit_id", name)
    version = (
        "CAST(config_version AS VARCHAR)" if "config_version" in types else "CAST(NULL AS VARCHAR)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT CAST(unit_id AS VARCHAR) AS unit_id, "
        f"CAST(experiment AS VARCHAR) AS experiment, CAST(variant AS VARCHAR) AS variant, "
        f"{_timestamp_sql(types['timestamp'], name)} AS ts, {version} AS config_version "
        f"FROM {raw}"
    )
    _check_rows(con, raw, name, ("unit_id", "experiment", "variant", "timestamp"), types)


def register_outcomes(
    con: duckdb.DuckDBPyConnection, source: Source, *, name: str = "outcomes"
) -> None:
    """Create the validated view ``name(event_id, unit_id, metric, value, ts)``.

    Raises
    ------
    InvalidInput
        As `register_exposures`; also when ``value`` is not numeric or not finite.
    """
    raw = _register_raw(con, source, name)
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
    _check_rows(con, raw, name, ("event_id", "unit_id", "metric", "timestamp"), types)
    if "value" in types:
        bad = con.execute(
            f"SELECT count(*) FROM {raw} WHERE value IS NOT NULL AND NOT isfinite(CAST(value AS DOUBLE))"
        ).fetchall()[0]
        if bad and bad[0]:
            raise InvalidInput(f"{name}.value has {bad[0]} non-finite value(s)", f"{name}.value")


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


def _register_raw(con: duckdb.DuckDBPyConnection, source: Source, name: str) -> str:
    """Expose ``source`` as the view ``_raw_<name>``; return that view's name."""
    raw = f"_raw_{name}"
    if isinstance(source, pd.DataFrame):
        con.register(raw, source)
        return raw
    if not isinstance(source, str | os.PathLike):
        raise InvalidInput(
            f"{name} must be a DataFrame or a path, not {type(source).__name__}", name
        )
    path = Path(source)
    if path.is_dir():
        if not _parquet_files(path):
            raise InvalidInput(f"{name}: no Parquet files in directory {path}", name)
        scan = f"read_parquet({_quote(str(path / '**' / '*.parquet'))}, union_by_name = true)"
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            scan = f"read_parquet({_quote(str(path))})"
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
    return raw


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


def _timestamp_sql(column_type: str, name: str) -> str:
    if column_type.startswith("TIMESTAMP WITH TIME ZONE"):
        return "timezone('UTC', timestamp)"
    if column_type.startswith(("TIMESTAMP", "DATE")):
        return "CAST(timestamp AS TIMESTAMP)"
    if column_type.startswith(_TEXT_TYPES):
        return "timezone('UTC', CAST(timestamp AS TIMESTAMPTZ))"
    if column_type.startswith(_NUMERIC_PREFIXES):
        return "timezone('UTC', to_timestamp(CAST(timestamp AS DOUBLE)))"
    raise InvalidInput(
        f"column 'timestamp' of {name} must be a timestamp, date, ISO string or epoch "
        f"seconds, not {column_type}",
        f"{name}.timestamp",
    )


def _check_rows(
    con: duckdb.DuckDBPyConnection,
    raw: str,
    name: str,
    not_null: Sequence[str],
    types: dict[str, str],
) -> None:
    """One scan: nulls per required column, and unparsable timestamps."""
    parts = ["count(*)"] + [f"count(*) FILTER (WHERE {c} IS NULL)" for c in not_null]
    if types["timestamp"].startswith(_TEXT_TYPES):
        parts.append(
            "count(*) FILTER (WHERE timestamp IS NOT NULL "
            "AND TRY_CAST(timestamp AS TIMESTAMPTZ) IS NULL)"
        )
    try:
        row = con.execute(f"SELECT {', '.join(parts)} FROM {raw}").fetchall()[0]
    except Exception as exc:  # e.g. a corrupt Parquet file found only when scanned
        raise InvalidInput(f"{name}: cannot read the data: {_first_line(exc)}", name) from exc
    assert row is not None
    for column, nulls in zip(not_null, row[1 : 1 + len(not_null)], strict=True):
        if nulls:
            raise InvalidInput(
                f"{name}.{column} has {nulls} missing value(s)", f"{name}.{column}"
            )
    if len(row) > 1 + len(not_null) and row[-1]:
        raise InvalidInput(
            f"{name}.timestamp has {row[-1]} value(s) that are not ISO-8601 timestamps",
            f"{name}.timestamp",
        )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
