"""Capacity benchmark: first exposures/s through ``POST /v1/assign/batch`` and events/s through
``POST /v1/events`` on a 1-shard and on a 3-shard Redis Cluster, in one run.

Each configuration (1 shard, 3 shards, and 3 shards with one replica each and
``ABTEST_REDIS_WAIT_REPLICAS=1``: the cost of waiting for replication) is a local Redis
Cluster (`abtest.embedded_cluster`; no replicas unless waiting for them, so the shards do
only the serving work), ``abtest serve --redis-url redis+cluster://...`` with
`PARTITIONS` unit and event partitions, and a load generator (processes x threads with
keep-alive connections) that sends, for ``--duration`` seconds each, batches of 100 new
units (every one a first exposure: sticky write + exposure + counters) and then batches of
500 new events.  Reported per configuration: the rate, and the Redis CPU time each shard
spent per 1,000 exposures or events (``INFO cpu``): one shard is one core, so
``1 / (CPU seconds per item)`` is what one shard can serve when nothing else needs the
machine, the figure to size a cluster with.

On a 2-core machine the service, the load generator and every shard share the two cores:
adding shards cannot add throughput there (the ratio shows the partitioning's overhead,
not its gain).  On real hosts each shard has its own core and the per-shard figures add up.

Usage::

    python benchmarks/cluster_capacity.py [--duration 10] [--workers 2] [--clients 2x4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from abtest.embedded import free_port
from abtest.embedded_cluster import LocalCluster

PARTITIONS = 12  # several per shard, so that 3 shards each get about a third


def _load(  # noqa: PLR0917 - Pool.starmap passes a worker's arguments by position
    port: int, key: str, kind: str, prefix: str, seconds: float, threads: int
) -> int:
    """One load process: ``threads`` keep-alive clients for ``seconds``; items accepted."""
    import threading

    done = [0] * threads

    def run(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        deadline, n = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            base = f"{prefix}-{slot}-{n}"
            if kind == "assign":
                body = {"requests": [{"experiment": "exp", "unit_id": f"{base}-{i}"}
                                     for i in range(100)]}  # fmt: skip
                path, size = "/v1/assign/batch", 100
            else:
                body = {
                    "events": [
                        {
                            "event_id": f"{base}-{i}",
                            "unit_id": f"u{i}",
                            "metric": "purchase",
                            "value": 1,
                        }
                        for i in range(500)
                    ]
                }
                path, size = "/v1/events", 500
            conn.request("POST", path, json.dumps(body), headers)
            response = conn.getresponse()
            response.read()
            if response.status in (200, 202):
                done[slot] += size
            n += 1
        conn.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done)


def _cpu(cluster: LocalCluster) -> dict[int, float]:
    found = {}
    for port in cluster.master_ports():
        info = cluster.client(port).info("cpu")
        found[port] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return found


def _measure(cluster: LocalCluster, port: int, key: str, kind: str,
             args: argparse.Namespace) -> dict[str, float]:  # fmt: skip
    processes, threads = (int(x) for x in args.clients.split("x"))
    before, started = _cpu(cluster), time.monotonic()
    with multiprocessing.Pool(processes) as pool:
        counts = pool.starmap(_load, [(port, key, kind, f"{kind}{p}", args.duration, threads)
                                      for p in range(processes)])  # fmt: skip
    elapsed = time.monotonic() - started
    after = _cpu(cluster)
    items = sum(counts)
    per_shard = [(after[p] - before[p]) / items * 1e6 for p in before]  # ms per 1,000
    return {"rate": items / elapsed, "cpu_per_1000": max(per_shard), "cpu_sum": sum(per_shard)}


def _run(
    masters: int, args: argparse.Namespace, tmp: Path, *, wait: bool = False
) -> dict[str, dict[str, float]]:
    name = f"cluster-{masters}{'-wait' if wait else ''}"
    with LocalCluster(tmp / name, masters=masters, replicas=int(wait)) as cluster:
        port = free_port()
        env = {**os.environ, "ABTEST_UNIT_PARTITIONS": str(PARTITIONS),
               "ABTEST_EVENT_PARTITIONS": str(PARTITIONS),
               "ABTEST_REDIS_WAIT_REPLICAS": str(int(wait))}  # fmt: skip
        env.pop("REDIS_URL", None)
        server = subprocess.Popen(
            [sys.executable, "-c", "from abtest.cli import run; run()", "serve", "--port",
             str(port), "--workers", str(args.workers), "--redis-url", cluster.url,
             "--data-dir", str(tmp / f"data-{name}")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            key = ""
            for line in server.stdout:
                if line.startswith("admin key: "):
                    key = line.split(": ", 1)[1].strip()
                if line.startswith("abtest: serving on"):
                    break
            _wait_healthy(port)
            _request(
                port,
                key,
                "POST",
                "/v1/experiments",
                {
                    "key": "exp",
                    "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}],
                    "primary_metric": "purchase:binomial",
                },  # its events are known, not refused
            )
            _request(port, key, "POST", "/v1/experiments/exp/start", None)
            return {kind: _measure(cluster, port, key, kind, args) for kind in ("assign", "events")}
        finally:
            server.terminate()
            server.wait(30)


def _request(port: int, key: str, method: str, path: str, body: Any) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, None if body is None else json.dumps(body),
                 {"Authorization": f"Bearer {key}"})  # fmt: skip
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    assert response.status < 300, data
    return data


def _wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("abtest serve did not become healthy")


def main() -> None:
    """Measure 1 and 3 shards and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--clients", default="2x4", help="load processes x threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {masters: _run(masters, args, Path(tmp)) for masters in (1, 3)}
        waited = _run(3, args, Path(tmp), wait=True)
    print(f"{os.cpu_count()} cores; abtest serve --workers {args.workers}; load {args.clients}; "
          f"{PARTITIONS} unit and event partitions; {args.duration:.0f} s per figure")  # fmt: skip
    print(
        f"\n{'':24s} {'1 shard':>12s} {'3 shards':>12s} {'ratio':>6s}   "
        "Redis CPU ms per 1,000 (busiest shard; all shards)"
    )
    for kind, label in (("assign", "first exposures/s"), ("events", "events/s")):
        one, three = results[1][kind], results[3][kind]
        print(f"{label:24s} {one['rate']:12,.0f} {three['rate']:12,.0f} "
              f"{three['rate'] / one['rate']:5.2f}x   1 shard {one['cpu_per_1000']:.0f} ms; "
              f"3 shards {three['cpu_per_1000']:.0f} ms, {three['cpu_sum']:.0f} ms")  # fmt: skip
    for kind, label in (("assign", "first exposures/s"), ("events", "events/s")):
        print(
            f"3 shards with a replica each and WAIT 1: {waited[kind]['rate']:,.0f} {label} "
            f"({waited[kind]['rate'] / results[3][kind]['rate']:.2f}x of 3 shards without)"
        )
    for kind, label in (("assign", "first exposures"), ("events", "events")):
        ceiling = 1e6 / max(results[1][kind]["cpu_per_1000"], 1e-9)
        print(f"one shard's own ceiling (one core, Redis CPU only): {ceiling:,.0f} {label}/s")


if __name__ == "__main__":
    main()
