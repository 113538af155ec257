"""Benchmark: Redis memory per assigned unit and per buffered outcome event.

Starts the real embedded redis-server (`abtest.embedded`, append-only persistence as in
production), writes through the real code paths (`Store.assign`: sticky variant + first
exposure + counters in one script; `Store.record_events`: outcome stream + dedupe sets),
and measures ``INFO memory`` ``used_memory`` before and after, plus ``MEMORY USAGE`` of each
key.  Then it runs `abtest.export.export` and measures again: what stays in Redis once the
streams are drained is the long-term cost.

Baseline, measured in the same run: the raw bytes of the fields themselves (what a row
would cost in a packed file), so the ratio is Redis's overhead factor.

Usage::

    python benchmarks/redis_memory.py [--units 20000] [--events 50000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from abtest import keys
from abtest.embedded import EmbeddedRedis
from abtest.events import Event
from abtest.export import export
from abtest.store import Store

EXPERIMENT = "checkout-button"  # 15 characters, a typical slug


def used_memory(client: redis.Redis[Any]) -> int:
    """``used_memory`` of ``INFO memory`` (bytes the allocator holds for data and overhead)."""
    return int(client.info("memory")["used_memory"])


def key_usage(client: redis.Redis[Any], *names: str) -> dict[str, int]:
    """``MEMORY USAGE`` of each key (SAMPLES 0: every element counted), 0 if absent."""
    return {name: int(client.memory_usage(name, samples=0) or 0) for name in names}


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        client: redis.Redis[str] = redis.Redis.from_url(server.url, decode_responses=True)
        store = Store(client)
        config = {
            "key": EXPERIMENT,
            "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}],
        }
        store.create_experiment(config, key_id="bench")
        store.start_experiment(EXPERIMENT, key_id="bench")
        store.assign(EXPERIMENT, "warm-up")  # scripts loaded, caches built
        store.record_events([Event("warm-up", "warm-up", "purchase", 1.0, 1_717_200_000_000_000)])
        export(client, out_dir=Path(tmp) / "warm")

        print(
            f"redis-server {client.info('server')['redis_version']}, "
            f"{args.units:,} units, {args.events:,} events, unit ids like 'user-00000001'"
        )
        units = [f"user-{i:08d}" for i in range(args.units)]
        before = used_memory(client)
        started = time.perf_counter()
        for unit in units:
            store.assign(EXPERIMENT, unit)
        elapsed = time.perf_counter() - started
        after_assign = used_memory(client)
        exp_keys = key_usage(
            client,
            keys.assignments(EXPERIMENT),
            keys.exposures_stream(EXPERIMENT),
            keys.exposure_counts(EXPERIMENT),
        )

        events = [
            Event(
                f"{i:032x}",
                units[i % len(units)],
                "purchase",
                float(i % 100),
                1_717_200_000_000_000 + i,
            )
            for i in range(args.events)
        ]
        for start in range(0, len(events), 1000):
            store.record_events(events[start : start + 1000])
        after_events = used_memory(client)
        seen = sorted(client.scan_iter(keys.seen_events("*")))
        event_keys = key_usage(client, keys.outcomes_stream(), *seen)

        export(client, out_dir=Path(tmp) / "out")
        drained = used_memory(client)
        kept = key_usage(
            client,
            keys.assignments(EXPERIMENT),
            keys.exposures_stream(EXPERIMENT),
            keys.outcomes_stream(),
            *seen,
        )

    per_unit = (after_assign - before) / args.units
    per_event = (after_events - after_assign) / args.events
    raw_unit = len(units[-1]) + len("treatment") + 8 + 8  # id, variant, timestamp, version
    raw_event = 32 + len(units[-1]) + len("purchase") + 8 + 8  # id, unit, metric, value, ts
    streams = exp_keys[keys.exposures_stream(EXPERIMENT)]
    print(f"assign rate during the run: {args.units / elapsed:,.0f} units/s (single client)")
    print("\nper assigned unit (sticky variant + first exposure + counters)")
    print(
        f"  used_memory delta          {per_unit:8.1f} B   (raw fields {raw_unit} B, "
        f"ratio {per_unit / raw_unit:.1f}x)"
    )
    for name, size in exp_keys.items():
        print(f"  MEMORY USAGE {name:32s} {size / args.units:8.1f} B/unit")
    print(
        f"  after export (sticky hash only)  "
        f"{kept[keys.assignments(EXPERIMENT)] / args.units:8.1f} B/unit "
        f"(stream: {kept[keys.exposures_stream(EXPERIMENT)]} B left)"
    )
    print("\nper buffered outcome event (stream entry + dedupe-set member)")
    print(
        f"  used_memory delta          {per_event:8.1f} B   (raw fields {raw_event} B, "
        f"ratio {per_event / raw_event:.1f}x)"
    )
    for name, size in event_keys.items():
        print(f"  MEMORY USAGE {name:32s} {size / args.events:8.1f} B/event")
    seen_bytes = sum(kept[name] for name in seen)
    print(
        f"  after export (dedupe ids, kept {len(seen)} day set(s) for the window) "
        f"{seen_bytes / args.events:8.1f} B/event"
    )
    print(
        f"\nexported exposure stream drained: {streams} B -> "
        f"{kept[keys.exposures_stream(EXPERIMENT)]} B; used_memory "
        f"{after_events / 2**20:.1f} MiB -> {drained / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
