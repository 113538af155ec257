"""`abtest export`: every stream entry ends up in exactly one Parquet row, whatever happens."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import redis

from abtest import keys
from abtest.cli import main
from abtest.embedded import EmbeddedRedis
from abtest.events import parse_events
from abtest.export import (
    CONSUMER,
    GROUP,
    ExportLockLost,
    Kind,
    Step,
    StreamSource,
    export,
    export_stream,
    file_schema,
    read_exposures,
    read_outcomes,
    schema,
)
from abtest.store import Store
from tests.conftest import simple_config

DAY1 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z in epoch microseconds
DAY2 = DAY1 + 86_400_000_000


# -- helpers ------------------------------------------------------------------------------------


def add_exposures(
    r: redis.Redis, experiment: str, units: range, *, start: int = DAY1, step: int = 3_600_000_000
) -> list[tuple[Any, ...]]:
    """Append first exposures the way stores before the compact layout did; return the
    expected rows."""
    r.sadd(keys.experiments_index(), experiment)
    rows = []
    for i in units:
        row = (f"u{i}", experiment, "treatment" if i % 2 else "control", start + i * step, 3)
        r.xadd(
            keys.exposures_stream(experiment),
            dict(
                zip(
                    ("unit_id", "experiment", "variant", "timestamp", "config_version"),
                    (str(v) for v in row),
                    strict=True,
                )
            ),
        )
        rows.append((*row, None))  # long-form entries predate attributes: null
    return rows


def add_outcomes(
    r: redis.Redis, ids: range, *, start: int = DAY1, step: int = 7_200_000_000
) -> list[tuple[Any, ...]]:
    """Append accepted outcome events the way the ingest script does; return expected rows."""
    rows = []
    for i in ids:
        row = (f"e{i}", f"u{i % 13}", "clicks", i * 0.5, start + i * step)
        r.xadd(
            keys.outcomes_stream(),
            {
                "event_id": row[0],
                "unit_id": row[1],
                "metric": row[2],
                "value": repr(row[3]),
                "timestamp": str(row[4]),
            },
        )
        rows.append(row)
    return rows


def exported(out: Path) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """Multisets of exported rows, timestamps back in epoch microseconds."""

    def rows(table: pa.Table) -> Counter[tuple[Any, ...]]:
        table = table.set_column(
            table.schema.get_field_index("timestamp"),
            "timestamp",
            table.column("timestamp").cast(pa.int64()),
        )
        return Counter(tuple(r.values()) for r in table.to_pylist())

    return rows(read_exposures(out)), rows(read_outcomes(out))


def assert_drained(r: redis.Redis, *streams: str) -> None:
    """Nothing is left in the streams and nothing is pending in the export group."""
    for stream in streams:
        assert r.xlen(stream) == 0, stream
        assert r.xpending(stream, GROUP)["pending"] == 0, stream


class Crash(Exception):
    """Stands for the process dying at a step."""


def crash_at(step: Step, occurrence: int = 1) -> Callable[[Step], None]:
    """A hook that raises `Crash` the ``occurrence``-th time ``step`` is reached."""
    seen = Counter[Step]()

    def hook(reached: Step) -> None:
        seen[reached] += 1
        if reached is step and seen[reached] == occurrence:
            raise Crash(step.value)

    return hook


# -- fixtures: the session's redis-server from conftest, under short local names --------------


@pytest.fixture
def r(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def url(redis_url: str, redis_client: redis.Redis) -> str:
    return redis_url


# -- behaviour ----------------------------------------------------------------------------------


def test_export_writes_each_row_once_with_the_schema_and_empties_redis(
    r: redis.Redis, tmp_path: Path
) -> None:
    """Every exposure and outcome is exported once, typed as documented, then removed."""
    expected_exp = add_exposures(r, "checkout", range(30)) + add_exposures(r, "search", range(5))
    expected_out = add_outcomes(r, range(25))
    result = export(r, out_dir=tmp_path, batch_size=7)
    exposures, outcomes = exported(tmp_path)
    assert exposures == Counter(expected_exp)
    assert outcomes == Counter(expected_out)
    assert result.rows == {"exposures": 35, "outcomes": 25, "holdout": 0}
    assert read_exposures(tmp_path).schema == schema(Kind.EXPOSURES)
    assert read_outcomes(tmp_path).schema == schema(Kind.OUTCOMES)
    assert read_exposures(tmp_path).column("timestamp")[0].as_py() == datetime(
        2024, 6, 1, tzinfo=UTC
    )
    assert_drained(
        r,
        keys.exposures_stream("checkout"),
        keys.exposures_stream("search"),
        keys.outcomes_stream(),
    )


def test_files_are_partitioned_by_kind_experiment_and_utc_date(
    r: redis.Redis, tmp_path: Path
) -> None:
    """Files land in exposures/experiment=<key>/date=<day>/ and outcomes/date=<day>/ (Hive
    style), named by stream ids."""
    add_exposures(r, "checkout", range(30))  # one per hour from DAY1: spans two UTC days
    add_outcomes(r, range(3))
    export(r, out_dir=tmp_path)
    exposure_dirs = {
        p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.glob("exposures/**/*.parquet")
    }
    assert exposure_dirs == {"exposures/experiment=checkout/date=2024-06-01",
                             "exposures/experiment=checkout/date=2024-06-02"}  # fmt: skip
    assert {p.parent.name for p in tmp_path.glob("outcomes/*/*.parquet")} == {"date=2024-06-01"}
    for path in tmp_path.glob("**/*.parquet"):
        first, last = path.stem.split("_")
        assert first <= last and first.split("-")[0].isdigit()
    day2 = pa.concat_tables([
        pa.parquet.read_table(p)
        for p in tmp_path.glob("exposures/experiment=checkout/date=2024-06-02/*")
    ])  # fmt: skip
    assert all(t.date().isoformat() == "2024-06-02" for t in day2.column("timestamp").to_pylist())


def test_pandas_and_pyarrow_read_the_layout_as_partitions(r: redis.Redis, tmp_path: Path) -> None:
    """pandas.read_parquet on the exposures folder (a pyarrow dataset with Hive partitioning)
    merges the folders' ``experiment`` with the files' own and filters by it; a single file
    and `read_exposures` still give plain strings."""
    add_exposures(r, "checkout", range(30))
    add_exposures(r, "search", range(5))
    export(r, out_dir=tmp_path)
    frame = pd.read_parquet(tmp_path / "exposures")
    assert len(frame) == 35 and set(frame["experiment"]) == {"checkout", "search"}
    assert set(frame["date"].astype(str)) == {"2024-06-01", "2024-06-02"}
    only = pd.read_parquet(tmp_path / "exposures", filters=[("experiment", "=", "search")])
    assert len(only) == 5
    assert read_exposures(tmp_path).schema.field("experiment").type == pa.string()


def test_duckdb_reads_the_layout_as_partitions_or_as_plain_files(
    r: redis.Redis, tmp_path: Path
) -> None:
    """With hive_partitioning the folders add ``experiment`` and ``date`` to the files'
    columns; without it a recursive glob sees the files' own columns, the folder's key not
    among them (as Spark and pyarrow write partitions)."""
    add_exposures(r, "checkout", range(30))
    export(r, out_dir=tmp_path)
    glob = str(tmp_path / "exposures" / "**" / "*.parquet")
    plain = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = false)")
    assert plain.columns == file_schema(Kind.EXPOSURES).names
    assert "experiment" not in plain.columns and "experiment" in schema(Kind.EXPOSURES).names
    hive = f"read_parquet('{glob}', hive_partitioning = true)"
    assert set(duckdb.sql(f"SELECT * FROM {hive}").columns) == {
        *schema(Kind.EXPOSURES).names,
        "date",
    }
    rows = duckdb.sql(
        f"SELECT experiment, CAST(date AS VARCHAR), count(*) FROM {hive} "
        "WHERE experiment = 'checkout' GROUP BY ALL ORDER BY 2"
    ).fetchall()
    assert rows == [("checkout", "2024-06-01", 24), ("checkout", "2024-06-02", 6)]


def test_rows_written_by_the_real_store_round_trip(store: Store, tmp_path: Path) -> None:
    """Exposures from `Store.assign` and events from `Store.record_events` export faithfully."""
    store.create_experiment(simple_config("checkout"), key_id="t")
    stored = store.start_experiment("checkout", key_id="t")
    assigned = {f"user-{i}": store.assign("checkout", f"user-{i}")[0].variant for i in range(40)}
    store.assign("checkout", "user-1")  # a repeat is not a second exposure
    events = parse_events(
        [
            {
                "event_id": f"ev-{i}",
                "unit_id": f"user-{i}",
                "metric": "revenue",
                "value": i / 3,
                "timestamp": 1_717_200_000 + i,
            }
            for i in range(15)
        ]
    )
    store.record_events(events)
    export(store.redis, out_dir=tmp_path)
    exposures = read_exposures(tmp_path).to_pylist()
    assert {row["unit_id"]: row["variant"] for row in exposures} == assigned
    assert len(exposures) == 40
    assert {row["config_version"] for row in exposures} == {stored.version}
    assert {row["experiment"] for row in exposures} == {"checkout"}
    outcomes = read_outcomes(tmp_path).to_pylist()
    assert [(o["event_id"], o["value"]) for o in outcomes] == [
        (e.event_id, e.value) for e in events
    ]
    assert outcomes[3]["timestamp"] == datetime.fromtimestamp(1_717_200_003, UTC)


def test_rerun_writes_nothing_new(r: redis.Redis, tmp_path: Path) -> None:
    """A second run over drained streams adds no file and no row."""
    expected = add_exposures(r, "checkout", range(12))
    export(r, out_dir=tmp_path, batch_size=5)
    before = sorted(tmp_path.rglob("*.parquet"))
    again = export(r, out_dir=tmp_path, batch_size=5)
    assert again.files == () and sorted(tmp_path.rglob("*.parquet")) == before
    assert exported(tmp_path)[0] == Counter(expected)


def test_new_rows_after_an_export_go_to_new_files(r: redis.Redis, tmp_path: Path) -> None:
    """Rows added between runs are exported by the next run, once."""
    first = add_exposures(r, "checkout", range(10))
    export(r, out_dir=tmp_path)
    second = add_exposures(r, "checkout", range(10, 20))
    export(r, out_dir=tmp_path)
    assert exported(tmp_path)[0] == Counter(first + second)


CRASH_POINTS = [
    (Step.READ, 1),
    (Step.READ, 2),
    (Step.WRITTEN, 1),
    (Step.WRITTEN, 2),
    (Step.RENAMED, 1),
    (Step.RENAMED, 2),
    (Step.RENAMED, 3),
    (Step.DIR_SYNCED, 1),
    (Step.DIR_SYNCED, 2),
    (Step.ACKED, 1),
    (Step.ACKED, 2),
]


@pytest.mark.parametrize(("step", "occurrence"), CRASH_POINTS)
def test_crash_at_any_step_then_rerun_leaves_exactly_one_copy(
    r: redis.Redis, tmp_path: Path, step: Step, occurrence: int
) -> None:
    """A run that dies at any step, followed by a normal run, exports every row exactly once."""
    expected_exp = add_exposures(r, "checkout", range(30))  # batches span two dates: 2 files
    expected_out = add_outcomes(r, range(9))
    with pytest.raises(Crash):
        export(r, out_dir=tmp_path, batch_size=8, hook=crash_at(step, occurrence))
    late = add_exposures(r, "checkout", range(30, 34))  # traffic goes on between the runs
    export(r, out_dir=tmp_path, batch_size=8)
    exposures, outcomes = exported(tmp_path)
    assert exposures == Counter(expected_exp + late)
    assert outcomes == Counter(expected_out)
    assert_drained(r, keys.exposures_stream("checkout"), keys.outcomes_stream())


def test_rerun_with_a_different_batch_size_after_a_crash(r: redis.Redis, tmp_path: Path) -> None:
    """The pending batch is re-read whole, so changing --batch-size cannot split it."""
    expected = add_exposures(r, "checkout", range(40))
    with pytest.raises(Crash):
        export(r, out_dir=tmp_path, batch_size=25, hook=crash_at(Step.DIR_SYNCED, 1))
    export(r, out_dir=tmp_path, batch_size=3)
    assert exported(tmp_path)[0] == Counter(expected)


@pytest.mark.slow
def test_killed_process_keeps_the_lock_until_it_expires_then_rerun_recovers(
    r: redis.Redis, url: str, tmp_path: Path
) -> None:
    """A SIGKILL-like exit mid-batch blocks other exporters until the lock TTL, loses nothing."""
    expected = add_exposures(r, "checkout", range(20))
    script = textwrap.dedent(f"""
        import os, redis
        from abtest.export import Step, export
        def hook(step):
            if step is Step.RENAMED:
                os._exit(9)
        export(redis.Redis.from_url({url!r}), out_dir={str(tmp_path)!r}, batch_size=50,
               lock_ttl=3.0, hook=hook)
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert done.returncode == 9
    stream = keys.exposures_stream("checkout")
    assert r.xpending(stream, GROUP)["pending"] == 20  # read, written, never acknowledged
    assert r.pttl(keys.export_lock(stream)) > 0  # nobody released it
    blocked = export(r, out_dir=tmp_path)
    assert blocked.skipped == (stream,)
    assert list(tmp_path.glob("exposures/**/.*.tmp")) == []  # the kill came after the rename
    deadline = time.monotonic() + 10
    while r.exists(keys.export_lock(stream)) and time.monotonic() < deadline:
        time.sleep(0.05)
    export(r, out_dir=tmp_path)
    assert exported(tmp_path)[0] == Counter(expected)
    assert_drained(r, stream)


def test_a_stalled_exporter_that_lost_its_lock_cannot_acknowledge(
    r: redis.Redis, tmp_path: Path
) -> None:
    """An exporter paused past its lock TTL while another finished is fenced off, no duplicate."""
    expected = add_exposures(r, "checkout", range(10))
    stream = keys.exposures_stream("checkout")
    source = StreamSource(stream, Kind.EXPOSURES, "checkout")
    taken_over = []

    def stall(step: Step) -> None:
        if step is Step.WRITTEN and not taken_over:
            while r.exists(keys.export_lock(stream)):  # the pause outlives the 0.2 s lock
                time.sleep(0.02)
            taken_over.append(export_stream(r, source=source, out_dir=tmp_path))

    with pytest.raises(ExportLockLost):
        export_stream(r, source=source, out_dir=tmp_path, lock_ttl=0.2, hook=stall)
    assert taken_over[0].rows == 10
    assert exported(tmp_path)[0] == Counter(expected)
    assert_drained(r, stream)


@pytest.mark.slow
def test_concurrent_exports_while_traffic_flows_lose_and_duplicate_nothing(
    r: redis.Redis, tmp_path: Path
) -> None:
    """Four exporters looping in threads beside two writers: every row exported exactly once."""
    expected: list[tuple[Any, ...]] = []
    lock = threading.Lock()
    writing = threading.Event()
    writing.set()

    def writer(experiment: str) -> None:
        for start in range(0, 600, 50):
            rows = add_exposures(r, experiment, range(start, start + 50), step=60_000_000)
            with lock:
                expected.extend(rows)

    def exporter() -> None:
        client = redis.Redis(connection_pool=r.connection_pool)
        while writing.is_set():
            export(client, out_dir=tmp_path, batch_size=37)
        export(client, out_dir=tmp_path, batch_size=37)

    writers = [threading.Thread(target=writer, args=(e,)) for e in ("checkout", "search")]
    exporters = [threading.Thread(target=exporter) for _ in range(4)]
    for thread in writers + exporters:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    for thread in exporters:
        thread.join()
    export(r, out_dir=tmp_path)  # whatever a skipped stream left behind
    assert len(expected) == 1200
    assert exported(tmp_path)[0] == Counter(expected)
    assert_drained(r, keys.exposures_stream("checkout"), keys.exposures_stream("search"))


def test_malformed_entries_are_quarantined_not_lost_and_do_not_block(
    r: redis.Redis, tmp_path: Path
) -> None:
    """An entry that does not fit the schema goes verbatim to quarantine/; the rest exports."""
    good = add_outcomes(r, range(3))
    r.xadd(
        keys.outcomes_stream(),
        {"event_id": "bad", "unit_id": "u", "metric": "m", "value": "nan", "timestamp": "1"},
    )
    r.xadd(keys.outcomes_stream(), {"event_id": "worse"})
    result = export(r, out_dir=tmp_path)
    assert exported(tmp_path)[1] == Counter(good)
    quarantined = [
        line
        for path in tmp_path.glob("quarantine/**/*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(quarantined) == 2 and result.to_dict()["quarantined"] == 2
    assert '"event_id": "worse"' in quarantined[1] and "missing field" in quarantined[1]
    assert_drained(r, keys.outcomes_stream())


def test_an_entry_deleted_while_pending_is_skipped(r: redis.Redis, tmp_path: Path) -> None:
    """A pending entry that someone else deleted is acknowledged, not exported as empty."""
    expected = add_outcomes(r, range(4))
    with pytest.raises(Crash):
        export(r, out_dir=tmp_path, hook=crash_at(Step.READ))
    first_id = r.xrange(keys.outcomes_stream(), count=1)[0][0]
    r.xdel(keys.outcomes_stream(), first_id)
    export(r, out_dir=tmp_path)
    assert exported(tmp_path)[1] == Counter(expected[1:])
    assert r.xpending(keys.outcomes_stream(), GROUP)["pending"] == 0


def test_only_the_export_consumer_reads_the_group(r: redis.Redis, tmp_path: Path) -> None:
    """The group has one consumer, so a crashed run's pending batch is always found again."""
    add_outcomes(r, range(3))
    export(r, out_dir=tmp_path)
    consumers = r.xinfo_consumers(keys.outcomes_stream(), GROUP)
    assert [c["name"] for c in consumers] == [CONSUMER]


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_export_with_redis_url(
    r: redis.Redis, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``abtest export --out DIR --redis-url URL`` drains and prints a summary."""
    expected = add_exposures(r, "checkout", range(4))
    add_outcomes(r, range(2))
    assert main(["export", "--out", str(tmp_path / "out"), "--redis-url", url, "--json"]) == 0
    printed = capsys.readouterr().out
    assert '"exposures": 4' in printed and '"outcomes": 2' in printed
    assert exported(tmp_path / "out")[0] == Counter(expected)


def test_cli_export_with_data_dir_starts_the_embedded_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--data-dir`` starts the embedded redis-server on it, drains, and stops it."""
    data = tmp_path / "data"
    with EmbeddedRedis(data) as server:
        client = redis.Redis.from_url(server.url)
        expected = add_exposures(client, "checkout", range(6))
        client.close()
    assert main(["export", "--out", str(tmp_path / "out"), "--data-dir", str(data)]) == 0
    assert "exposures  6 rows" in capsys.readouterr().out
    assert exported(tmp_path / "out")[0] == Counter(expected)
    with EmbeddedRedis(data) as server:  # the drain was persisted (append-only file)
        client = redis.Redis.from_url(server.url)
        assert client.xlen(keys.exposures_stream("checkout")) == 0
        client.close()


def test_cli_export_uses_the_server_already_running_on_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While ``abtest serve`` owns the data dir, export drains through that running server."""
    data = tmp_path / "data"
    with EmbeddedRedis(data) as server:
        client = redis.Redis.from_url(server.url)
        expected = add_outcomes(client, range(5))
        assert main(["export", "--out", str(tmp_path / "out"), "--data-dir", str(data)]) == 0
        assert client.xlen(keys.outcomes_stream()) == 0
        client.close()
    assert exported(tmp_path / "out")[1] == Counter(expected)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export"], "--out"),
        (["export", "--out", "o", "--redis-url", "redis://x", "--data-dir", "d"], "not allowed"),
        (["export", "--out", "o", "--redis-url", "redis://x", "--batch-size", "0"], "batch-size"),
        (["export", "--out", "o", "--batch-size", "many"], "invalid int"),
        (["export", "--out", "o", "--redis-url", "redis://127.0.0.1:1/0"], "cannot reach Redis"),
    ],
)
def test_cli_export_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad arguments and an unreachable Redis give exit code 2 and one ``abtest: error`` line."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("abtest: error: ") and message in err and err.count("\n") == 1


def test_cli_export_refuses_a_file_as_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` naming an existing file is a usage error, before any Redis is touched."""
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["export", "--out", str(target), "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    assert "not a directory" in capsys.readouterr().err
