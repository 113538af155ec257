"""Benchmark: Redis memory per assigned unit and per buffered outcome event, beside a compact
layout of the same data measured in the same run.

Starts the real embedded redis-server (`abtest.embedded`, append-only persistence as in
production), writes through the real code paths (`Store.assign`: sticky variant + first
exposure + counters in one script; `Store.record_events`: outcome stream + dedupe tables),
and measures ``INFO memory`` ``used_memory`` before and after.  Then it runs
`abtest.export.export`: what stays in Redis once the streams are drained (the sticky map,
and the dedupe ids for their window; ``MEMORY USAGE`` of those keys) is the long-term cost.

Baseline, measured in the same run on the same (flushed) server: the *compact layout*, the
same data packed by hand as tightly as plain Redis types allow, with no concern for
decoding, growth or operations: the sticky map in small hashes of exactly 100 units with a
one-byte variant code; each exposure one stream entry holding a single binary record
(unit id, code, 8-byte timestamp, 2-byte version); each event one stream entry holding a
binary record (16-byte event id, unit id, one-byte metric code, 8-byte value and
timestamp), its dedupe id a 12-byte digest in small hashes of exactly 100.  The target is
abtest's layout within 1.5x of it.

Usage::

    python benchmarks/redis_memory.py [--units 20000] [--events 50000]
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import redis

from abtest import keys
from abtest.embedded import EmbeddedRedis
from abtest.events import Event
from abtest.export import export
from abtest.store import AssignRequest, Store

EXPERIMENT = "checkout-button"  # 15 characters, a typical slug
TIMESTAMP = 1_717_200_000_000_000
PER_BUCKET = 100


def used_memory(client: redis.Redis[Any]) -> int:
    """``used_memory`` of ``INFO memory`` (bytes the allocator holds for data and overhead)."""
    return int(client.info("memory")["used_memory"])


def key_usage(client: redis.Redis[Any], pattern: str) -> int:
    """``MEMORY USAGE`` (every element counted) summed over the keys matching ``pattern``:
    what stays once the streams are drained."""
    return sum(int(client.memory_usage(k, samples=0) or 0) for k in client.scan_iter(pattern))


def events_for(units: list[str], count: int) -> list[Event]:
    """``count`` events with 32-hex-digit ids (as the Python client's uuid4 ids)."""
    return [Event(f"{i:032x}", units[i % len(units)], "purchase", float(i % 100), TIMESTAMP + i)
            for i in range(count)]  # fmt: skip


def measure_abtest(client: redis.Redis[str], units: list[str], events: list[Event],
                   out: Path) -> dict[str, float]:  # fmt: skip
    """Bytes per unit and per event through the real store and export."""
    store = Store(client)
    config = {
        "key": EXPERIMENT,
        "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}],
    }
    store.create_experiment(config, key_id="bench")
    store.start_experiment(EXPERIMENT, key_id="bench")
    store.assign(EXPERIMENT, "warm-up")  # scripts loaded, caches built
    store.record_events([Event("warm-up", "warm-up", "purchase", 1.0, TIMESTAMP)])
    export(client, out_dir=out / "warm")
    before = used_memory(client)
    started = time.perf_counter()
    for start in range(0, len(units), 100):
        store.assign_many([AssignRequest(EXPERIMENT, u) for u in units[start : start + 100]])
    rate = len(units) / (time.perf_counter() - started)
    assigned = used_memory(client)
    for start in range(0, len(events), 1000):
        store.record_events(events[start : start + 1000])
    buffered = used_memory(client)
    export(client, out_dir=out / "export")
    return {
        "assigned": (assigned - before) / len(units),
        "exported": key_usage(client, f"{keys.sticky_buckets(EXPERIMENT)}:*") / len(units),
        "event": (buffered - assigned) / len(events),
        "event_exported": key_usage(client, "abtest:{events}:ids:*") / len(events),
        "rate": rate,
    }


def _buckets(count: int) -> int:
    return max(1, -(-count // PER_BUCKET))


def measure_compact(client: redis.Redis[str], units: list[str],
                    events: list[Event]) -> dict[str, float]:  # fmt: skip
    """Bytes per unit and per event for the hand-packed compact layout."""
    client.set("warm-up", 1)
    before = used_memory(client)
    sticky, exposures = _buckets(len(units)), "compact:exposures"
    pipe = client.pipeline(transaction=False)
    for i, unit in enumerate(units):
        code = i % 2
        pipe.hset(f"compact:sticky:{zlib.crc32(unit.encode()) % sticky}", unit, code)
        record = unit.encode() + struct.pack(">BqH", code, TIMESTAMP + i, 2)
        pipe.xadd(exposures, {"r": record})
    pipe.execute()
    assigned = used_memory(client)
    seen, stream = _buckets(len(events)), "compact:events"
    for event in events:
        digest = keys.event_digest(event.event_id)
        pipe.hset(f"compact:seen:{int.from_bytes(digest[:4], 'big') % seen}", digest, "")
        record = (bytes.fromhex(event.event_id) + struct.pack(">B", 0) + event.unit_id.encode()
                  + struct.pack(">dq", event.value, event.timestamp))  # fmt: skip
        pipe.xadd(stream, {"r": record})
    pipe.execute()
    buffered = used_memory(client)
    return {
        "assigned": (assigned - before) / len(units),
        "exported": key_usage(client, "compact:sticky:*") / len(units),
        "event": (buffered - assigned) / len(events),
        "event_exported": key_usage(client, "compact:seen:*") / len(events),
    }


def main() -> None:
    """Run both measurements and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    units = [f"user-{i:08d}" for i in range(args.units)]
    events = events_for(units, args.events)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        client: redis.Redis[str] = redis.Redis.from_url(server.url, decode_responses=True)
        version = client.info("server")["redis_version"]
        ours = measure_abtest(client, units, events, Path(tmp))
        client.flushall()
        compact = measure_compact(client, units, events)
    print(f"redis-server {version}, {args.units:,} units, {args.events:,} events, "
          "unit ids like 'user-00000001', event ids of 32 hex digits")  # fmt: skip
    print(f"assign rate during the run: {ours['rate']:,.0f} units/s (one client, batches of 100)")
    print(f"\n{'bytes of Redis memory':44s} {'abtest':>8s} {'compact':>8s} {'ratio':>6s}")
    rows = [
        ("per assigned unit (sticky + exposure + counts)", "assigned"),
        ("per unit after export (sticky map)", "exported"),
        ("per buffered event (stream + dedupe id)", "event"),
        ("per event after export (dedupe id, 8 days)", "event_exported"),
    ]
    for label, name in rows:
        ratio = ours[name] / compact[name]
        print(f"{label:44s} {ours[name]:8.1f} {compact[name]:8.1f} {ratio:5.2f}x")


if __name__ == "__main__":
    main()
