"""Benchmark: the analysis of 10M exposures and 3M outcomes from Parquet, four ways.

Generates the files at run time (nothing committed; ``--exposures N``, outcomes 0.3 N),
then runs each path in its own subprocess, timing it after imports (and after Spark's
start) and sampling the peak resident memory of the process and its children (Spark's
JVM included):

- ``abtest``: `analysis.analyze` on DuckDB, everything the analysis does: validation,
  crossovers, dedupe, CUPED covariates, event accounting, the daily series, statistics;
- ``query``: the ceiling, one hand-written DuckDB query computing the same per-variant n
  and sums (CUPED included) with none of the rest (`QUERY`);
- ``pandas``: a straightforward ``read_parquet`` + ``merge`` + ``groupby`` of the same
  files computing the same per-variant n and sums (no covariates, no daily series);
- ``spark``: `analysis.analyze` with ``engine="spark"``, Spark in local mode on every core
  (``pip install -e '.[bench,spark]'`` and Java 17+).

All must agree on n and the sums (1e-9); the script prints wall time, rows per second,
peak memory and the ratios.  Usage::

    python benchmarks/analysis.py [--exposures 10000000] [--paths abtest,query,pandas]
    python benchmarks/analysis.py --exposures 10000000 --paths abtest,spark
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# This file is named like the package it measures: drop its own folder from the path so
# that ``import analysis`` finds the package, not this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

METRICS = ("purchase:binomial", "revenue:sum")
EPOCH_US = 1_717_200_000 * 1_000_000  # 2024-06-01
DAY_US = 86_400 * 1_000_000


def generate(directory: Path, n_exposures: int, n_outcomes: int, seed: int = 7) -> None:
    """Write exposures/ and outcomes/ Parquet files in the ``abtest export`` schema."""
    rng = np.random.default_rng(seed)
    n_units = int(n_exposures * 0.6)
    # Every unit is exposed at least once, the rest are repeat exposures.
    unit = np.concatenate([np.arange(n_units), rng.integers(0, n_units, n_exposures - n_units)])
    variant_of_unit = rng.integers(0, 2, n_units)
    variant = variant_of_unit[unit]
    crossover = rng.random(n_exposures) < 0.002  # a few units also see the other arm
    variant = np.where(crossover, 1 - variant, variant)
    first_day = rng.integers(0, 14, n_units)
    ts = EPOCH_US + first_day[unit] * DAY_US + rng.integers(0, 3 * DAY_US, n_exposures)
    exposures = pa.table({
        "unit_id": pc.binary_join_element_wise("u", pa.array(unit).cast(pa.string()), ""),
        "experiment": pa.array(["ranker-v2"]).take(np.zeros(n_exposures, dtype=np.int64)),
        "variant": pa.array(["v1", "v2"]).take(variant),
        "timestamp": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "config_version": pa.array(np.full(n_exposures, 3, dtype=np.int64)),
    })  # fmt: skip
    out_unit = rng.integers(0, n_units, n_outcomes)
    lift = 1.0 + 0.05 * variant_of_unit[out_unit]
    metric = rng.choice(4, n_outcomes, p=[0.1, 0.1, 0.3, 0.5])
    value = np.where(metric == 1, rng.exponential(30.0 * lift), 1.0)
    out_ts = (
        EPOCH_US + first_day[out_unit] * DAY_US + rng.integers(-7 * DAY_US, 14 * DAY_US, n_outcomes)
    )
    event = np.arange(n_outcomes)
    event[rng.random(n_outcomes) < 0.01] = 0  # retried sends: duplicate event ids
    outcomes = pa.table({
        "event_id": pc.binary_join_element_wise("e", pa.array(event).cast(pa.string()), ""),
        "unit_id": pc.binary_join_element_wise("u", pa.array(out_unit).cast(pa.string()), ""),
        "metric": pa.array(["purchase", "revenue", "clicks", "searches"]).take(metric),
        "value": pa.array(value),
        "timestamp": pa.array(out_ts, type=pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    for name, table in (("exposures", exposures), ("outcomes", outcomes)):
        (directory / name).mkdir(parents=True)
        step = -(-table.num_rows // 4)
        for part in range(4):
            pq.write_table(
                table.slice(part * step, step), directory / name / f"part-{part}.parquet"
            )


def run_abtest(directory: Path, engine: str = "duckdb") -> dict[str, dict[str, list[float]]]:
    """The production path: `analysis.analyze` (the DuckDB SQL of `analysis.data.join`, or
    the same SQL on Spark), with CUPED covariates, the daily series and the statistics."""
    from analysis import analyze

    result = analyze(
        str(directory / "exposures"), str(directory / "outcomes"),
        metrics=list(METRICS), control="v1", engine=engine,
    )  # fmt: skip
    assert result.aggregates is not None
    return {
        name: {
            variant: [float(getattr(p, f)) for f in ("n", *SUMS)]
            for variant, p in sorted((m.covariate or {}).items())
        }
        for name, m in result.aggregates.metrics.items()
    }


SUMS = ("sum_y", "sum_yy", "sum_x", "sum_xx", "sum_xy")

# The ceiling: one DuckDB query a careful analyst would write for the same numbers (first
# exposure, crossovers out, events deduplicated by id, counted at or after exposure, the
# 14-day pre-exposure covariate of CUPED), with none of the analysis' validation, event
# accounting or daily series.
QUERY = """
WITH first AS (
    SELECT unit_id, arg_min(variant, timestamp) AS variant, min(timestamp) AS t0
    FROM read_parquet('{dir}/exposures/*.parquet') WHERE experiment = 'ranker-v2'
    GROUP BY unit_id HAVING min(variant) = max(variant)
), events AS (
    SELECT event_id, arg_min(unit_id, timestamp) AS unit_id, arg_min(metric, timestamp) AS metric,
           arg_min(value, timestamp) AS value, min(timestamp) AS ts
    FROM read_parquet('{dir}/outcomes/*.parquet') WHERE metric IN ('purchase', 'revenue')
    GROUP BY event_id
), per_unit AS (
    SELECT f.variant, e.metric,
           count(*) FILTER (WHERE e.ts >= f.t0) AS c,
           coalesce(sum(e.value) FILTER (WHERE e.ts >= f.t0), 0) AS s,
           count(*) FILTER (WHERE e.ts < f.t0 AND e.ts >= f.t0 - INTERVAL 14 DAY) AS pc,
           coalesce(sum(e.value) FILTER (WHERE e.ts < f.t0
                                         AND e.ts >= f.t0 - INTERVAL 14 DAY), 0) AS ps
    FROM events AS e JOIN first AS f ON e.unit_id = f.unit_id
    GROUP BY f.unit_id, f.variant, e.metric
), valued AS (
    SELECT variant, metric,
           CASE WHEN metric = 'purchase' THEN CAST(c > 0 AS DOUBLE) ELSE s END AS y,
           CASE WHEN metric = 'purchase' THEN CAST(pc > 0 AS DOUBLE) ELSE ps END AS x
    FROM per_unit
)
SELECT v.metric, v.variant, n.n, sum(y), sum(y * y), sum(x), sum(x * x), sum(x * y)
FROM valued AS v JOIN (SELECT variant, count(*) AS n FROM first GROUP BY variant) AS n
  ON v.variant = n.variant
GROUP BY v.metric, v.variant, n.n
"""


def run_query(directory: Path) -> dict[str, dict[str, list[float]]]:
    """The ceiling: `QUERY` on a fresh DuckDB connection."""
    import duckdb

    con = duckdb.connect()
    result: dict[str, dict[str, list[float]]] = {}
    for metric, variant, *numbers in con.execute(QUERY.format(dir=directory)).fetchall():
        result.setdefault(metric, {})[variant] = [float(v) for v in numbers]
    return {m: dict(sorted(v.items())) for m, v in sorted(result.items())}


def run_pandas(directory: Path) -> dict[str, dict[str, float]]:
    """The baseline: pandas read + sort + merge + groupby of the same rules."""
    import pandas as pd

    exposures = pd.read_parquet(directory / "exposures")
    outcomes = pd.read_parquet(directory / "outcomes")
    arms = exposures.groupby("unit_id")["variant"].nunique()
    first = exposures.sort_values("timestamp").drop_duplicates("unit_id")
    first = first[first["unit_id"].map(arms) == 1][["unit_id", "variant", "timestamp"]]
    events = outcomes.sort_values("timestamp").drop_duplicates("event_id")
    joined = events.merge(first, on="unit_id", suffixes=("", "_first"))
    joined = joined[joined["timestamp"] >= joined["timestamp_first"]]
    units = first.groupby("variant").size()
    result: dict[str, dict[str, list[float]]] = {}
    for spec in METRICS:
        name, _, kind = spec.partition(":")
        rows = joined[joined["metric"] == name]
        per_unit = rows.groupby(["unit_id", "variant"])["value"]
        y = (per_unit.size() > 0).astype(float) if kind == "binomial" else per_unit.sum()
        frame = y.rename("y").reset_index()
        frame["yy"] = frame["y"] ** 2
        sums = frame.groupby("variant")[["y", "yy"]].sum()
        result[name] = {
            str(v): [int(units[v]), float(sums.loc[v, "y"]), float(sums.loc[v, "yy"])]
            for v in sorted(units.index)
        }
    return result  # type: ignore[return-value]


PATHS = ("abtest", "query", "pandas", "spark")


class PeakMemory:
    """Peak resident memory of this process and its children (Spark's JVM), sampled."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self.peak = 0
        self._stop = threading.Event()
        self._me = psutil.Process()
        self._interval = interval
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self._me, *self._me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def stop(self) -> float:
        """The peak in MB."""
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def _child(path: str, directory: Path, driver_memory: str, master: str) -> None:
    # Imports and Spark's start are not data processing: before the clock starts.
    import pandas  # noqa: F401

    import analysis  # noqa: F401

    if path == "spark":
        from pyspark.sql import SparkSession

        begin = time.perf_counter()
        session = (
            SparkSession.builder.master(master)
            .config("spark.driver.memory", driver_memory)
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        print(f"spark session started in {time.perf_counter() - begin:.1f} s", file=sys.stderr)
    memory = PeakMemory()
    start = time.perf_counter()
    if path == "abtest":
        result = run_abtest(directory)
    elif path == "spark":
        result = run_abtest(directory, engine="spark")
    elif path == "query":
        result = run_query(directory)
    else:
        result = run_pandas(directory)  # type: ignore[assignment]
    wall = time.perf_counter() - start
    # Sampled only: a child's own ru_maxrss starts at its parent's resident size at the fork
    # on Linux (kept across exec), and the parent holds the generated data.
    peak_mb = memory.stop()
    print(json.dumps({"wall": wall, "peak_mb": peak_mb, "result": result}))


def _measure(path: str, directory: Path, driver_memory: str, master: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", path, "--dir", str(directory),
         "--spark-driver-memory", driver_memory, "--spark-master", master],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode:
        sys.exit(f"{path} run failed:\n{out.stderr}")
    measured: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return measured


def _agree(a: dict[str, object], b: dict[str, object]) -> bool:
    """The same n and sums (to 1e-9) wherever both paths compute them."""
    left, right = a["result"], b["result"]
    assert isinstance(left, dict) and isinstance(right, dict)
    return all(
        np.allclose(left[m][v][:k], right[m][v][:k], rtol=1e-9)
        for m in left for v in left[m]
        for k in [min(len(left[m][v]), len(right[m][v]))]
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=10_000_000)
    parser.add_argument("--outcomes", type=int, help="default 0.3 x exposures")
    parser.add_argument("--paths", default="abtest,query,pandas",
                        help=f"comma-separated, of {', '.join(PATHS)}")  # fmt: skip
    parser.add_argument("--spark-driver-memory", default="8g")
    parser.add_argument("--spark-master", default="local[*]", help="e.g. spark://host:7077, yarn")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.dir, args.spark_driver_memory, args.spark_master)
        return
    paths = [p for p in args.paths.split(",") if p]
    if unknown := set(paths) - set(PATHS):
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")
    n_outcomes = args.outcomes if args.outcomes is not None else int(args.exposures * 0.3)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        generate(directory, args.exposures, n_outcomes)
        print(f"generated {args.exposures:,} exposures + {n_outcomes:,} outcomes "
              f"in {time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
        rows = args.exposures + n_outcomes
        runs = {}
        for path in paths:
            runs[path] = run = _measure(
                path, directory, args.spark_driver_memory, args.spark_master
            )
            wall, peak = float(run["wall"]), float(run["peak_mb"])  # type: ignore[arg-type]
            print(f"{path:7s} wall {wall:8.2f} s   {rows / wall / 1e6:6.2f} M rows/s   "
                  f"peak RSS {peak:7.0f} MB", flush=True)  # fmt: skip
    wall = {p: float(r["wall"]) for p, r in runs.items()}  # type: ignore[arg-type]
    peak = {p: float(r["peak_mb"]) for p, r in runs.items()}  # type: ignore[arg-type]
    if {"abtest", "query"} <= runs.keys():
        print(f"analyze() on DuckDB takes {wall['abtest'] / wall['query']:.2f}x the time of "
              f"the hand-written query (goal <= 1.2x); "
              f"agree: {_agree(runs['abtest'], runs['query'])}")  # fmt: skip
    if {"abtest", "pandas"} <= runs.keys():
        print(f"speed-up over pandas {wall['pandas'] / wall['abtest']:.1f}x; peak memory "
              f"{peak['abtest'] / peak['pandas']:.2f}x of pandas; "
              f"agree: {_agree(runs['abtest'], runs['pandas'])}")  # fmt: skip
    if {"abtest", "spark"} <= runs.keys():
        print(f"Spark local mode takes {wall['spark'] / wall['abtest']:.2f}x DuckDB's time and "
              f"{peak['spark'] / peak['abtest']:.2f}x its peak memory; "
              f"agree: {_agree(runs['abtest'], runs['spark'])}")  # fmt: skip


if __name__ == "__main__":
    main()
