"""Service benchmark: /v1/assign against a hello-world ceiling, under gunicorn, in one run.

What it does (everything local, loopback only, bounded in time):

1. starts a private redis-server (abtest.embedded) and stores a running two-variant
   experiment plus an sdk key;
2. starts gunicorn (``abtest.cli.serve_commands.run_gunicorn``, the code ``abtest serve``
   runs) with the abtest app, and routes ``GET /hello`` to a bare Flask hello-world app
   inside the same gunicorn workers: the ceiling;
3. peak: interleaved rounds of ``wrk`` (Debian package; installed with apt-get when
   missing) on each endpoint with a fixed number of connections, medians reported; every
   /v1/assign request carries a new unit id, so every request is a first exposure (sticky
   write + stream XADD + counters).  Three more rows split the gap: ``/hello-redis`` (hello
   world plus one Redis PING) is what one round trip alone costs on this machine,
   ``/hello-get-xadd`` (hello world plus a plain Redis GET and XADD: two round trips) is the
   issue's reference point, and ``/hello-assign`` (a bare Flask view: JSON in,
   ``Store.assign``, JSON out; no key check, metrics or field validation) is the store's
   whole cost without the service around it; ``/v1/assign, appendfsync always`` is the same
   endpoint while the embedded redis-server fsyncs its append-only file before every reply
   (``CONFIG SET appendfsync always`` around those runs, ``everysec`` again after them):
   the price of ``abtest serve --appendfsync always``;
4. latency at half the /v1/assign peak: an open-loop Python client (processes x threads,
   each request scheduled on a fixed timetable, latency counted from the scheduled time so
   queueing is not hidden) sends new-unit /v1/assign requests at that rate; the first
   second at that rate is a warm-up and is not counted;
5. the Python client's local mode: how fast 20,000 first-seen units reach the service as
   exposures (``POST /v1/assign/batch``), against the same client sending one
   ``POST /v1/assign`` per unit.

Run::

    python benchmarks/service.py                 # about 2 minutes
    python benchmarks/service.py --rounds 5 --duration 10 --workers 3

It prints requests/s, p50 and p99 for each endpoint and the ratio assign / hello.  The
figures depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def hello_wrapper(app: Any) -> Any:
    """gunicorn hook: serve ``/hello`` from a bare Flask app, everything else from ``app``."""
    from flask import Flask, jsonify, request

    hello = Flask("hello")
    redis_client = app.extensions["abtest"].redis
    store = app.extensions["abtest"].store

    @hello.get("/hello")
    def index() -> str:
        return "Hello, World!"

    @hello.get("/hello-redis")
    def one_round_trip() -> str:
        # The floor of any Redis-backed endpoint here: hello world plus one PING.
        return "Hello, World!" if redis_client.ping() else "no"

    @hello.get("/hello-get-xadd")
    def two_round_trips() -> str:
        # The reference point: hello world plus a plain Redis GET and XADD.
        redis_client.get("bench:reference")
        redis_client.xadd("bench:reference-stream", {"unit_id": "u", "variant": "v"})
        return "Hello, World!"

    @hello.post("/hello-assign")
    def bare_assign() -> Any:
        # The same store call as /v1/assign, with none of the service's layer around it.
        body = request.get_json()
        result, version = store.assign(body["experiment"], body["unit_id"])
        return jsonify({**result.to_dict(), "config_version": version})

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        target = hello if environ.get("PATH_INFO", "").startswith("/hello") else app
        return target(environ, start_response)

    return dispatch


def _server_main(port: int, redis_url: str, workers: int, threads: int) -> None:
    # Run as a script, this file's folder comes first on sys.path, and its name would
    # shadow the ``service`` package that gunicorn's workers import.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    from abtest.cli.serve_commands import run_gunicorn

    options = {
        "bind": f"127.0.0.1:{port}",
        "workers": workers,
        "threads": threads,
        "loglevel": "warning",
    }
    sys.exit(run_gunicorn(options, {"REDIS_URL": redis_url}, wrap="__main__:hello_wrapper"))


def _ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing the Debian package (apt-get install wrk)", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL
    )
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not available; install it with: apt-get install wrk")
    return found


_WRK_ASSIGN = """
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) prefix = "RUN-" .. tid .. "-"; n = 0 end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer KEY"
function request()
  n = n + 1
  return wrk.format(nil, "PATH", nil,
    '{"experiment":"bench","unit_id":"' .. prefix .. n .. '"}')
end
"""


def _wrk(
    wrk: str, url: str, duration: int, connections: int, script: str | None
) -> dict[str, float]:
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": errors.group(1) if errors else "none",
    }  # type: ignore[dict-item]


def _http_request(path: str, key: str, unit_id: str) -> bytes:
    """One ``Connection: close`` request: a new-unit POST /v1/assign, or a GET of ``path``."""
    if path != "/v1/assign":
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    body = json.dumps({"experiment": "bench", "unit_id": unit_id}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


_WARMUP_SECONDS = 1.0


def _paced_worker(
    args: tuple[int, str, float, float, int, int, int, str, str],
) -> tuple[list[float], int]:
    port, key, rate, duration, threads, index, processes, run, path = args
    total = processes * threads
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start = time.perf_counter() + 0.5
    # Requests scheduled before this are sent at the same rate but not counted: the first
    # ones meet threads, sockets and caches that a steady stream of traffic keeps warm.
    measured_from = start + _WARMUP_SECONDS

    def loop(slot: int) -> None:
        period = total / rate
        scheduled = start + slot / rate
        n = 0
        local: list[float] = []
        while scheduled < measured_from + duration:
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            n += 1
            request = _http_request(path, key, f"{run}-{slot}-{n}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(request)
                    response = b""
                    while chunk := sock.recv(65536):
                        response += chunk
                ok = response.startswith(b"HTTP/1.1 200")
            except OSError:
                ok = False
            if scheduled >= measured_from:
                local.append((time.perf_counter() - scheduled) * 1000)
            if not ok:
                with lock:
                    failures[0] += 1
            scheduled += period
        with lock:
            latencies.extend(local)

    slots = [index * threads + t for t in range(threads)]
    workers = [threading.Thread(target=loop, args=(s,)) for s in slots]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies, failures[0]


def _paced(
    port: int,
    key: str,
    rate: float,
    duration: float,
    path: str = "/v1/assign",
    *,
    processes: int = 2,
    threads: int = 8,
) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]
    jobs = [(port, key, rate, duration, threads, i, processes, run, path) for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_paced_worker, jobs)
    latencies = np.concatenate([np.asarray(r[0]) for r in results])
    return {
        "target_rps": rate,
        "achieved_rps": len(latencies) / duration,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "failures": float(sum(r[1] for r in results)),
    }


def _client_exposures(base: str, key: str, units: int) -> dict[str, float]:
    """First exposures per second from the Python client's local mode (batched) and, as the
    baseline, from the same client sending one ``POST /v1/assign`` per unit."""
    from abtest.client import Client

    run = uuid.uuid4().hex[:8]
    with Client(base, key, local_evaluation=True, max_buffer=2 * units) as client:
        started = time.perf_counter()
        for i in range(units):
            client.assign("bench", f"{run}-local-{i}")
        client.flush(timeout=120)
        batched = units / (time.perf_counter() - started)
        sent = client.stats().exposures_sent
        singles = max(1, units // 10)
        started = time.perf_counter()
        for i in range(singles):
            client.assign_remote("bench", f"{run}-single-{i}")
        one_by_one = singles / (time.perf_counter() - started)
    return {"batched": batched, "one_by_one": one_by_one, "sent": float(sent), "units": units}


def _print_fsync(results: dict[str, Any]) -> None:
    everysec, always = results["assign"], results["assign_always"]
    for label, r in (("everysec", everysec), ("always", always)):
        print(f"POST /v1/assign, appendfsync {label:<9} {r['rps']:>7.0f} req/s  "
              f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
              f"rounds {r['all_rps']}")  # fmt: skip
    print(f"always / everysec: {always['rps'] / everysec['rps']:.0%} of the throughput")


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--fsync-only", action="store_true",
                        help="only /v1/assign with appendfsync everysec and always, "
                        "interleaved; no latency or client runs")  # fmt: skip
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)  # internal: port url workers
    args = parser.parse_args()
    if args.serve:
        _server_main(int(args.serve[0]), args.serve[1], int(args.serve[2]), args.threads)
        return

    import redis

    from abtest.auth import Role
    from abtest.cli.serve_commands import memory_dir
    from abtest.embedded import EmbeddedRedis, free_port
    from abtest.store import Store

    wrk = _ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="abtest-bench-"))
    with EmbeddedRedis(work / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = Store(client)
        store.create_experiment(
            {
                "key": "bench",
                "variants": [
                    {"key": "control", "weight": 1, "payload": {"ranker": "v1"}},
                    {"key": "treatment", "weight": 1, "payload": {"ranker": "v2"}},
                ],
            },
            key_id="bench",
        )
        store.start_experiment("bench", key_id="bench")
        key, _ = store.create_api_key(Role.SDK, name="benchmark")
        port = free_port()
        # Where `abtest serve` keeps them: a tmpfs when there is one.
        metrics = tempfile.mkdtemp(prefix="abtest-bench-metrics-", dir=memory_dir())
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics}
        gunicorn = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--serve",
                str(port),
                server.url,
                str(args.workers),
            ],
            env=env,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            script = work / "assign.lua"
            results: dict[str, Any] = {}
            load_before = os.getloadavg()
            targets = (
                ("hello", base + "/hello", None),
                ("hello_redis", base + "/hello-redis", None),
                ("get_xadd", base + "/hello-get-xadd", None),
                ("hello_assign", base + "/hello-assign", "/hello-assign"),
                ("assign", base + "/v1/assign", "/v1/assign"),
                ("assign_always", base + "/v1/assign", "/v1/assign"),
            )
            if args.fsync_only:
                targets = tuple(t for t in targets if t[0] in ("assign", "assign_always"))
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in targets}
            # Interleaved rounds, medians reported: other load on a shared machine then hits
            # every endpoint alike instead of skewing whichever ran during a busy spell.
            for round_index in range(args.rounds + 1):
                for name, url, post_path in targets:
                    lua = None
                    if post_path:  # new-unit POSTs: a fresh run id keeps every unit new
                        run_id = uuid.uuid4().hex[:8]
                        script.write_text(
                            _WRK_ASSIGN.replace("PATH", post_path)
                            .replace("KEY", key)
                            .replace("RUN", run_id)
                        )
                        lua = str(script)
                    seconds = 2 if round_index == 0 else args.duration  # round 0 warms up
                    fsync = "always" if name == "assign_always" else "everysec"
                    client.config_set("appendfsync", fsync)
                    run = _wrk(wrk, url, seconds, args.connections, lua)
                    client.config_set("appendfsync", "everysec")
                    if round_index:
                        rounds[name].append(run)
            for name, runs in rounds.items():
                runs.sort(key=lambda r: r["rps"])
                results[name] = {**runs[len(runs) // 2], "all_rps": [round(r["rps"]) for r in runs]}
            if not args.fsync_only:
                half = results["assign"]["rps"] / 2
                paced = _paced(port, key, half, float(args.duration))
                # The same client and rate on hello world: the latency this machine and this
                # client add by themselves.
                paced_hello = _paced(port, key, half, float(args.duration), "/hello")
                local = _client_exposures(base, key, 20_000)
            exposures = client.xlen("abtest:{bench}:exposures")
            load_after = os.getloadavg()
        finally:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(30)
            client.close()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(metrics, ignore_errors=True)
    if args.fsync_only:
        _print_fsync(results)
        return

    hello, assign = results["hello"], results["assign"]
    print(
        f"\nmachine: {os.cpu_count()} cores; gunicorn {args.workers} worker(s) x {args.threads} "
        f"thread(s); wrk 1 thread, {args.connections} connections, {args.duration}s per run"
    )
    print(f"{'endpoint':<38}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  errors")
    for label, r in (
        ("GET /hello (bare Flask, ceiling)", hello),
        ("GET /hello-redis (+1 Redis PING)", results["hello_redis"]),
        ("GET /hello-get-xadd (+GET, +XADD)", results["get_xadd"]),
        ("POST /hello-assign (bare view)", results["hello_assign"]),
        ("POST /v1/assign (new unit each)", assign),
        ("POST /v1/assign, appendfsync always", results["assign_always"]),
    ):
        print(
            f"{label:<38}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}  "
            f"non-2xx={r['non_2xx']:.0f} socket={r['socket_errors']}"
        )
    print("req/s per round, sorted (the median is shown above):")
    for name, r in results.items():
        print(f"  {name}: {r['all_rps']}")
    print(
        f"ratio assign / hello: {assign['rps'] / hello['rps']:.0%}  (goal >= 60%); "
        f"hello-redis / hello: {results['hello_redis']['rps'] / hello['rps']:.0%}; "
        f"hello-get-xadd / hello: {results['get_xadd']['rps'] / hello['rps']:.0%}; "
        f"hello-assign / hello: {results['hello_assign']['rps'] / hello['rps']:.0%}"
    )
    print(
        f"appendfsync always / everysec on /v1/assign: "
        f"{results['assign_always']['rps'] / assign['rps']:.0%} of the throughput, "
        f"p99 {results['assign_always']['p99_ms']:.2f} ms vs {assign['p99_ms']:.2f} ms"
    )
    print(
        f"assign at half peak ({paced['target_rps']:.0f} req/s target, "
        f"{paced['achieved_rps']:.0f} achieved, open loop, "
        f"after a {_WARMUP_SECONDS:.0f} s warm-up): p50 {paced['p50_ms']:.2f} ms, "
        f"p99 {paced['p99_ms']:.2f} ms (goal < 10 ms), failures {paced['failures']:.0f}"
    )
    print(
        f"hello at the same rate and client (reference): p50 {paced_hello['p50_ms']:.2f} ms, "
        f"p99 {paced_hello['p99_ms']:.2f} ms, failures {paced_hello['failures']:.0f}"
    )
    print(
        f"client local mode: {local['batched']:.0f} first exposures/s in batches of up to 100 "
        f"({local['sent']:.0f} of {local['units']:.0f} sent) vs {local['one_by_one']:.0f}/s "
        f"with one POST /v1/assign per unit: {local['batched'] / local['one_by_one']:.1f}x"
    )
    print(f"exposures logged during the run: {exposures}")
    print(
        f"load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f} "
        f"on {os.cpu_count()} cores (other work on the machine lowers every figure)"
    )


if __name__ == "__main__":
    main()
