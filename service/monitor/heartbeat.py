"""Whether the monitor is alive: each monitor's heartbeat in Redis, and the summary that
``/healthz`` and ``/metrics`` show.

Every monitor writes one JSON entry per cycle into `abtest.keys.monitor_instances`:
``started``, ``last_cycle``, ``last_success`` (wall-clock epoch seconds: liveness is about
real time, whatever clock the checks use), ``last_error``, ``poll`` (its seconds between
cycles), the experiments it checked and its clock's time.  A monitor is *stale* when its
last successful cycle (or its start, before one) is older than ten of its polls and at
least `STALE_AFTER_SECONDS`; a rollout is *overdue* when its last check (on the
monitor's clock) is older than three of its check intervals.  Either means the monitor is stuck or
dead, and both show in ``/healthz`` (as detail: the service itself is fine) and as
Prometheus gauges.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from abtest import keys
from abtest.experiment import Status
from service.monitor.clock import from_us

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient
    from abtest.rollout_store import Rollouts
    from abtest.store import StoredExperiment

STALE_AFTER_SECONDS: Final = 120.0
STALE_POLLS: Final = 10
FORGET_AFTER_SECONDS: Final = 86_400.0  # a monitor silent for a day is dropped from the list
OVERDUE_INTERVALS: Final = 3


def write_heartbeat(client: RedisClient, instance: str, entry: dict[str, Any]) -> None:
    """Store ``instance``'s heartbeat; forget monitors silent for `FORGET_AFTER_SECONDS`."""
    client.hset(keys.monitor_instances(), instance, json.dumps(entry, allow_nan=False))
    cutoff = time.time() - FORGET_AFTER_SECONDS
    gone = [name for name, beat in heartbeats(client).items()
            if float(beat.get("last_cycle", 0)) < cutoff]  # fmt: skip
    if gone:
        client.hdel(keys.monitor_instances(), *gone)


def remove_heartbeat(client: RedisClient, instance: str) -> None:
    """Forget ``instance`` (it stopped cleanly)."""
    client.hdel(keys.monitor_instances(), instance)


def heartbeats(client: RedisClient) -> dict[str, dict[str, Any]]:
    """Every monitor's last heartbeat by instance id."""
    found = {}
    for name, raw in client.hgetall(keys.monitor_instances()).items():
        try:
            found[name] = json.loads(raw)
        except ValueError:
            continue
    return found


def is_stale(beat: dict[str, Any], now: float | None = None) -> bool:
    """Whether a heartbeat says its monitor is stuck or dead (module docstring)."""
    wall = time.time() if now is None else now
    limit = max(STALE_AFTER_SECONDS, STALE_POLLS * float(beat.get("poll") or 0))
    last = float(beat.get("last_success") or beat.get("started") or 0)
    return wall - last > limit


def rollout_checks(
    rollouts: Rollouts, experiments: Sequence[StoredExperiment], now: datetime
) -> list[dict[str, Any]]:
    """Each running rollout: step, share, last check and whether it is overdue."""
    out = []
    for stored in experiments:
        experiment = stored.experiment
        plan = experiment.rollout
        if plan is None or experiment.status is not Status.RUNNING:
            continue
        state = rollouts.state(experiment.key)
        last = state.last_check_at or state.step_started_at
        age = (now - from_us(last)).total_seconds() if last else None
        overdue = age is None or age > OVERDUE_INTERVALS * 60 * plan.check_interval_minutes
        out.append({"experiment": experiment.key, "step": state.step + 1,
                    "share": plan.steps[state.step], "paused": state.paused,
                    "last_check_at": from_us(state.last_check_at).isoformat()
                    if state.last_check_at else None,
                    "overdue": overdue})  # fmt: skip
    return out


def monitor_health(
    client: RedisClient, rollouts: Rollouts, experiments: Sequence[StoredExperiment],
    now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """The monitor's part of ``/healthz``: ``ok``, ``stale`` (no monitor succeeded lately,
    or a rollout is overdue) or ``none`` (no monitor ever ran, and no rollout runs)."""
    beats = heartbeats(client)
    instances = [{"id": name, **beat, "stale": is_stale(beat)}
                 for name, beat in sorted(beats.items())]  # fmt: skip
    running = rollout_checks(rollouts, experiments, now)
    alive = any(not i["stale"] for i in instances)
    if not instances and not running:
        status = "none"
    elif alive and not any(r["overdue"] for r in running):
        status = "ok"
    else:
        status = "stale"
    last = max((float(i.get("last_success") or 0) for i in instances), default=0.0)
    return {"status": status, "last_success": last or None, "instances": instances,
            "rollouts": running}  # fmt: skip


__all__ = [
    "STALE_AFTER_SECONDS",
    "heartbeats",
    "is_stale",
    "monitor_health",
    "remove_heartbeat",
    "rollout_checks",
    "write_heartbeat",
]
