"""Drain the exposure and outcome streams into Parquet files, exactly once per row.

Layout of the output directory (plain folder names, no ``key=value`` segments, so DuckDB
and pyarrow do not invent partition columns that clash with ``experiment``)::

    DIR/exposures/<experiment>/<YYYY-MM-DD>/<first-id>_<last-id>.parquet
    DIR/outcomes/<YYYY-MM-DD>/<first-id>_<last-id>.parquet
    DIR/quarantine/<stream>/<first-id>_<last-id>.jsonl   (malformed entries, kept verbatim)

The date is the UTC date of the event's own timestamp; the ids are the first and last
Redis stream ids of the rows in the file.  Readers take ``DIR/<kind>/**/*.parquet``;
temporary files end in ``.tmp`` and are never matched.

Exactly once, by construction:

1. One exporter per stream at a time: a lock key holds a random token with a TTL; every
   read, renewal and acknowledgement is a Lua script that first checks the token, so an
   exporter that lost its lock (stalled past the TTL) cannot touch the stream again.
2. Batches come from the consumer group ``abtest-export``.  A new batch (``>``) is read
   only while the group has nothing pending, so the pending list is always exactly one
   batch: the one whose files may or may not have been written before a crash.
3. Each run first re-reads the pending batch (id ``0``).  Files are a deterministic
   function of the batch (same rows, same names), so re-writing them replaces, never adds.
4. A file is written to a temporary name, fsynced, renamed, and its directory fsynced;
   only then are the batch's ids acknowledged and deleted (``XACK`` + ``XDEL``, atomic in
   one script).  Redis memory is freed as soon as rows are durable on disk.

``hook`` is called at each step (`Step`); an exception raised by it stops the export at
that point exactly as a crash would, which is how the tests prove points 3 and 4.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from abtest.errors import AbtestError, InvalidInput
from abtest.experiment import SLUG

if TYPE_CHECKING:
    import pyarrow as pa
    from redis import Redis

GROUP: Final = "abtest-export"
CONSUMER: Final = "exporter"  # one consumer name: the lock makes the exporter unique
DEFAULT_BATCH_SIZE: Final = 5_000
DEFAULT_LOCK_TTL: Final = 60.0
_ACK_CHUNK: Final = 500  # ids per XACK/XDEL call inside the script (Lua unpack limit)
_EPOCH: Final = date(1970, 1, 1)
_US_PER_DAY: Final = 86_400_000_000
_STALE_TMP_SECONDS: Final = 3_600.0


class Kind(StrEnum):
    """What a stream holds; also the top-level folder of its files."""

    EXPOSURES = "exposures"
    OUTCOMES = "outcomes"


class Step(StrEnum):
    """Points at which `export` calls its hook (the crash-injection points of the tests)."""

    READ = "read"  # a batch was read (and is now pending)
    WRITTEN = "written"  # one temporary file was written and fsynced
    RENAMED = "renamed"  # it was renamed to its final name
    DIR_SYNCED = "dir_synced"  # its directory was fsynced
    ACKED = "acked"  # the batch was acknowledged and deleted from the stream


Hook = Callable[[Step], None]


class ExportLockLost(AbtestError):
    """Another exporter took over this stream (ours stalled past the lock TTL)."""

    code = "export_lock_lost"


def _schemas() -> dict[Kind, pa.Schema]:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return {
        Kind.EXPOSURES: pa.schema(
            [("unit_id", pa.string()), ("experiment", pa.string()), ("variant", pa.string()),
             ("timestamp", ts), ("config_version", pa.int64())]
        ),
        Kind.OUTCOMES: pa.schema(
            [("event_id", pa.string()), ("unit_id", pa.string()), ("metric", pa.string()),
             ("value", pa.float64()), ("timestamp", ts)]
        ),
    }  # fmt: skip


def schema(kind: Kind) -> pa.Schema:
    """The Arrow schema of the files of ``kind``."""
    return _schemas()[kind]


@dataclass(frozen=True)
class StreamSource:
    """One stream to drain: its Redis key, what it holds and (exposures) its experiment."""

    stream: str
    kind: Kind
    experiment: str | None = None


@dataclass(frozen=True)
class StreamReport:
    """What one `export_stream` call did."""

    stream: str
    kind: Kind
    rows: int = 0
    files: tuple[str, ...] = ()
    quarantined: int = 0
    skipped: bool = False  # another exporter holds the stream's lock

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {"stream": self.stream, "kind": self.kind.value, "rows": self.rows,
                "files": list(self.files), "quarantined": self.quarantined,
                "skipped": self.skipped}  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    """What one `export` run did, stream by stream."""

    streams: tuple[StreamReport, ...] = field(default_factory=tuple)

    @property
    def rows(self) -> dict[str, int]:
        """Rows written per kind (``exposures``, ``outcomes``)."""
        totals = {kind.value: 0 for kind in Kind}
        for report in self.streams:
            totals[report.kind.value] += report.rows
        return totals

    @property
    def files(self) -> tuple[str, ...]:
        """Every file written, in order."""
        return tuple(f for report in self.streams for f in report.files)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Streams left alone because another exporter held them."""
        return tuple(report.stream for report in self.streams if report.skipped)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {"rows": self.rows, "files": len(self.files), "skipped": list(self.skipped),
                "quarantined": sum(r.quarantined for r in self.streams),
                "streams": [r.to_dict() for r in self.streams]}  # fmt: skip


# -- Lua: every read, renewal and acknowledgement is fenced by the lock token -------------
# KEYS[1] lock, KEYS[2] stream.  The lock key shares the stream's hash tag (it is derived
# from the stream name), so these scripts run unchanged on Redis Cluster.
_READ = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LOCKLOST') end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[5] == '>' then
  local pending = redis.call('XPENDING', KEYS[2], ARGV[3])
  if pending[1] > 0 then return redis.error_reply('PENDING batch not acknowledged') end
  return redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', ARGV[6],
                    'STREAMS', KEYS[2], '>')
end
return redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'STREAMS', KEYS[2], '0')
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LOCKLOST') end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_ACK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LOCKLOST') end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local chunk = tonumber(ARGV[4])
local acked = 0
for i = 5, #ARGV, chunk do
  local ids = {}
  for j = i, math.min(i + chunk - 1, #ARGV) do ids[#ids + 1] = ARGV[j] end
  acked = acked + redis.call('XACK', KEYS[2], ARGV[3], unpack(ids))
  redis.call('XDEL', KEYS[2], unpack(ids))
end
return acked
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lock_key(stream: str) -> str:
    """The export lock of ``stream``: the stream's name plus a suffix (same hash tag)."""
    return f"{stream}:export-lock"


class _Lock:
    """A fenced lock on one stream; every Redis call of the exporter goes through it."""

    def __init__(self, redis: Redis[Any], stream: str, ttl: float) -> None:
        self.redis = redis
        self.stream = stream
        self.key = lock_key(stream)
        self.token = secrets.token_hex(16)
        self.ttl_ms = max(1, int(ttl * 1000))

    def acquire(self) -> bool:
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def release(self) -> None:
        _run(self.redis, _RELEASE, [self.key], [self.token])

    def _call(self, script: str, *args: str | int) -> Any:
        from redis.exceptions import ResponseError

        try:
            keys = [self.key, self.stream]
            return _run(self.redis, script, keys, [self.token, self.ttl_ms, *args])
        except ResponseError as exc:
            if str(exc).startswith("LOCKLOST"):
                raise ExportLockLost(f"lost the export lock of {self.stream}") from exc
            raise

    def renew(self) -> None:
        self._call(_RENEW)

    def read(self, start: str, count: int) -> list[tuple[str, dict[str, str] | None]]:
        reply = self._call(_READ, GROUP, CONSUMER, start, count)
        if not reply:
            return []
        return [(_text(entry_id), _decode(fields)) for entry_id, fields in reply[0][1]]

    def ack(self, ids: Sequence[str]) -> None:
        self._call(_ACK, GROUP, _ACK_CHUNK, *ids)


def _run(redis: Redis[Any], script: str, keys: list[str], args: list[str | int]) -> Any:
    # EVALSHA with a fallback to EVAL: the script text is sent once per server.
    return redis.register_script(script)(keys, args)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(fields: Any) -> dict[str, str] | None:
    if fields is None:  # deleted while pending (e.g. trimmed by someone else)
        return None
    # A script's reply is a flat [name, value, name, value, ...] list.
    return {_text(k): _text(v) for k, v in zip(fields[::2], fields[1::2], strict=True)}


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# -- turning entries into rows --------------------------------------------------------------


def _day(timestamp_us: int) -> str:
    return (_EPOCH + timedelta(days=timestamp_us // _US_PER_DAY)).isoformat()


def _parse(kind: Kind, fields: Mapping[str, str]) -> dict[str, Any]:
    """One stream entry -> one row; raises ValueError naming what is wrong."""
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
    else:
        row["value"] = float(fields["value"])
        if not math.isfinite(row["value"]):
            raise ValueError("value is not finite")
    return row


@dataclass
class _Batch:
    """A batch split into output files: rows per relative path, plus malformed entries."""

    parts: dict[Path, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    bad: list[dict[str, Any]] = field(default_factory=list)


def _split(source: StreamSource, entries: Sequence[tuple[str, dict[str, str] | None]]) -> _Batch:
    batch = _Batch()
    by_dir: dict[Path, list[tuple[str, dict[str, Any]]]] = {}
    for entry_id, fields in entries:
        if fields is None:
            continue  # the entry is gone from the stream; there is nothing left to export
        try:
            row = _parse(source.kind, fields)
            if source.kind is Kind.EXPOSURES and row["experiment"] != source.experiment:
                raise ValueError(f"experiment {row['experiment']!r} in the stream of "
                                 f"{source.experiment!r}")  # fmt: skip
        except ValueError as exc:
            batch.bad.append({"id": entry_id, "fields": fields, "problem": str(exc)})
            continue
        folder = Path(source.kind.value)
        if source.experiment is not None:
            folder /= source.experiment
        by_dir.setdefault(folder / _day(row["timestamp"]), []).append((entry_id, row))
    for folder, rows in by_dir.items():
        batch.parts[folder / f"{rows[0][0]}_{rows[-1][0]}.parquet"] = rows
    return batch


# -- durable files ------------------------------------------------------------------------------


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
            child.mkdir(exist_ok=True)
            _fsync_dir(current)
        current = child
    return current


def _write_durably(root: Path, relative: Path, write: Callable[[Any], None], hook: Hook) -> Path:
    """temp file -> fsync -> rename -> fsync dir; the final name appears complete or not at all."""
    folder = _make_dirs(root, relative.parent)
    final = folder / relative.name
    tmp = folder / f".{relative.name}.{secrets.token_hex(4)}.tmp"
    try:
        with tmp.open("wb") as handle:
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


def _parquet_writer(
    kind: Kind, rows: Sequence[tuple[str, dict[str, Any]]]
) -> Callable[[Any], None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table_schema = schema(kind)
    columns = {
        name: pa.array([row[name] for _, row in rows], type=table_schema.field(name).type)
        for name in table_schema.names
    }
    table = pa.table(columns, schema=table_schema)

    def write(handle: Any) -> None:
        pq.write_table(table, handle, compression="zstd")

    return write


def _jsonl_writer(stream: str, bad: Sequence[Mapping[str, Any]]) -> Callable[[Any], None]:
    def write(handle: Any) -> None:
        for item in bad:
            line = json.dumps({"stream": stream, **item}, ensure_ascii=False, sort_keys=True)
            handle.write(line.encode() + b"\n")

    return write


def _remove_stale_tmp(root: Path) -> None:
    # Left by a crash between write and rename; young ones may belong to a live exporter.
    cutoff = time.time() - _STALE_TMP_SECONDS
    for tmp in root.rglob(".*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except FileNotFoundError:
            pass


# -- the export loop ---------------------------------------------------------------------------


def _no_hook(step: Step) -> None:
    del step


def export_stream(
    redis: Redis[Any],
    *,
    source: StreamSource,
    out_dir: str | os.PathLike[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    hook: Hook | None = None,
) -> StreamReport:
    """Drain one stream into ``out_dir``; returns at once (``skipped``) if it is locked."""
    from redis.exceptions import ResponseError

    if batch_size < 1:
        raise InvalidInput("batch size must be at least 1", "batch_size")
    if source.experiment is not None and not SLUG.match(source.experiment):
        raise InvalidInput(f"not an experiment key: {source.experiment!r}", "experiment")
    import pyarrow.parquet  # noqa: F401 - a slow first import must not eat into the lock's TTL

    call = hook or _no_hook
    root = Path(out_dir)
    lock = _Lock(redis, source.stream, lock_ttl)
    if not lock.acquire():
        return StreamReport(source.stream, source.kind, skipped=True)
    rows = quarantined = 0
    files: list[str] = []
    try:
        if not redis.exists(source.stream):
            return StreamReport(source.stream, source.kind)
        try:
            redis.xgroup_create(source.stream, GROUP, id="0")
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        last = redis.xrevrange(source.stream, count=1)
        high_water = _stream_id(_text(last[0][0])) if last else (0, 0)
        while True:
            entries = lock.read("0", 0)  # the pending batch of a crashed run, if any
            fresh = not entries
            if fresh:
                entries = lock.read(">", batch_size)
            if not entries:
                break
            call(Step.READ)
            batch = _split(source, entries)
            for relative, part in batch.parts.items():
                path = _write_durably(root, relative, _parquet_writer(source.kind, part), call)
                files.append(str(path))
                rows += len(part)
                lock.renew()
            if batch.bad:
                name = f"{entries[0][0]}_{entries[-1][0]}.jsonl"
                relative = Path("quarantine") / source.stream.replace("/", "_") / name
                path = _write_durably(root, relative, _jsonl_writer(source.stream, batch.bad), call)
                files.append(str(path))
                quarantined += len(batch.bad)
            lock.ack([entry_id for entry_id, _ in entries])
            call(Step.ACKED)
            if fresh and (len(entries) < batch_size or _stream_id(entries[-1][0]) >= high_water):
                break
    finally:
        lock.release()
    return StreamReport(source.stream, source.kind, rows, tuple(files), quarantined)


def discover(redis: Redis[Any]) -> list[StreamSource]:
    """Every stream to drain: each indexed experiment's exposures, then the outcomes."""
    from abtest import keys

    experiments = sorted(_text(k) for k in redis.smembers(keys.experiments_index()))
    found = [
        StreamSource(keys.exposures_stream(key), Kind.EXPOSURES, key)
        for key in experiments
        if SLUG.match(key)  # the index only ever holds validated keys; never build odd paths
    ]
    return [*found, StreamSource(keys.outcomes_stream(), Kind.OUTCOMES)]


def export(
    redis: Redis[Any],
    *,
    sources: Sequence[StreamSource] | None = None,
    out_dir: str | os.PathLike[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    hook: Hook | None = None,
) -> ExportResult:
    """Drain every stream of ``sources`` (default: `discover`) into ``out_dir``.

    Safe to run again after a crash at any point and concurrently with other runs: a stream
    locked by another exporter is reported as skipped (see the module docstring).
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(root)
    reports = [
        export_stream(redis, source=source, out_dir=root, batch_size=batch_size,
                      lock_ttl=lock_ttl, hook=hook)
        for source in (discover(redis) if sources is None else sources)
    ]  # fmt: skip
    return ExportResult(tuple(reports))


# -- reading the files back ---------------------------------------------------------------------


def files(directory: str | os.PathLike[str], kind: Kind | str) -> list[Path]:
    """The exported Parquet files of ``kind`` under ``directory``, sorted by path."""
    folder = Path(directory) / Kind(kind).value
    return sorted(p for p in folder.rglob("*.parquet") if p.is_file()) if folder.is_dir() else []


def read(directory: str | os.PathLike[str], kind: Kind | str) -> pa.Table:
    """Every exported row of ``kind`` as one Arrow table (empty, with the schema, if none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table_schema = schema(Kind(kind))
    tables = [pq.read_table(path, schema=table_schema) for path in files(directory, kind)]
    return pa.concat_tables(tables) if tables else table_schema.empty_table()


def read_exposures(directory: str | os.PathLike[str]) -> pa.Table:
    """Every exported exposure row (``unit_id, experiment, variant, timestamp, config_version``)."""
    return read(directory, Kind.EXPOSURES)


def read_outcomes(directory: str | os.PathLike[str]) -> pa.Table:
    """Every exported outcome row (``event_id, unit_id, metric, value, timestamp``)."""
    return read(directory, Kind.OUTCOMES)
