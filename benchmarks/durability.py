"""Durability benchmark: what a kill -9 of the embedded redis-server loses, per fsync policy.

For each ``appendfsync`` policy (``everysec``, the default, and ``always``) it starts the
embedded redis-server (abtest.embedded) on a fresh data directory, runs threads that assign
new units (``Store.assign``: sticky write + exposure) and send one event per unit
(``Store.record_events``), notes every acknowledged write with its time, kills the server
with SIGKILL in the middle of that load, starts it again on the same directory (it replays
the append-only file) and counts the acknowledged exposures and events that are gone, and
how long before the kill the lost ones had been acknowledged.

A process kill leaves what redis-server had handed to the kernel in the page cache, so it
loses only what Redis had not yet written; a power cut or kernel crash would also lose what
the kernel had not yet flushed, which this script cannot provoke.

Run::

    python benchmarks/durability.py                 # about 20 seconds
    python benchmarks/durability.py --seconds 5 --threads 8 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import redis

from abtest import keys
from abtest.embedded import EmbeddedRedis
from abtest.events import Event, now_us
from abtest.store import Store

EXPERIMENT = "durable"


def _load(url: str, stop: threading.Event, prefix: str, acked: list[tuple[str, float]]) -> None:
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
    store = Store(client)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            unit = f"{prefix}-{n}"
            store.assign(EXPERIMENT, unit)
            acked.append((unit, time.monotonic()))
            store.record_events([Event(f"e-{unit}", unit, "purchase", 1.0, now_us())])
            acked.append((f"e-{unit}", time.monotonic()))
    except redis.RedisError:
        pass  # the server was killed: the last call was never acknowledged
    finally:
        client.close()


def one_run(policy: str, seconds: float, threads: int) -> dict[str, float]:
    """Load, kill -9, restart; what was acknowledged and is gone."""
    work = Path(tempfile.mkdtemp(prefix="abtest-durability-"))
    server = EmbeddedRedis(work, appendfsync=policy).start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    store = Store(client)
    store.create_experiment(
        {"key": EXPERIMENT, "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}]},
        key_id="bench",
    )
    store.start_experiment(EXPERIMENT, key_id="bench")
    pid = int(client.info("server")["process_id"])
    client.close()
    stop = threading.Event()
    acked: list[list[tuple[str, float]]] = [[] for _ in range(threads)]
    workers = [
        threading.Thread(target=_load, args=(server.url, stop, f"t{i}", acked[i]))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    stop.set()
    for worker in workers:
        worker.join()
    server.stop()  # reaps the process and releases the data dir
    with EmbeddedRedis(work, appendfsync=policy) as again:
        client = redis.Redis.from_url(again.url, decode_responses=True)
        exposed = {f["unit_id"] for _, f in client.xrange(keys.exposures_stream(EXPERIMENT))}
        events = {f["event_id"] for _, f in client.xrange(keys.outcomes_stream())}
        client.close()
    shutil.rmtree(work, ignore_errors=True)
    writes = [w for per_thread in acked for w in per_thread]
    lost = [(name, at) for name, at in writes if name not in exposed and name not in events]
    ages = [killed_at - at for _, at in lost]
    return {
        "acked": len(writes),
        "lost_exposures": sum(not n.startswith("e-") for n, _ in lost),
        "lost_events": sum(n.startswith("e-") for n, _ in lost),
        "oldest_lost_s": max(ages, default=0.0),
        "rate": len(writes) / seconds,
    }


def main() -> None:
    """Run each policy ``--runs`` times and print what was lost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="load before the kill")
    parser.add_argument("--threads", type=int, default=4, help="writing threads")
    parser.add_argument("--runs", type=int, default=2, help="runs per policy")
    args = parser.parse_args()
    print(f"{'policy':<10}{'acked writes':>14}{'writes/s':>10}{'lost exposures':>16}"
          f"{'lost events':>13}{'oldest lost (s)':>17}")  # fmt: skip
    for policy in ("everysec", "always"):
        for _ in range(args.runs):
            r = one_run(policy, args.seconds, args.threads)
            print(f"{policy:<10}{r['acked']:>14.0f}{r['rate']:>10.0f}{r['lost_exposures']:>16.0f}"
                  f"{r['lost_events']:>13.0f}{r['oldest_lost_s']:>17.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
