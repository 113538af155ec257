"""Drain the exposure and outcome streams into Parquet files, exactly once per row.

Files go to ``OUT/exposures/experiment=<key>/date=<YYYY-MM-DD>/`` and
``OUT/outcomes/date=<YYYY-MM-DD>/`` (the event's UTC date: a Hive-style lake layout that
Spark, DuckDB, Trino and warehouses' external tables read as partitions), named
``<first-id>_<last-id>.parquet`` after the Redis stream ids of their rows; see
`abtest.export_files` for the layout, the schemas and the readers.  ``OUT`` is a local
folder or any fsspec URL (`abtest.export_target`: what is atomic where).
Every partition of every experiment's exposures and of the events is its own stream (see
`abtest.keys`), drained on its own with the guarantees below; on Redis Cluster each
stream's lock, reads and acknowledgements go to the shard that holds it.  Stream ids are
unique per stream only, so a partition's files carry its partition in their names
(``<first-id>_<last-id>.p<n>.parquet``).

Exactly once, by construction:

1. One exporter per stream at a time: a lock key holds a random token with a TTL; every
   read, renewal and acknowledgement is a Lua script that first checks the token, so an
   exporter that lost its lock (stalled past the TTL) cannot touch the stream again.
2. Batches come from the consumer group ``abtest-export``.  A new batch (``>``) is read
   only while the group has nothing pending, so the pending list is always exactly one
   batch: the one whose files may or may not have been written before a crash.
3. Each run first re-reads the pending batch (id ``0``).  Files are a deterministic
   function of the batch (same rows, same names), so re-writing them replaces, never adds.
4. A file is written to a temporary name, fsynced, renamed, and its directory fsynced
   (on an object store: written whole to its deterministic final name); only then are the
   batch's ids acknowledged and deleted (``XACK`` + ``XDEL``, atomic in one script).
   Redis memory is freed as soon as rows are durable.

``hook`` is called at each step (`Step`); an exception raised by it stops the export at
that point exactly as a crash would, which is how the tests prove points 3 and 4.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Final

from abtest import keys, layout
from abtest.catalogue_store import MetricCatalogue
from abtest.errors import AbtestError, InvalidInput
from abtest.experiment import SLUG
from abtest.export_files import (
    Hook,
    Kind,
    Step,
    day,
    experiment_folders,
    file_schema,
    files,
    jsonl_writer,
    parquet_writer,
    parse,
    read,
    read_exposures,
    read_holdout,
    read_outcomes,
    schema,
)
from abtest.export_target import Target, export_target
from abtest.redis_client import register_script

__all__ = [
    "CONSUMER", "DEFAULT_BATCH_SIZE", "DEFAULT_LOCK_TTL", "GROUP", "ExportLockLost",
    "ExportResult", "Kind", "Step", "StreamReport", "StreamSource", "discover",
    "experiment_folders", "export", "export_stream", "file_schema", "files", "read",
    "read_exposures", "read_holdout", "read_outcomes", "schema", "sources_for",
    "sources_for_holdout",
]  # fmt: skip

if TYPE_CHECKING:
    from abtest.redis_client import AnyRedis

CATALOGUE_FILE: Final = "catalogue.json"  # beside exposures/ and outcomes/
GROUP: Final = "abtest-export"
CONSUMER: Final = "exporter"  # one consumer name: the lock makes the exporter unique
DEFAULT_BATCH_SIZE: Final = 5_000
DEFAULT_LOCK_TTL: Final = 60.0
_ACK_CHUNK: Final = 500  # ids per XACK/XDEL call inside the script (Lua unpack limit)


class ExportLockLost(AbtestError):
    """Another exporter took over this stream (ours stalled past the lock TTL)."""

    code = "export_lock_lost"


@dataclass(frozen=True)
class StreamSource:
    """One stream to drain: its Redis key, what it holds and (exposures) its experiment."""

    stream: str
    kind: Kind
    experiment: str | None = None
    part: str = ""  # "p<n>" for partition n of a partitioned stream: keeps file names apart


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


class _Lock:
    """A fenced lock on one stream; every Redis call of the exporter goes through it."""

    def __init__(self, redis: AnyRedis, stream: str, ttl: float) -> None:
        self.redis = redis
        self.stream = stream
        self.key = keys.export_lock(stream)
        self.token = secrets.token_hex(16)
        self.ttl_ms = max(1, int(ttl * 1000))

    def acquire(self) -> bool:
        return bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def release(self) -> None:
        _run(self.redis, keys.RELEASE_LOCK_SCRIPT, [self.key], [self.token])

    def _call(self, script: str, *args: str | int) -> Any:
        from redis.exceptions import ResponseError

        try:
            return _run(self.redis, script, [self.key, self.stream],
                        [self.token, self.ttl_ms, *args])  # fmt: skip
        except ResponseError as exc:
            if str(exc).startswith("LOCKLOST"):
                raise ExportLockLost(f"lost the export lock of {self.stream}; run again") from exc
            if str(exc).startswith("PENDING"):  # cannot happen while the lock holds: say so
                raise AbtestError(f"{self.stream}: a batch is pending under our lock") from exc
            raise

    def renew(self) -> None:
        self._call(keys.EXPORT_RENEW_SCRIPT)

    def read(self, start: str, count: int) -> list[tuple[str, dict[str, str] | None]]:
        reply = self._call(keys.EXPORT_READ_SCRIPT, GROUP, CONSUMER, start, count)
        if not reply:
            return []
        return [(_text(entry_id), _decode(fields)) for entry_id, fields in reply[0][1]]

    def ack(self, ids: Sequence[str]) -> None:
        self._call(keys.EXPORT_ACK_SCRIPT, GROUP, _ACK_CHUNK, *ids)


def _run(redis: AnyRedis, script: str, names: list[str], args: list[str | int]) -> Any:
    # EVALSHA with a fallback to EVAL: the script text is sent once per server.
    return register_script(redis, script)(names, args)


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


@dataclass
class _Batch:
    """A batch split into output files: rows per relative path, plus malformed entries."""

    parts: dict[PurePosixPath, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    bad: list[dict[str, Any]] = field(default_factory=list)


def _split(
    source: StreamSource,
    entries: Sequence[tuple[str, dict[str, str] | None]],
    variants: dict[str, str] | None,
) -> _Batch:
    batch = _Batch()
    by_dir: dict[PurePosixPath, list[tuple[str, dict[str, Any]]]] = {}
    for entry_id, fields in entries:
        if fields is None:
            continue  # the entry is gone from the stream; there is nothing left to export
        try:
            row = parse(source.kind, fields, experiment=source.experiment, variants=variants)
            if source.kind is not Kind.OUTCOMES and row["experiment"] != source.experiment:
                raise ValueError(f"experiment {row['experiment']!r} in the stream of "
                                 f"{source.experiment!r}")  # fmt: skip
        except ValueError as exc:
            batch.bad.append({"id": entry_id, "fields": fields, "problem": str(exc)})
            continue
        folder = PurePosixPath(source.kind.value)
        if source.experiment is not None:
            folder /= f"experiment={source.experiment}"
        by_dir.setdefault(folder / f"date={day(row['timestamp'])}", []).append((entry_id, row))
    suffix = f".{source.part}" if source.part else ""
    for folder, rows in by_dir.items():
        batch.parts[folder / f"{rows[0][0]}_{rows[-1][0]}{suffix}.parquet"] = rows
    return batch


# -- the export loop ---------------------------------------------------------------------------


def _no_hook(step: Step) -> None:
    del step


def export_stream(
    redis: AnyRedis,
    *,
    source: StreamSource,
    out_dir: str | os.PathLike[str] | Target,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    hook: Hook | None = None,
) -> StreamReport:
    """Drain one stream into ``out_dir`` (a folder, a URL or a target); returns at once
    (``skipped``) if it is locked."""
    from redis.exceptions import ResponseError

    if batch_size < 1:
        raise InvalidInput("batch size must be at least 1", "batch_size")
    if source.experiment is not None and not SLUG.fullmatch(source.experiment):
        raise InvalidInput(f"not an experiment key: {source.experiment!r}", "experiment")
    import pyarrow.parquet  # noqa: F401 - a slow first import must not eat into the lock's TTL

    call = hook or _no_hook
    target = export_target(out_dir)
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
            # Read after the batch: codes only ever grow, so every code in it is known.
            variants = None
            if source.kind is Kind.EXPOSURES and source.experiment is not None:
                codes = redis.hgetall(keys.variant_codes(source.experiment))
                variants = {_text(code): _text(variant) for variant, code in codes.items()}
            batch = _split(source, entries, variants)
            for relative, part in batch.parts.items():
                files.append(target.write(relative, parquet_writer(source.kind, part), call))
                rows += len(part)
                lock.renew()
            if batch.bad:
                name = f"{entries[0][0]}_{entries[-1][0]}.jsonl"
                relative = PurePosixPath("quarantine") / source.stream.replace("/", "_") / name
                files.append(target.write(relative, jsonl_writer(source.stream, batch.bad), call))
                quarantined += len(batch.bad)
            lock.ack([entry_id for entry_id, _ in entries])
            call(Step.ACKED)
            if fresh and (len(entries) < batch_size or _stream_id(entries[-1][0]) >= high_water):
                break
    finally:
        lock.release()
    return StreamReport(source.stream, source.kind, rows, tuple(files), quarantined)


def _exposure_sources(redis: AnyRedis, experiment: str) -> list[StreamSource]:
    """The experiment's exposure partitions, then its holdout log's."""
    partitions = layout.partition_count(redis.hget(keys.experiment_meta(experiment), "partitions"))
    return [
        StreamSource(stream, kind, experiment, f"p{p}" if partitions > 1 else "")
        for kind, streams in ((Kind.EXPOSURES, layout.exposure_streams(experiment, partitions)),
                              (Kind.HOLDOUT, layout.holdout_streams(experiment, partitions)))
        for p, stream in enumerate(streams)
    ]  # fmt: skip


def _outcome_sources(redis: AnyRedis) -> list[StreamSource]:
    counts = {int(count) for count in redis.smembers(keys.event_partition_counts())} | {1}
    sources = []
    for count in sorted(counts):
        sources += [
            StreamSource(keys.outcomes_stream(q, count), Kind.OUTCOMES,
                         part=f"p{q}of{count}" if count > 1 else "")
            for q in range(count)
        ]  # fmt: skip
    return sources


def discover(redis: AnyRedis) -> list[StreamSource]:
    """Every stream to drain: each experiment's exposure partitions, then every outcome
    partition of every events partitioning the store was written with."""
    experiments = sorted(_text(k) for k in redis.smembers(keys.experiments_index()))
    found = [
        source
        for key in experiments
        if SLUG.fullmatch(key)  # the index only ever holds validated keys; never build odd paths
        for source in _exposure_sources(redis, key)
    ]
    return [*found, *_outcome_sources(redis)]


def sources_for(redis: AnyRedis, experiment: str) -> list[StreamSource]:
    """The streams one experiment's analysis needs: its exposures and every outcome stream."""
    if not SLUG.fullmatch(experiment):
        raise InvalidInput(f"not an experiment key: {experiment!r}", "experiment")
    return [*_exposure_sources(redis, experiment), *_outcome_sources(redis)]


def sources_for_holdout(redis: AnyRedis) -> list[StreamSource]:
    """The streams the holdout's analysis needs: every experiment's holdout log and every
    outcome stream."""
    return [source for source in discover(redis) if source.kind in (Kind.HOLDOUT, Kind.OUTCOMES)]


def export(
    redis: AnyRedis,
    *,
    sources: Sequence[StreamSource] | None = None,
    out_dir: str | os.PathLike[str] | Target,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lock_ttl: float = DEFAULT_LOCK_TTL,
    hook: Hook | None = None,
) -> ExportResult:
    """Drain every stream of ``sources`` (default: `discover`) into ``out_dir``, a local
    folder or an fsspec URL (``s3://bucket/lake``).

    Safe to run again after a crash at any point and concurrently with other runs: a stream
    locked by another exporter is reported as skipped (see the module docstring).  A full
    export (no ``sources``) also writes ``catalogue.json``: every version of every catalogue
    metric, so the analysis of the files can resolve the references of an experiment file
    (`abtest.catalogue.snapshot_lookup`).

    Raises
    ------
    InvalidInput
        ``out_dir`` is a file, or a URL whose filesystem library is not installed.
    """
    target = export_target(out_dir)
    reports = [
        export_stream(redis, source=source, out_dir=target, batch_size=batch_size,
                      lock_ttl=lock_ttl, hook=hook)
        for source in (discover(redis) if sources is None else sources)
    ]  # fmt: skip
    if sources is None:
        snapshot = json.dumps(MetricCatalogue(redis).snapshot(), ensure_ascii=False, indent=1)
        # Rewritten whole at each full export: a rename locally, one PUT on object stores.
        target.write(PurePosixPath(CATALOGUE_FILE), lambda f: f.write(snapshot.encode()),
                     _no_hook)  # fmt: skip
    return ExportResult(tuple(reports))
