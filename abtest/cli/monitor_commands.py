"""``abtest monitor``: the process that runs guarded rollouts and health checks on its own.

Long-running by default (``abtest serve`` starts one beside the service on the embedded
setup); ``--once`` runs one cycle and exits, for cron or a Kubernetes CronJob.  Several may
run against one store: a lease per experiment lets exactly one act on it at a time (see
`service.monitor.runner`).  It finds the store as ``abtest export`` does, and reads the
export directory that ``abtest export`` writes to (``--export-dir``, ``$ABTEST_EXPORT_DIR``,
else ``<data-dir>/export``, where ``abtest serve`` points its results page).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Final

from abtest.cli.store_options import DEFAULT_DATA_DIR, add_store_arguments, choose_store

EXPORT_DIR_ENV: Final = "ABTEST_EXPORT_DIR"
CLOCK_ENV: Final = "ABTEST_CLOCK"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``monitor``."""
    cmd = subparsers.add_parser(
        "monitor", help="run guarded rollouts and health checks (long-running, or --once)",
        description="Check every running, shipped and rolled-back experiment on its schedule: "
        "advance, hold or roll back each guarded rollout, and run the health checks.",
    )  # fmt: skip
    cmd.add_argument("--once", action="store_true", help="one cycle, then exit (cron)")
    cmd.add_argument("--export-dir", metavar="DIR", default=None,
                     help=f"where abtest export writes (default ${EXPORT_DIR_ENV}, else "
                     "DATA_DIR/export)")  # fmt: skip
    cmd.add_argument("--interval", type=float, default=300.0, metavar="SECONDS",
                     help="health checks of experiments without a rollout plan (default 300); "
                     "rollouts follow their plan's check_interval_minutes")  # fmt: skip
    cmd.add_argument("--poll", type=float, default=5.0, metavar="SECONDS",
                     help="how often to look for due checks (default 5)")  # fmt: skip
    cmd.add_argument(
        "--lease-seconds",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long another monitor waits for a silent one (default 60)",
    )
    cmd.add_argument("--observation-hours", type=float, default=None, metavar="HOURS",
                     help="observation window of experiments without a rollout plan "
                     "(default $ABTEST_OBSERVATION_HOURS, else 24)")  # fmt: skip
    cmd.add_argument("--clock", choices=("system", "controlled"), default=None,
                     help=f"controlled: the demo's and tests' clock in Redis (default "
                     f"${CLOCK_ENV}, else system)")  # fmt: skip
    cmd.add_argument("--deliver-seconds", type=float, default=10.0, metavar="SECONDS",
                     help="--once: send the webhook deliveries due for at most this long "
                     "before exiting (default 10; later retries wait for the next run)",
                     )  # fmt: skip
    cmd.add_argument("--json", action="store_true", help="--once: print the cycle as JSON")
    add_store_arguments(cmd, exclusive=True)
    cmd.set_defaults(handler=_monitor)


def _positive(value: float, flag: str) -> None:
    from abtest.cli import UsageError

    if not value > 0:
        raise UsageError(f"{flag} must be > 0, got {value}")


def _monitor(args: argparse.Namespace) -> int:
    import redis

    from abtest.embedded import open_redis
    from abtest.errors import StoreUnavailable
    from abtest.redis_client import connect
    from service.monitor.clock import clock_mode, make_clock
    from service.monitor.runner import Monitor, MonitorSettings

    for value, flag in ((args.interval, "--interval"), (args.poll, "--poll"),
                        (args.lease_seconds, "--lease-seconds")):  # fmt: skip
        _positive(value, flag)
    if not args.deliver_seconds >= 0:
        from abtest.cli import UsageError

        raise UsageError(f"--deliver-seconds must be >= 0, got {args.deliver_seconds}")
    hours = args.observation_hours
    if hours is None:
        hours = float(os.environ.get("ABTEST_OBSERVATION_HOURS") or 24.0)
    _positive(hours, "--observation-hours")
    mode = clock_mode(args.clock or os.environ.get(CLOCK_ENV) or "system")
    store = choose_store(args)
    export_dir = Path(args.export_dir or os.environ.get(EXPORT_DIR_ENV)
                      or Path(args.data_dir or DEFAULT_DATA_DIR) / "export")  # fmt: skip
    settings = MonitorSettings(export_dir=export_dir, interval_seconds=args.interval,
                               poll_seconds=args.poll, lease_seconds=args.lease_seconds,
                               observation_hours=hours)  # fmt: skip
    logging.basicConfig(level=logging.INFO, format="%(asctime)s monitor %(message)s",
                        stream=sys.stderr)  # fmt: skip
    try:
        with open_redis(store.redis_url, store.data_dir) as url:
            client = connect(url, decode_responses=True)
            try:
                monitor = Monitor(client, make_clock(mode, client), settings)
                if args.once:
                    return _once(monitor, as_json=args.json, deliver=args.deliver_seconds)
                _forever(monitor)
                return 0
            finally:
                client.close()
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise StoreUnavailable(f"cannot reach Redis: {exc}") from None


def _once(monitor: Any, *, as_json: bool, deliver: float) -> int:
    try:
        report = monitor.run_once()
        sent = monitor.deliver(seconds=deliver) if deliver > 0 else 0
    finally:
        monitor.close()
    if as_json:
        print(json.dumps({**report.to_dict(), "deliveries_attempted": sent}, sort_keys=True))
    else:
        print(f"checked {len(report.checked)} experiment(s) in {report.seconds:.2f} s"
              + (f"; {len(report.held_elsewhere)} held by another monitor"
                 if report.held_elsewhere else ""))  # fmt: skip
        for key, action in sorted(report.actions.items()):
            print(f"{key}: {action}")
        if sent:
            print(f"{sent} webhook delivery attempt(s)")
        for error in report.errors:
            print(f"error: {error}", file=sys.stderr)
    return 1 if report.errors else 0


def _forever(monitor: Any) -> None:
    stop = threading.Event()

    def stop_on(signum: int, _frame: Any) -> None:
        del signum
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop_on)
    print(f"abtest: monitor {monitor.settings.instance} running (poll every "
          f"{monitor.settings.poll_seconds:g} s, export dir {monitor.settings.export_dir})",
          flush=True)  # fmt: skip
    monitor.run(stop)
