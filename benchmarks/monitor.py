"""Benchmark: one monitor check over many running experiments, beside ``abtest export`` of
the same data, in the same run.

Starts the real embedded redis-server, creates the experiments through the store (each a
running guarded rollout with two guardrails), then writes the data the way the store does,
pipelined: first exposures into each experiment's stream (with the exact counters) and
outcome events into the outcome stream, spread over the three days before now.  Measured,
each with the wall time and the redis-server's CPU time (``INFO cpu``: ``used_cpu_sys`` +
``used_cpu_user`` deltas):

1. a *cold* check: a new monitor (as ``abtest monitor --once`` from cron) reads every
   stream with XRANGE, joins per unit and decides every rollout;
2. a *warm* check an hour later: the same long-running monitor asks Redis only for the
   entries after the last one it read;
3. the baseline: ``abtest export`` of the same streams into Parquet (XREADGROUP, files,
   XACK + XDEL);
4. a cold check after the export, reading the Parquet files instead of the streams.

Usage::

    python benchmarks/monitor.py [--experiments 100] [--exposures 1000000] [--events 3000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# This folder holds a script named service.py: take it off the path so that ``import
# service`` finds the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import numpy as np  # noqa: E402 - after the path fix above
import redis  # noqa: E402

from abtest import keys  # noqa: E402
from abtest.embedded import EmbeddedRedis  # noqa: E402
from abtest.export import export  # noqa: E402
from abtest.store import Store  # noqa: E402
from analysis.data.daily import DAY_US  # noqa: E402
from service.monitor.clock import SettableClock  # noqa: E402
from service.monitor.runner import Monitor, MonitorSettings  # noqa: E402

CHUNK = 10_000


def config(key: str) -> dict[str, Any]:
    """A running guarded rollout at its first step with latency and error guardrails."""
    return {
        "key": key, "control": "v1", "variants": [{"key": "v1"}, {"key": "v2"}],
        "primary_metric": {"name": "purchase", "type": "binomial"},
        "guardrail_metrics": [
            {"name": "latency_ms", "type": "sum", "higher_is_better": False, "margin": 0.05},
            {"name": "error", "type": "binomial", "higher_is_better": False, "margin": 0.2},
        ],
        "rollout": {"steps": [0.5, 1], "observation_hours": 1},
    }  # fmt: skip


def redis_cpu(client: redis.Redis[Any]) -> float:
    """Seconds of CPU the redis-server process used so far."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def fill(client: redis.Redis[Any], store: Store, *, experiments: int, exposures: int,
         events: int, now_us: int) -> None:  # fmt: skip
    """The experiments and their data (module docstring)."""
    rng = np.random.default_rng(1)
    names = [f"model-{i:03d}" for i in range(experiments)]
    for name in names:
        store.create_experiment(config(name), key_id="bench")
        store.start_experiment(name, key_id="bench")
        store.assign(name, "warm-up")  # stores the variant codes as the service would
    per = exposures // experiments
    units: list[tuple[str, str, int, int]] = []  # unit, variant, exposure time
    for name in names:
        codes = client.hgetall(keys.variant_codes(name))
        version = int(client.hget(keys.experiment_meta(name), "version") or 0)
        starts = now_us - 3 * DAY_US + rng.integers(0, 3 * DAY_US - 3_600_000_000, per)
        starts.sort()
        arms = rng.integers(0, 2, per)
        pipe = client.pipeline(transaction=False)
        for i in range(per):
            variant = ("v1", "v2")[arms[i]]
            unit = f"{name}-u{i}"
            t = int(starts[i])
            pipe.xadd(keys.exposures_stream(name),
                      {"u": unit, "v": codes[variant], "t": t, "c": version})  # fmt: skip
            pipe.hincrby(keys.exposure_counts(name), f"v:{variant}", 1)
            units.append((unit, variant, t))
            if len(pipe) >= CHUNK:
                pipe.execute()
        pipe.execute()
    picks = rng.integers(0, len(units), events)
    kinds = rng.choice(["latency_ms", "purchase", "error"], events, p=[0.8, 0.15, 0.05])
    values = rng.gamma(4.0, 50.0, events)
    delays = rng.integers(0, 1_800_000_000, events)
    pipe = client.pipeline(transaction=False)
    for i in range(events):
        unit, _, t = units[picks[i]]
        kind = str(kinds[i])
        value = f"{values[i]:.1f}" if kind == "latency_ms" else "1"
        pipe.xadd(
            keys.outcomes_stream(),
            {
                "event_id": f"e{i}",
                "unit_id": unit,
                "metric": kind,
                "value": value,
                "timestamp": t + int(delays[i]),
            },
        )
        if len(pipe) >= CHUNK:
            pipe.execute()
    pipe.execute()


def measure(client: redis.Redis[Any], action: Any) -> tuple[float, float, Any]:
    """Wall seconds, redis-server CPU seconds and the result of ``action()``."""
    cpu, start = redis_cpu(client), time.perf_counter()
    result = action()
    return time.perf_counter() - start, redis_cpu(client) - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--exposures", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=3_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        now = datetime.now(UTC)
        now_us = int(now.timestamp() * 1_000_000)
        store = Store(client)
        started = time.perf_counter()
        fill(
            client,
            store,
            experiments=args.experiments,
            exposures=args.exposures,
            events=args.events,
            now_us=now_us,
        )
        print(
            f"data: {args.experiments} running rollouts, {args.exposures:,} exposures, "
            f"{args.events:,} events (written in {time.perf_counter() - started:.0f} s; "
            f"redis used_memory {int(client.info('memory')['used_memory']) / 2**20:,.0f} MiB)"
        )
        export_dir = Path(tmp) / "export"
        clock = SettableClock(now)
        settings = MonitorSettings(export_dir=export_dir, instance="bench")
        monitor = Monitor(client, clock, settings)
        cold, cold_cpu, report = measure(client, monitor.run_once)
        assert len(report.checked) == args.experiments and not report.errors, report
        clock.advance(timedelta(hours=1, minutes=1))
        warm, warm_cpu, report = measure(client, monitor.run_once)
        assert len(report.checked) == args.experiments and not report.errors, report
        monitor.close()
        exported, export_cpu, result = measure(client, lambda: export(client, out_dir=export_dir))
        rows = result.rows
        assert rows["exposures"] == args.exposures + args.experiments, rows
        clock.advance(timedelta(hours=1, minutes=1))
        after = Monitor(client, clock, MonitorSettings(export_dir=export_dir, instance="after"))
        files, files_cpu, report = measure(client, after.run_once)
        assert len(report.checked) == args.experiments and not report.errors, report
        after.close()
        print()
        print(f"{'':<48} {'wall s':>8} {'redis CPU s':>12} {'vs export':>10}")
        for label, wall, cpu in (
            ("monitor check, cold (reads every stream)", cold, cold_cpu),
            ("monitor check, warm (new entries only)", warm, warm_cpu),
            ("abtest export of the same data (baseline)", exported, export_cpu),
            ("monitor check, cold, after the export (files)", files, files_cpu),
        ):
            print(f"{label:<48} {wall:>8.1f} {cpu:>12.2f} {wall / exported:>9.2f}x")


if __name__ == "__main__":
    main()
