"""The Spark engine: the same join, the same aggregates and the same result as DuckDB.

Spark runs in local mode (one session for the suite, `tests/conftest.py`), on Parquet files
in the export's lake layout holding every trap of the join: repeated exposures, crossovers
(into a third arm), duplicated event ids (also at the same time with other contents),
events before exposure, inside and outside the CUPED pre-period and the attribution
window, units never exposed, event names no metric reads, exposures carrying an
``attributes`` map (as exports write them), and catalogue metrics: one whose per-unit
value (and CUPED covariate) is capped, one with its own attribution window.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from abtest.experiment import Metric, MetricType
from analysis.analyzer import analyze
from analysis.data.engines.spark import to_spark
from tests.test_join import random_join_data

SPEND_CAP = 8.0
VISIT_WINDOW_HOURS = 12.0
METRICS: list[Any] = [
    "buy:binomial", "rev:sum", "rev/buy:ratio", "rev:p90:quantile",
    # As the catalogue resolves them: a cap, and a window of its own (the run's is 60 h).
    Metric("spend", MetricType.SUM, cap=SPEND_CAP),
    Metric("visit", MetricType.COUNT, attribution_window_hours=VISIT_WINDOW_HOURS),
]  # fmt: skip
# One xdist worker runs every Spark test: one JVM for the suite, not one per worker.
pytestmark = pytest.mark.xdist_group("spark")


def write_lake(root: Path, exposures: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    """The frames as Parquet in the export's layout: experiment=/date= folders, UTC times
    (an ``attributes`` column of (key, value) lists is written as the export's map)."""
    for kind, rows, keys in (("exposures", exposures, ["experiment"]), ("outcomes", outcomes, [])):
        dated = rows.assign(date=rows["timestamp"].dt.strftime("%Y-%m-%d"))
        for values, part in dated.groupby([*keys, "date"]):
            folder = root / kind
            for key, value in zip([*keys, "date"], values, strict=True):
                folder /= f"{key}={value}"
            folder.mkdir(parents=True)
            frame = part.drop(columns=["date", "attributes"], errors="ignore")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if "attributes" in part:
                as_map = pa.array(part["attributes"], type=pa.map_(pa.string(), pa.string()))
                table = table.append_column("attributes", as_map)
            at = table.schema.get_field_index("timestamp")
            utc = table.column(at).cast(pa.timestamp("us", tz="UTC"))
            table = table.set_column(at, "timestamp", utc)
            pq.write_table(table, folder / "1-0_9-0.parquet")


def trap_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """`random_join_data` plus a name no metric reads, events before the pre-period, event
    ids reused at the same time with other contents, attributes on most exposures, and
    copies of the ``rev`` and ``buy`` events as ``spend`` (capped) and ``visit`` (its own
    window)."""
    exposures, outcomes = random_join_data(4)
    exposures["config_version"] = np.where(np.arange(len(exposures)) % 3, 2, 3)
    exposures["attributes"] = [
        None if i % 5 == 0 else [("country", "FR" if i % 2 else "DE"), ("app", str(i % 3))]
        for i in range(len(exposures))
    ]
    copies = [
        outcomes[outcomes["metric"] == name].assign(
            metric=copy, event_id=lambda f, c=copy: c + f["event_id"]
        )
        for name, copy in (("rev", "spend"), ("buy", "visit"))
    ]
    outcomes = pd.concat([outcomes, *copies], ignore_index=True)
    early = outcomes.head(40).assign(
        event_id=[f"x{i}" for i in range(40)],
        timestamp=outcomes["timestamp"].head(40) - pd.Timedelta(days=20),
    )
    other = outcomes.head(40).assign(event_id=[f"y{i}" for i in range(40)], metric="scroll")
    # One id, one time, two contents: the kept row must not depend on the engine's order.
    reused = outcomes.tail(30).assign(event_id=[f"z{i}" for i in range(30)])
    clash = reused.assign(value=reused["value"] + 1.5, unit_id=reused["unit_id"].iloc[::-1].values)
    return exposures, pd.concat([outcomes, early, other, clash, reused], ignore_index=True)


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal structures, floats equal to 1e-9 (relative) or 1e-12 (absolute)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not (isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_spark_gives_duckdbs_aggregates_and_result(tmp_path, spark):
    """Same files, every trap: the same aggregates (1e-9) and the same AnalysisResult,
    segments included."""
    exposures, outcomes = trap_data()
    write_lake(tmp_path, exposures, outcomes)
    settings: dict[str, Any] = {
        "metrics": METRICS, "control": "c", "experiment": "exp",
        "attribution_window": timedelta(hours=60), "planned_units_per_variant": 200,
        # Each segment's join runs on the engine of the whole analysis.
        "segment": "country", "min_segment_units": 20,
    }  # fmt: skip
    duck = analyze(tmp_path / "exposures", tmp_path / "outcomes", **settings)
    on_spark = analyze(str(tmp_path / "exposures"), f"file://{tmp_path}/outcomes",
                       engine="spark", **settings)  # fmt: skip
    a, b = duck.aggregates, on_spark.aggregates
    assert a is not None and b is not None
    assert (a.units, a.excluded_units, a.events, a.metric_events, a.undefined_metrics) == (
        b.units, b.excluded_units, b.events, b.metric_events, b.undefined_metrics)  # fmt: skip
    assert a.excluded_units > 0 and set(a.undefined_metrics) == {"scroll"}
    assert min(a.events.to_dict()["dropped"].values()) > 0  # every trap is in the data
    assert min(a.events.duplicates, a.events.covariate, a.events.counted) > 0
    assert (a.start, a.end, a.config_versions) == (b.start, b.end, b.config_versions)
    # The catalogue's cap and own window act in the data compared (on both engines).
    for variant, stats in a.metrics["spend"].stats.items():
        assert stats.sum < a.metrics["rev"].stats[variant].sum  # type: ignore[union-attr]
    assert 0 < a.metric_events["visit"] < a.metric_events["buy"]
    for name, metric in a.metrics.items():
        for variant, stats in metric.stats.items():
            assert_same(vars(stats), vars(b.metrics[name].stats[variant]), name)
        for variant, sample in (metric.samples or {}).items():
            other = b.metrics[name].samples[variant]  # type: ignore[index]
            assert np.array_equal(sample.values, other.values)
            assert np.array_equal(sample.units, other.units)
    assert duck.segments is not None and set(duck.segments.segments) == {"FR", "DE", None}
    shown = [r for c in duck.segments.comparisons for r in c.rows if not r.below_minimum]
    assert {r.segment for r in shown} == {"FR", "DE", None}
    pd.testing.assert_frame_equal(a.daily, b.daily, rtol=1e-9)
    pd.testing.assert_frame_equal(a.exposures_per_day, b.exposures_per_day)
    assert len(a.daily) > 0
    assert_same(duck.to_dict(), on_spark.to_dict())


def test_the_transpiled_join_names_sparks_functions():
    """DuckDB's epoch_us, arg_min, struct literals and // become Spark's own."""
    sql = to_spark(
        "SELECT arg_min({'u': unit_id}, ts_us) AS r, min({'t': ts_us, 'u': unit_id}) AS f, "
        "epoch_us(ts) // 256 AS d FROM t GROUP BY event_id"
    )
    assert "UNIX_MICROS(ts)" in sql and "MIN_BY(STRUCT(unit_id AS u), ts_us)" in sql
    assert "MIN(STRUCT(ts_us AS t, unit_id AS u))" in sql and " DIV 256" in sql


def test_the_default_engine_loads_neither_spark_nor_sqlglot():
    """analyze() on DuckDB never imports pyspark or SQLGlot."""
    code = (
        "import pandas as pd, sys; from analysis import analyze; "
        "t = pd.Timestamp('2024-01-01'); "
        "e = pd.DataFrame({'unit_id': ['a', 'b'], 'experiment': 'x', 'variant': ['c', 't'], "
        "'timestamp': [t, t]}); "
        "o = pd.DataFrame({'event_id': ['1'], 'unit_id': ['a'], 'metric': ['m'], 'value': [1.0], "
        "'timestamp': [t]}); "
        "analyze(e, o, metrics=['m:sum'], control='c'); "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())  # fmt: skip
    assert "duckdb" in loaded
    assert not {"pyspark", "sqlglot", "py4j"} & loaded


@pytest.mark.slow
def test_one_experiment_end_to_end_on_redis_with_duckdb_and_on_a_cluster_with_spark(
    request: pytest.FixtureRequest, tmp_path: Path, spark: Any
) -> None:
    """Assign, events, export (lake layout) and analysis: on a single Redis with DuckDB, and
    on a partitioned Redis Cluster with Spark; the same traffic gives the same numbers."""
    from abtest.export import export
    from abtest.redis_client import connect
    from service import create_app
    from tests.conftest import CLUSTER_PARTITIONS, Api, simple_config
    from tests.test_results_endpoint import METRICS as CONFIG_METRICS
    from tests.test_results_endpoint import _traffic

    results = []
    for name, partitions, engine in (("redis_server", 1, "duckdb"),
                                     ("redis_cluster", CLUSTER_PARTITIONS, "spark")):  # fmt: skip
        url = request.getfixturevalue(name).url
        client = connect(url, decode_responses=True)
        client.flushall()
        try:
            app = create_app({"TESTING": True, "REDIS_URL": url,
                              "EXPORT_DIR": str(tmp_path / "x"), "UNIT_PARTITIONS": partitions,
                              "EVENT_PARTITIONS": partitions})  # fmt: skip
            api = Api(app.test_client(), app.extensions["abtest"].store)
            api.create_experiment(simple_config(**CONFIG_METRICS))
            _traffic(api, range(200))
            lake = tmp_path / name
            export(client, out_dir=lake)
            results.append(analyze(lake / "exposures", lake / "outcomes", experiment="exp",
                                   metrics=["purchase:binomial", "revenue:sum"],
                                   control="control", engine=engine))  # fmt: skip
        finally:
            client.flushall()
            client.close()
    assert list((tmp_path / "redis_cluster" / "exposures" / "experiment=exp").rglob("*.p3.parquet"))
    single, cluster = (r.to_dict() for r in results)
    assert sum(results[0].units.values()) == 200
    for body in (single, cluster):  # when the traffic ran: the one thing that differs
        body["settings"].pop("as_of", None)
    assert_same(single, cluster)
    lake = spark.read.parquet(str(tmp_path / "redis_cluster" / "exposures"))  # discovery
    assert {"experiment", "date"} <= set(lake.columns) and lake.count() == 200


def test_spark_reads_the_old_layout_beside_the_new(tmp_path: Path, spark: Any) -> None:
    """Files of an earlier export (``experiment`` a column) and of this one (the key in the
    ``experiment=<key>`` folder only) in one folder: the same units as on DuckDB."""
    from tests.test_lake import METRICS as LAKE_METRICS
    from tests.test_lake import write_mixed_layout

    outcomes = write_mixed_layout(tmp_path)
    on_spark = analyze(tmp_path / "exposures", outcomes, metrics=LAKE_METRICS,
                       experiment="checkout", engine="spark")  # fmt: skip
    duck = analyze(tmp_path / "exposures", outcomes, metrics=LAKE_METRICS, experiment="checkout")
    assert sum(on_spark.units.values()) == 8
    assert_same(duck.to_dict(), on_spark.to_dict())
