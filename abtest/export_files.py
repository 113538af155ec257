"""The files of ``abtest export``: schemas, row parsing, durable writes, and reading back.

Layout (Hive-style partitions, so Spark's partition discovery, DuckDB's
``hive_partitioning``, pyarrow datasets and a warehouse's external tables read them
directly, pruning by experiment and date)::

    OUT/exposures/experiment=<key>/date=<YYYY-MM-DD>/<first-id>_<last-id>[.p<n>].parquet
    OUT/holdout/experiment=<key>/date=<YYYY-MM-DD>/<first-id>_<last-id>[.p<n>].parquet
    OUT/outcomes/date=<YYYY-MM-DD>/<first-id>_<last-id>[.p<q>of<n>].parquet
    OUT/quarantine/<stream>/<first-id>_<last-id>.jsonl   (malformed entries, kept verbatim)

``.p<n>`` names the partition of a partitioned stream (stream ids are unique per stream
only).  As in Spark's and pyarrow's own partitioned writes, the partition key is in the
folder only: the exposure and holdout files have no ``experiment`` column, and every reader
that turns folders into columns (pandas and pyarrow datasets, DuckDB's
``hive_partitioning``, Spark's partition discovery, a warehouse's external table) gets it,
with nothing to reconcile.  `read_file` and the analysis fill it in from the folder
(`FOLDER_COLUMN_PATTERN`) for files without it.  Earlier versions wrote
``exposures/<key>/<YYYY-MM-DD>/``, ``holdout/<key>/<YYYY-MM-DD>/`` and
``outcomes/<YYYY-MM-DD>/``: `files`, `read` and
`analysis.data.load` read every ``*.parquet`` below a folder whatever its folders are
called, so old and new exports in one folder read as one.

Temporary files start with ``.`` and end in ``.tmp``: no ``*.parquet`` glob matches them.
Local files are created 0600 and folders 0700: the rows are user data.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from abtest import attributes

if TYPE_CHECKING:
    import pyarrow as pa

_EPOCH: Final = date(1970, 1, 1)
_US_PER_DAY: Final = 86_400_000_000
_STALE_TMP_SECONDS: Final = 3_600.0


class Kind(StrEnum):
    """What a stream holds; also the top-level folder of its files."""

    EXPOSURES = "exposures"
    OUTCOMES = "outcomes"
    HOLDOUT = "holdout"  # the global holdout's exposure log (`abtest.holdout`)


class Step(StrEnum):
    """Points at which `export` calls its hook (the crash-injection points of the tests)."""

    READ = "read"  # a batch was read (and is now pending)
    WRITTEN = "written"  # one temporary file was written and fsynced
    RENAMED = "renamed"  # it was renamed to its final name
    DIR_SYNCED = "dir_synced"  # its directory was fsynced
    ACKED = "acked"  # the batch was acknowledged and deleted from the stream


Hook = Callable[[Step], None]


def _schemas() -> dict[Kind, pa.Schema]:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return {
        Kind.EXPOSURES: pa.schema(
            [("unit_id", pa.string()), ("experiment", pa.string()), ("variant", pa.string()),
             ("timestamp", ts), ("config_version", pa.int64()),
             ("attributes", pa.map_(pa.string(), pa.string()))]
        ),
        Kind.OUTCOMES: pa.schema(
            [("event_id", pa.string()), ("unit_id", pa.string()), ("metric", pa.string()),
             ("value", pa.float64()), ("timestamp", ts)]
        ),
        Kind.HOLDOUT: pa.schema(
            [("unit_id", pa.string()), ("experiment", pa.string()), ("holdout", pa.string()),
             ("in_holdout", pa.bool_()), ("timestamp", ts)]
        ),
    }  # fmt: skip


FOLDER_COLUMN: Final = "experiment"
"""The column an exposure or holdout file's ``experiment=<key>`` folder holds."""
FOLDER_COLUMN_PATTERN: Final = r"/experiment=([^/]+)/"
"""A regular expression whose group 1 is that key in a file's path or URL."""


def schema(kind: Kind) -> pa.Schema:
    """The Arrow schema of the rows of ``kind``, as `read` returns them."""
    return _schemas()[kind]


def file_schema(kind: Kind) -> pa.Schema:
    """The Arrow schema of the files of ``kind``: `schema` without the folder's column."""
    logical = schema(kind)
    if FOLDER_COLUMN not in logical.names:
        return logical
    return logical.remove(logical.get_field_index(FOLDER_COLUMN))


def folder_key(path: str | os.PathLike[str]) -> str | None:
    """The experiment key of the ``experiment=<key>`` folder ``path`` lies in, if any."""
    found = re.search(FOLDER_COLUMN_PATTERN, Path(path).as_posix())
    return found.group(1) if found else None


def day(timestamp_us: int) -> str:
    return (_EPOCH + timedelta(days=timestamp_us // _US_PER_DAY)).isoformat()


_COMPACT: Final = {"u": "unit_id", "t": "timestamp", "c": "config_version", "a": "attributes"}


def parse(
    kind: Kind,
    fields: Mapping[str, str],
    *,
    experiment: str | None = None,
    variants: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One stream entry -> one row; raises ValueError naming what is wrong.

    A compact exposure entry (``u``, ``v``, ``t``, ``c``, ``a``: see `abtest.keys`) becomes the
    same row as a long one, with ``experiment`` and the variant code's key (``variants``)
    filled in; ``attributes`` is a list of (name, value) pairs (the Parquet map), or None.
    """
    if kind is Kind.HOLDOUT:
        missing = [n for n in ("u", "h", "t", "n") if n not in fields]
        if missing or experiment is None or fields["h"] not in ("0", "1"):
            raise ValueError(f"not a holdout entry (missing {', '.join(missing) or 'nothing'})")
        return {"unit_id": fields["u"], "experiment": experiment, "holdout": fields["n"],
                "in_holdout": fields["h"] == "1", "timestamp": int(fields["t"])}  # fmt: skip
    if kind is Kind.EXPOSURES and "v" in fields:
        if experiment is None or variants is None or fields["v"] not in variants:
            raise ValueError(f"unknown variant code {fields['v']!r}")
        long = {name: fields[short] for short, name in _COMPACT.items() if short in fields}
        fields = {**long, "experiment": experiment, "variant": variants[fields["v"]]}
    if kind is Kind.EXPOSURES:
        names = ("unit_id", "experiment", "variant", "timestamp", "config_version")
    else:
        names = ("event_id", "unit_id", "metric", "value", "timestamp")
    missing = [n for n in names if n not in fields]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    row: dict[str, Any] = {n: fields[n] for n in names}
    row["timestamp"] = int(fields["timestamp"])
    if kind is Kind.EXPOSURES:
        row["config_version"] = int(fields["config_version"])
        # Entries written before attributes were kept have none: null, not an empty map.
        kept = attributes.decode(fields["attributes"]) if "attributes" in fields else None
        row["attributes"] = None if kept is None else list(kept.items())
    else:
        row["value"] = float(fields["value"])
        if not math.isfinite(row["value"]):
            raise ValueError("value is not finite")
    return row


# -- durable files: temp name, fsync, rename, fsync the folder ---------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(root: Path, relative: Path) -> Path:
    """Create ``root/relative`` one level at a time, fsyncing each new entry's parent."""
    current = root
    for part in relative.parts:
        child = current / part
        if not child.is_dir():
            child.mkdir(mode=0o700, exist_ok=True)
            _fsync_dir(current)
        current = child
    return current


def write_durably(root: Path, relative: Path, write: Callable[[Any], None], hook: Hook) -> Path:
    """temp file -> fsync -> rename -> fsync dir; the final name appears complete or not at all."""
    folder = _make_dirs(root, relative.parent)
    final = folder / relative.name
    tmp = folder / f".{relative.name}.{secrets.token_hex(4)}.tmp"
    try:
        # Readable by this user only, whatever the caller's umask: the rows are user data.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        hook(Step.WRITTEN)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    hook(Step.RENAMED)
    _fsync_dir(folder)
    hook(Step.DIR_SYNCED)
    return final


def parquet_writer(kind: Kind, rows: Sequence[tuple[str, dict[str, Any]]]) -> Callable[[Any], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table_schema = file_schema(kind)
    columns = {
        name: pa.array([row[name] for _, row in rows], type=table_schema.field(name).type)
        for name in table_schema.names
    }
    table = pa.table(columns, schema=table_schema)

    def write(handle: Any) -> None:
        pq.write_table(table, handle, compression="zstd")

    return write


def jsonl_writer(stream: str, bad: Sequence[Mapping[str, Any]]) -> Callable[[Any], None]:
    def write(handle: Any) -> None:
        for item in bad:
            line = json.dumps({"stream": stream, **item}, ensure_ascii=False, sort_keys=True)
            handle.write(line.encode() + b"\n")

    return write


def remove_stale_tmp(root: Path) -> None:
    # Left by a crash between write and rename; young ones may belong to a live exporter.
    cutoff = time.time() - _STALE_TMP_SECONDS
    for tmp in root.rglob(".*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except FileNotFoundError:
            pass


# -- reading the files back ---------------------------------------------------------------------


def experiment_folders(directory: str | os.PathLike[str], experiment: str) -> list[Path]:
    """The folders holding ``experiment``'s exposures: ``experiment=<key>`` and, from
    earlier versions, ``<key>`` (those that exist)."""
    folder = Path(directory) / Kind.EXPOSURES.value
    return [p for p in (folder / f"experiment={experiment}", folder / experiment) if p.is_dir()]


def files(directory: str | os.PathLike[str], kind: Kind | str) -> list[Path]:
    """The exported Parquet files of ``kind`` under ``directory``, sorted by path."""
    folder = Path(directory) / Kind(kind).value
    return sorted(p for p in folder.rglob("*.parquet") if p.is_file()) if folder.is_dir() else []


def read(directory: str | os.PathLike[str], kind: Kind | str) -> pa.Table:
    """Every exported row of ``kind`` as one Arrow table (empty, with the schema, if none)."""
    import pyarrow as pa

    tables = [read_file(path, Kind(kind)) for path in files(directory, kind)]
    return pa.concat_tables(tables) if tables else schema(Kind(kind)).empty_table()


def read_file(path: str | os.PathLike[str], kind: Kind) -> pa.Table:
    """One exported file's rows in `schema`'s columns: ``experiment`` from its folder when
    the file has none (this layout) or from the file itself (earlier ones)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table_schema = schema(kind)
    table = pq.read_table(path, schema=table_schema)  # a column the file lacks is null
    key = folder_key(path)
    if FOLDER_COLUMN in table_schema.names and key is not None:
        index = table_schema.get_field_index(FOLDER_COLUMN)
        column = pc.coalesce(table.column(index), pa.scalar(key))
        table = table.set_column(index, FOLDER_COLUMN, column)
    return table


def read_exposures(directory: str | os.PathLike[str]) -> pa.Table:
    """Every exported exposure row (``unit_id, experiment, variant, timestamp, config_version,
    attributes``; files written before attributes were kept read them as null)."""
    return read(directory, Kind.EXPOSURES)


def read_holdout(directory: str | os.PathLike[str]) -> pa.Table:
    """Every exported holdout row (``unit_id, experiment, holdout, in_holdout, timestamp``)."""
    return read(directory, Kind.HOLDOUT)


def read_outcomes(directory: str | os.PathLike[str]) -> pa.Table:
    """Every exported outcome row (``event_id, unit_id, metric, value, timestamp``)."""
    return read(directory, Kind.OUTCOMES)
