"""``abtest demo --scenario rollout``: two guarded rollouts of new model versions, watched by
the monitor over simulated days; one is rolled back on its own, the other ships.

Everything runs on the real components: ``abtest serve`` as a child process on the
controlled clock (``ABTEST_CLOCK=controlled``, demo and test mode only), the Python client
speaking HTTP, the monitor (`service.monitor.runner.Monitor`, the code ``abtest monitor``
runs, here in this process so that its checks follow the simulated hours exactly), and a
local HTTP server that receives the webhook and checks its signature.

Two surfaces of an app each run a guarded rollout of a new ranking model against ``v2``
(steps 10% -> 25% -> 50% -> 100%, at least 12 h and 50 units of the new model per step, a
check an hour, latency guardrail with a 10% margin):

- ``ranker-v3-rollout``: v3 answers about 3% faster; it advances step by step and ships;
- ``ranker-v4-rollout``: v4 answers about 25% slower; the always-valid harm test catches
  it at the first step, the monitor rolls it back (everyone is served v2), raises a
  critical ``rollout_rolled_back`` alert and delivers it to the webhook.

Each simulated hour: the clock moves on, ``users_per_hour`` users arrive on each surface
still rolling out (each asks for its variant and logs one latency), then the monitor runs
one check and sends the deliveries due.  The files stay in the kept folder, as the A/B
demo's: ``rollout-report.html`` (each rollout's timeline), ``rollouts.json`` (the rollout
documents, alerts and deliveries received) and the embedded store.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, TextIO

from abtest.admin_client import AdminClient
from abtest.demo import (
    CONTROLLED_CLOCK,
    demo_keys,
    finish,
    prepare_folder,
    shown,
    simulated_start,
)
from abtest.errors import InvalidInput, StoreUnavailable

CONTROL: Final = "v2"
# experiment key -> (new variant, its latency against control)
ROLLOUTS: Final = {"ranker-v3-rollout": ("v3", 0.97), "ranker-v4-rollout": ("v4", 1.25)}
STEPS: Final = (0.1, 0.25, 0.5, 1.0)
BASE_LATENCY_MS: Final = 120.0
_THREADS: Final = 8


@dataclass(frozen=True)
class RolloutDemoSettings:
    """What the scenario simulates; the defaults end both rollouts in about 2 days."""

    users_per_hour: int = 120
    max_hours: int = 96
    seed: int = 7
    data_dir: str | None = None
    keep_running: bool = False
    port: int | None = None


@dataclass(frozen=True)
class RolloutDemoOutcome:
    """How each rollout ended (experiment -> status, step at the end) and what the webhook
    receiver got (the deliveries' bodies, each signature checked)."""

    statuses: dict[str, str]
    steps: dict[str, int]
    deliveries: list[dict[str, Any]]
    report: Path
    summary: Path


def rollout_experiment(key: str) -> dict[str, Any]:
    """One surface's guarded rollout of its new model (module docstring)."""
    new, _ = ROLLOUTS[key]
    return {
        "key": key,
        "description": f"Demo: guarded rollout of ranking model {new}.",
        "owner": "demo@abtest.invalid",
        "control": CONTROL,
        "variants": [
            {"key": CONTROL, "weight": 1, "payload": {"model": "ranker", "version": CONTROL}},
            {"key": new, "weight": 1, "payload": {"model": "ranker", "version": new}},
        ],
        "primary_metric": {"name": "click", "type": "binomial"},
        "guardrail_metrics": [
            {"name": "latency_ms", "type": "sum", "higher_is_better": False, "margin": 0.1},
        ],
        "rollout": {"variant": new, "steps": list(STEPS), "min_hours_per_step": 12,
                    "min_units_per_step": 50, "check_interval_minutes": 60, "alpha": 0.05,
                    "observation_hours": 1},
    }  # fmt: skip


# -- the local webhook receiver ---------------------------------------------------------------
@dataclass
class WebhookReceiver:
    """Deliveries received by the local server: each body with whether its signature
    verified under ``secret`` (set once the webhook is registered)."""

    url: str = ""
    secret: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A real HTTP server on a free loopback port that records and verifies deliveries."""
    from abtest.json_input import decode_bytes, loads
    from abtest.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

    state = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            verified = verify_signature(state.secret, body, self.headers.get(TIMESTAMP_HEADER, ""),
                                        self.headers.get(SIGNATURE_HEADER, ""))  # fmt: skip
            with state.lock:
                text, raw_surrogates = decode_bytes(body)
                parsed = loads(text, raw_surrogates=raw_surrogates)
                state.received.append({"verified": verified, "body": parsed})
            self.send_response(200 if verified else 401)
            self.end_headers()

        def log_message(self, *_args: object) -> None:  # the demo prints its own lines
            return

    with local_http_server(Handler) as server:
        state.url = f"http://127.0.0.1:{server.server_port}/abtest-hook"
        yield state


@contextlib.contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """``handler`` served from a thread on a free loopback port for the ``with`` block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- the run ----------------------------------------------------------------------------------
def run_rollout_demo(settings: RolloutDemoSettings, out: TextIO = sys.stdout) -> RolloutDemoOutcome:
    """Run the scenario (module docstring), printing each step; return how it ended."""
    if not 20 <= settings.users_per_hour <= 5000:
        raise InvalidInput("must lie between 20 and 5,000", "--users-per-hour")

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    data_dir = Path(settings.data_dir or "abtest-demo")
    old_umask = os.umask(0o077)
    try:
        prepare_folder(data_dir)
        with contextlib.ExitStack() as stack:
            return _serve_and_run(stack, data_dir, settings, say)
    finally:
        os.umask(old_umask)


def _serve_and_run(stack: contextlib.ExitStack, data_dir: Path, settings: RolloutDemoSettings,
                   say: Callable[[str], None]) -> RolloutDemoOutcome:  # fmt: skip
    from abtest.embedded import free_port, open_redis
    from abtest.redis_client import connect
    from abtest.service_process import running_service
    from service.monitor.clock import RedisClock
    from service.monitor.runner import Monitor, MonitorSettings

    port = settings.port or free_port()
    # The monitor runs here, one check per simulated hour, rather than beside the service.
    options = ("--workers", "2", "--no-monitor")
    server = stack.enter_context(
        running_service(data_dir, port, *options, settings=CONTROLLED_CLOCK)
    )
    say(f"1. serve     abtest serve on {server.url} on a controlled clock (embedded "
        f"redis-server in {shown(data_dir)})")  # fmt: skip
    admin, sdk = demo_keys(server.admin_key, data_dir)
    api = stack.enter_context(AdminClient(server.url, admin, timeout=60.0))
    start = api.set_clock(simulated_start(3))
    receiver = stack.enter_context(webhook_receiver())
    webhook, secret = api.create_webhook(receiver.url, min_severity="critical",
                                         description="the demo's local receiver")  # fmt: skip
    receiver.secret = secret or ""
    say(f"2. webhook   critical alerts go to a local receiver at {receiver.url} ({webhook.id})")
    for key in ROLLOUTS:
        definition = rollout_experiment(key)
        (data_dir / f"{key}.json").write_text(json.dumps(definition, indent=2) + "\n",
                                              encoding="utf-8")  # fmt: skip
        api.create_experiment(definition)
        api.start_experiment(key)
        new, latency = ROLLOUTS[key]
        say(
            f"3. start     {key}: {new} ({latency - 1:+.0%} latency) against {CONTROL}, steps "
            + " -> ".join(f"{s:.0%}" for s in STEPS)
            + f", from {start:%Y-%m-%d %H:%M} UTC"
        )
    redis_url = stack.enter_context(open_redis(None, data_dir))
    client = connect(redis_url, decode_responses=True)
    stack.callback(client.close)
    monitor_settings = MonitorSettings(export_dir=data_dir / "export", instance="demo-monitor")
    monitor = Monitor(client, RedisClock(client), monitor_settings)
    stack.callback(monitor.close)
    hours = _simulate(_Run(api, server.url, sdk, monitor, start), settings, say)
    outcome = _report(api, data_dir, receiver, hours, say)
    finish(server, admin, data_dir, keep_running=settings.keep_running, say=say)
    return outcome


@dataclass(frozen=True)
class _Run:
    """What the simulation drives: the API, the service's URL and sdk key, the monitor and
    the simulated start."""

    api: AdminClient
    url: str
    sdk_key: str
    monitor: Any
    start: datetime


def _simulate(run: _Run, settings: RolloutDemoSettings, say: Callable[[str], None]) -> int:
    """Hour by hour until both rollouts ended: traffic, then a monitor check; the hours."""
    import numpy as np

    from abtest.client import Client

    rng = np.random.default_rng(settings.seed)
    live = set(ROLLOUTS)
    counter = 0

    def visit(client: Client, key: str, unit: int, noise: float, now: float) -> None:
        unit_id = f"{key}-user-{unit:07d}"
        answer = client.assign(key, unit_id)
        if answer.in_experiment and answer.variant is not None:
            new, slower = ROLLOUTS[key]
            factor = slower if answer.variant == new else 1.0
            client.track(unit_id, "latency_ms", BASE_LATENCY_MS * factor * noise, timestamp=now)

    hour = 0
    api, monitor, start = run.api, run.monitor, run.start
    with Client(run.url, run.sdk_key, batch_size=500, flush_interval=0.2) as client, \
            ThreadPoolExecutor(max_workers=_THREADS) as pool:  # fmt: skip
        while live and hour < settings.max_hours:
            now = api.set_clock(start + timedelta(hours=hour)).timestamp()
            jobs = []
            for key in sorted(live):
                noise = rng.lognormal(mean=-0.045, sigma=0.3, size=settings.users_per_hour)
                for value in noise:
                    jobs.append(pool.submit(visit, client, key, counter, float(value), now))
                    counter += 1
            for job in jobs:
                job.result()
            if not client.flush(timeout=60):
                raise StoreUnavailable("the client could not deliver every event in time")
            hour += 1
            api.set_clock(start + timedelta(hours=hour))
            report = monitor.run_once()
            monitor.deliver(seconds=5)
            for key, action in sorted(report.actions.items()):
                _said(api, key, action, hour, say)
                if action in ("ship", "roll_back"):
                    live.discard(key)
    return hour


def _said(api: AdminClient, key: str, action: str, hour: int, say: Callable[[str], None]) -> None:
    (check,) = api.rollout(key, limit=1)["checks"]
    when = f"day {hour // 24 + 1} {hour % 24:02d}:00"
    what = {"advance": f"advance to step {check['step'] + 2}", "ship": "ship",
            "roll_back": f"roll back at step {check['step'] + 1}"}[action]  # fmt: skip
    why = check["reasons"][0] if check["reasons"] else ""
    say(f"4. monitor   {when}  {key}: {what} - {why}")


def _report(api: AdminClient, data_dir: Path, receiver: WebhookReceiver, hours: int,
            say: Callable[[str], None]) -> RolloutDemoOutcome:  # fmt: skip
    from analysis.report.rollout_report import write_rollout_report

    time.sleep(0.2)  # a delivery the monitor just sent may still be on its way
    documents = {key: api.rollout(key, limit=2000) for key in ROLLOUTS}
    alerts = [a.to_dict() for a in api.alerts(status="all")]
    for key, document in documents.items():
        say(f"5. result    {key}: {document['status'].replace('_', ' ')} after "
            f"{len(document['checks'])} hourly checks (step {document['step']} of "
            f"{document['steps_total']})")  # fmt: skip
    with receiver.lock:
        deliveries = list(receiver.received)
    for delivery in deliveries:
        say(
            f"6. webhook   received {delivery['body']['text'][:100]}... (signature "
            + ("verified)" if delivery["verified"] else "NOT verified)")
        )
    if not deliveries:
        say("6. webhook   no delivery received")
    experiments = [(api.get_experiment(key).experiment, doc) for key, doc in documents.items()]
    report = write_rollout_report(experiments, alerts, data_dir / "rollout-report.html",
                                  title="abtest demo: guarded rollouts")  # fmt: skip
    summary = data_dir / "rollouts.json"
    summary.write_text(json.dumps({"hours": hours, "rollouts": documents, "alerts": alerts,
                                   "deliveries": deliveries}, indent=2) + "\n",
                       encoding="utf-8")  # fmt: skip
    say(f"7. report    {shown(report)} (each rollout's timeline); {shown(summary)}")
    return RolloutDemoOutcome(
        statuses={k: str(d["status"]) for k, d in documents.items()},
        steps={k: int(d["step"]) for k, d in documents.items()},
        deliveries=deliveries, report=report, summary=summary,
    )  # fmt: skip


__all__ = [
    "ROLLOUTS",
    "RolloutDemoOutcome",
    "RolloutDemoSettings",
    "local_http_server",
    "rollout_experiment",
    "run_rollout_demo",
    "webhook_receiver",
]
