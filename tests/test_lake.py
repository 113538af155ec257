"""``abtest export --out URL``: the lake layout at any fsspec location, read back by the
analysis, DuckDB, pyarrow and (tests/test_spark.py) Spark.

Object stores are real: fsspec's ``memory://`` filesystem, and an S3-compatible HTTP
server (moto's, started here on a free port) reached through s3fs like any S3 bucket.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pandas as pd
import pyarrow.dataset as ds
import pytest
import redis

from abtest.cli import main
from abtest.export import Step, export
from abtest.export import read_exposures as exported_exposures
from analysis.analyzer import analyze
from analysis.data.load import read_exposures, read_outcomes
from tests.test_export import DAY1, Crash, add_exposures, add_outcomes, crash_at

METRICS = ["clicks:sum"]


@pytest.fixture
def r(redis_client: redis.Redis) -> redis.Redis:
    """The flushed database (decoded replies)."""
    return redis_client


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh folder on fsspec's in-memory filesystem."""
    fs = fsspec.filesystem("memory")
    root = f"memory://lake-{id(fs)}"
    yield root
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 bucket on a local S3-compatible server, as ``s3://`` with the usual AWS settings."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1"),
                        ("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")):  # fmt: skip
        monkeypatch.setenv(name, value)
    S3FileSystem.clear_instance_cache()
    S3FileSystem().mkdir("lake")
    try:
        yield "s3://lake/export"
    finally:
        S3FileSystem.clear_instance_cache()
        server.stop()


def traffic(r: redis.Redis) -> None:
    """Two experiments' exposures over two UTC days and outcome events of their units."""
    add_exposures(r, "checkout", range(30))
    add_exposures(r, "search", range(100, 110))
    add_outcomes(r, range(40))


def names(fs: Any, root: str) -> set[str]:
    """Every file below ``root``, relative to it."""
    base = fs._strip_protocol(root).rstrip("/")
    return {p[len(base) + 1 :] for p in fs.find(root)}


def test_export_to_an_object_store_writes_the_lake_layout_and_reads_back(r, memory_root, tmp_path):
    """memory:// gets the same files as a local folder; the analysis, DuckDB's
    hive_partitioning and a pyarrow dataset all read them from the URL."""
    traffic(r)
    export(r, out_dir=memory_root)
    fs = fsspec.filesystem("memory")
    written = names(fs, memory_root)
    folders = {n.rpartition("/")[0] for n in written if n.endswith(".parquet")}
    assert "exposures/experiment=checkout/date=2024-06-02" in folders
    assert "catalogue.json" in written  # a full export's catalogue, beside the folders
    traffic(r)
    export(r, out_dir=tmp_path)
    local = {p.relative_to(tmp_path).parent.as_posix() for p in tmp_path.rglob("*.parquet")}
    assert folders == local  # one layout, whatever the target
    on_memory = analyze(f"{memory_root}/exposures", f"{memory_root}/outcomes",
                        metrics=METRICS, experiment="checkout")  # fmt: skip
    on_disk = analyze(tmp_path / "exposures", tmp_path / "outcomes", metrics=METRICS,
                      experiment="checkout")  # fmt: skip
    assert on_memory.to_dict()["metrics"] == on_disk.to_dict()["metrics"]
    assert sum(on_memory.units.values()) == 30
    con = duckdb.connect()
    con.register_filesystem(fs)
    counts = con.execute(
        f"SELECT experiment, count(*) FROM read_parquet('{memory_root}/exposures/**/*.parquet', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert counts == [("checkout", 30), ("search", 10)]
    dataset = ds.dataset(fs._strip_protocol(f"{memory_root}/exposures"), filesystem=fs,
                         format="parquet", partitioning="hive")  # fmt: skip
    table = dataset.to_table(filter=ds.field("date") == "2024-06-02")
    assert Counter(table.column("experiment").to_pylist()) == {"checkout": 6}


def test_a_crash_before_the_ack_rewrites_the_same_objects(r, memory_root):
    """On an object store there is no rename: the file is put whole under a deterministic
    name, so the re-run after a crash replaces it and no row is exported twice."""
    add_outcomes(r, range(25))
    with pytest.raises(Crash):
        export(r, out_dir=memory_root, batch_size=10, hook=crash_at(Step.WRITTEN, 2))
    fs = fsspec.filesystem("memory")
    before = names(fs, memory_root)
    export(r, out_dir=memory_root, batch_size=10)
    after = names(fs, memory_root)
    assert before <= after  # the crashed batch's objects were put again, not beside
    rows = read_outcomes(f"{memory_root}/outcomes")
    assert sorted(rows["event_id"]) == sorted(f"e{i}" for i in range(25))  # each exactly once


def test_export_and_analysis_through_s3(r, s3_bucket, tmp_path):
    """``abtest export --out s3://...`` through s3fs to a real S3 HTTP endpoint; the
    analysis reads the bucket and gets what it gets from a local export of the same data."""
    traffic(r)
    export(r, out_dir=s3_bucket)
    traffic(r)
    export(r, out_dir=tmp_path)
    remote = analyze(f"{s3_bucket}/exposures", f"{s3_bucket}/outcomes", metrics=METRICS,
                     experiment="checkout")  # fmt: skip
    local = analyze(tmp_path / "exposures", tmp_path / "outcomes", metrics=METRICS,
                    experiment="checkout")  # fmt: skip
    assert remote.to_dict()["metrics"] == local.to_dict()["metrics"]
    assert len(read_exposures(f"{s3_bucket}/exposures")) == 40


def test_the_cli_refuses_an_unusable_destination(tmp_path, capsys):
    """A file as --out, or a scheme no installed filesystem serves: exit 2, one line."""
    (tmp_path / "f").write_text("x")
    for out in (str(tmp_path / "f"), "nosuchscheme://bucket/x"):
        assert main(["export", "--out", out, "--data-dir", str(tmp_path / "d")]) == 2
        assert "--out" in capsys.readouterr().err


def write_mixed_layout(root: Path) -> pd.DataFrame:
    """exposures/<key>/<day>/ files of earlier versions (with an ``experiment`` column) beside
    experiment=<key>/date=<day>/ files (the key in the folder only): 8 units; and one outcome."""
    rows = {
        "exposures/checkout/2024-05-31/1-0_5-0.parquet": ("old", 0),
        "exposures/experiment=checkout/date=2024-06-01/6-0_9-0.parquet": ("new", 1),
    }
    for relative, (prefix, day) in rows.items():
        path = root / relative
        path.parent.mkdir(parents=True)
        frame = pd.DataFrame({
            "unit_id": [f"{prefix}-{i}" for i in range(4)], "experiment": "checkout",
            "variant": ["control", "treatment"] * 2,
            "timestamp": pd.Timestamp(DAY1 // 1000, unit="ms", tz="UTC") + pd.Timedelta(days=day),
            "config_version": 3,
        })  # fmt: skip
        (frame if prefix == "old" else frame.drop(columns="experiment")).to_parquet(path)
    return pd.DataFrame({"event_id": ["e1"], "unit_id": ["old-0"], "metric": ["clicks"],
                         "value": [2.0], "timestamp": [pd.Timestamp("2024-06-02")]})  # fmt: skip


def test_files_of_the_old_layout_still_read_with_the_new(tmp_path):
    """Both layouts in one folder read as one, for the analysis and for
    `abtest.export.read_exposures` too (tests/test_spark.py: on Spark)."""
    outcomes = write_mixed_layout(tmp_path)
    assert len(read_exposures(tmp_path / "exposures")) == 8
    core = exported_exposures(tmp_path).to_pandas()
    assert len(core) == 8 and set(core["experiment"]) == {"checkout"}
    result = analyze(tmp_path / "exposures", outcomes, metrics=METRICS, experiment="checkout")
    assert sum(result.units.values()) == 8
