"""Benchmark: join + per-variant aggregation of 10M exposures and 3M outcomes from Parquet.

Generates the files at run time (nothing committed), then runs, each in its own
subprocess so that peak resident memory is measured fairly (``ru_maxrss``):

- ``abtest``: `analysis.join.join_and_aggregate` (DuckDB SQL), with everything the
  analysis needs: crossovers, dedupe, CUPED covariates and the daily cumulative series;
- ``pandas``: a straightforward ``read_parquet`` + ``merge`` + ``groupby`` of the same
  files computing the same per-variant sums (no covariates, no daily series).

Both must agree on n and the sums; the script prints wall time (after imports), rows per
second, peak memory and the ratios.  Usage::

    python benchmarks/analysis.py [--exposures 10000000] [--outcomes 3000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
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


def run_abtest(directory: Path) -> dict[str, dict[str, float]]:
    """The production path: DuckDB SQL inside `analysis.data.join`."""
    from analysis.data.join import join_and_aggregate, parse_metric

    agg = join_and_aggregate(
        directory / "exposures",
        directory / "outcomes",
        metrics=[parse_metric(m) for m in METRICS],
    )
    return {
        name: {
            variant: [s.n, s.sum, s.sum_sq]  # type: ignore[union-attr]
            for variant, s in sorted(m.stats.items())
        }
        for name, m in agg.metrics.items()
    }  # type: ignore[return-value]


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


def _child(path: str, directory: Path) -> None:
    # Imports are not data processing: load them before the clock starts, for both paths.
    import pandas  # noqa: F401

    import analysis.data.join  # noqa: F401

    start = time.perf_counter()
    result = run_abtest(directory) if path == "abtest" else run_pandas(directory)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "peak_mb": peak_mb, "result": result}))


def _measure(path: str, directory: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", path, "--dir", str(directory)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode:
        sys.exit(f"{path} run failed:\n{out.stderr}")
    measured: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return measured


def _agree(a: dict[str, object], b: dict[str, object]) -> bool:
    left, right = a["result"], b["result"]
    assert isinstance(left, dict) and isinstance(right, dict)
    return all(np.allclose(left[m][v], right[m][v], rtol=1e-9) for m in left for v in left[m])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=10_000_000)
    parser.add_argument("--outcomes", type=int, default=3_000_000)
    parser.add_argument("--child", choices=("abtest", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.dir)
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        generate(directory, args.exposures, args.outcomes)
        print(f"generated {args.exposures:,} exposures + {args.outcomes:,} outcomes "
              f"in {time.perf_counter() - start:.1f} s")  # fmt: skip
        rows = args.exposures + args.outcomes
        runs = {path: _measure(path, directory) for path in ("abtest", "pandas")}
    for path, run in runs.items():
        wall, peak = float(run["wall"]), float(run["peak_mb"])  # type: ignore[arg-type]
        print(f"{path:7s} wall {wall:7.2f} s   {rows / wall / 1e6:6.2f} M rows/s   "
              f"peak RSS {peak:7.0f} MB")  # fmt: skip
    a, p = runs["abtest"], runs["pandas"]
    speedup = float(p["wall"]) / float(a["wall"])  # type: ignore[arg-type]
    memory = float(a["peak_mb"]) / float(p["peak_mb"])  # type: ignore[arg-type]
    print(f"speed-up {speedup:.1f}x (goal >= 10x); peak memory {memory:.2f}x of pandas "
          f"(goal < 1); results agree: {_agree(a, p)}")  # fmt: skip


if __name__ == "__main__":
    main()
