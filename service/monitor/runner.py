"""The monitor: a loop (or one pass, ``--once``) that checks every live experiment when its
check is due, holding a lease on each one it checks.

One cycle:

1. the experiments to watch: running, shipped and rolled back (health checks), and among
   them the running ones with a rollout plan (the rollout decision).  One is *due* when
   its last check is at least its interval old on the monitor's clock: the plan's
   ``check_interval_minutes`` (the last check time is in the rollout state, so a monitor
   that takes over keeps the schedule), else ``interval_seconds`` (health checks only);
2. the monitor lease of each due experiment (`abtest.rollout_store.Rollouts.acquire_lease`:
   ``SET NX PX`` with a fencing epoch).  Another monitor's lease means that one checks it:
   it is skipped.  So several monitors may run; exactly one acts on an experiment at a
   time, and when one dies its leases expire after ``lease_seconds`` and another takes
   its experiments over;
3. the exposure counters, then the data (`service.monitor.data.MonitorReader`: one read of
   the streams and the export files for all experiments of the cycle);
4. per experiment, with the lease renewed: the rollout check (`service.monitor.rollout`)
   and the registered checks (`service.monitor.checks`: the health monitors);
5. the heartbeat (`service.monitor.heartbeat`), which ``/healthz`` and ``/metrics`` read.

The alerts the checks raise are queued for the webhooks in Redis; a long-running monitor
sends them from a thread (`service.monitor.webhooks.WebhookSender`), a one-shot run drains
what is due for a bounded time before it exits (`Monitor.deliver`).

A failure in one experiment's check is logged and reported, and never stops the others; a
failed cycle (Redis down) is retried at the next poll.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from abtest.experiment import Status
from abtest.rollout_store import Rollouts
from abtest.store import Store, StoredExperiment
from service.monitor import checks
from service.monitor.clock import Clock, from_us, to_us
from service.monitor.data import MonitorReader
from service.monitor.heartbeat import remove_heartbeat, write_heartbeat
from service.monitor.rollout import check_rollout
from service.monitor.webhooks import Webhooks, WebhookSender

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

WATCHED: Final = (Status.RUNNING, Status.SHIPPED, Status.ROLLED_BACK)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorSettings:
    """How a monitor runs.

    ``interval_seconds``: time between health checks of an experiment without a rollout
    plan; ``poll_seconds``: how often the loop looks for due checks (wall clock);
    ``lease_seconds``: how long a lease outlives a silent monitor; ``observation_hours``:
    the observation window of experiments without a plan (the service's
    ``OBSERVATION_HOURS``); ``export_dir``: where ``abtest export`` writes (None: Redis
    only, see `service.monitor.data`).
    """

    export_dir: Path | None = None
    interval_seconds: float = 300.0
    poll_seconds: float = 5.0
    lease_seconds: float = 60.0
    observation_hours: float = 24.0
    instance: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    )


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did: experiments checked, those another monitor holds, the rollout
    actions written (experiment -> action), errors (one line each) and its duration."""

    checked: tuple[str, ...] = ()
    held_elsewhere: tuple[str, ...] = ()
    actions: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {"checked": list(self.checked), "held_elsewhere": list(self.held_elsewhere),
                "actions": self.actions, "errors": list(self.errors),
                "seconds": round(self.seconds, 3)}  # fmt: skip


class Monitor:
    """Checks experiments on their schedule (module docstring); thread-safe to stop."""

    def __init__(
        self, client: RedisClient, clock: Clock, settings: MonitorSettings | None = None
    ) -> None:
        self.redis = client
        self.clock = clock
        self.settings = settings or MonitorSettings()
        self.store = Store(client, now_us=lambda: to_us(clock.now()))
        self.rollouts = Rollouts(self.store)
        self.reader = MonitorReader(client, self.settings.export_dir)
        self.webhooks = Webhooks(client)
        self.plugins = checks.load_plugins()
        self._health_checked: dict[str, datetime] = {}
        self._held: dict[str, str] = {}  # experiment -> fence of the leases this monitor holds
        self._started = time.time()
        self._last_success: float | None = None

    # -- one cycle --------------------------------------------------------------------------
    def due(self, stored: StoredExperiment, now: datetime) -> bool:
        """Whether ``stored``'s check is due at ``now`` (module docstring, step 1)."""
        experiment = stored.experiment
        if experiment.rollout is not None and experiment.status is Status.RUNNING:
            last_us = self.rollouts.state(experiment.key).last_check_at
            interval = timedelta(minutes=experiment.rollout.check_interval_minutes)
            return not last_us or now - from_us(last_us) >= interval
        last = self._health_checked.get(experiment.key)
        return last is None or now - last >= timedelta(seconds=self.settings.interval_seconds)

    def run_once(self, *, experiments: set[str] | None = None) -> CycleReport:
        """One cycle (module docstring); ``experiments`` restricts it to those keys."""
        started = time.monotonic()
        now = self.clock.now()
        watched = [s for s in self.store.list_experiments()
                   if s.experiment.status in WATCHED
                   and (experiments is None or s.experiment.key in experiments)]  # fmt: skip
        due = [s for s in watched if self.due(s, now)]
        held, elsewhere = [], []
        ttl = int(self.settings.lease_seconds * 1000)
        for stored in due:
            fence = self.rollouts.acquire_lease(stored.experiment.key, self.settings.instance, ttl)
            if fence is None:
                elsewhere.append(stored.experiment.key)
                self._held.pop(stored.experiment.key, None)
            else:
                held.append(stored)
                self._held[stored.experiment.key] = fence
        errors: list[str] = []
        actions: dict[str, str] = {}
        if held:
            # Counters first: they bound what the data read next can hold (completeness).
            counts = {s.experiment.key: self.store.exposure_counts(s.experiment.key)
                      for s in held}  # fmt: skip
            window = timedelta(hours=self.settings.observation_hours)
            data = self.reader.read(held, counts=counts, now=now, default_window=window)
            for stored in held:
                key = stored.experiment.key
                fence = self.rollouts.acquire_lease(key, self.settings.instance, ttl)
                if fence is None:  # lost while reading: the new holder checks it
                    elsewhere.append(key)
                    self._held.pop(key, None)
                    continue
                self._held[key] = fence
                try:
                    action = self._check(stored, data[key], fence, now)
                except Exception as exc:  # one experiment's failure must not stop the rest
                    _log.exception("monitor check of %s failed", key)
                    errors.append(f"{key}: {exc}")
                    continue
                if action:
                    actions[key] = action
        report = CycleReport(tuple(s.experiment.key for s in held), tuple(elsewhere), actions,
                             tuple(errors), time.monotonic() - started)  # fmt: skip
        self._beat(report, now)
        return report

    def _check(self, stored: StoredExperiment, data: Any, fence: str, now: datetime) -> str:
        experiment = stored.experiment
        action = ""
        if experiment.rollout is not None and experiment.status is Status.RUNNING:
            result = check_rollout(self.rollouts, data, self.clock, fence=fence,
                                   monitor=f"monitor:{self.settings.instance}")  # fmt: skip
            if result is None:  # the lease passed to another monitor: it checks this one
                return ""
            if result.acted:
                action = "ship" if result.decision.ship else result.decision.action.value
            elif result.error:  # a person changed it meanwhile; the next check decides again
                _log.warning("rollout %s: %s not taken: %s", experiment.key,
                             result.decision.action.value, result.error)  # fmt: skip
        for error in checks.run_checks(self.store, self.redis, experiment, data, self.clock):
            raise RuntimeError(error)
        self._health_checked[experiment.key] = now
        return action

    def _beat(self, report: CycleReport, now: datetime) -> None:
        wall = time.time()
        if not report.errors:
            self._last_success = wall
        write_heartbeat(self.redis, self.settings.instance, {
            "started": self._started, "last_cycle": wall, "last_success": self._last_success,
            "last_error": report.errors[0] if report.errors else None,
            "checked": list(report.checked), "clock": now.isoformat(), "pid": os.getpid(),
            "plugins": self.plugins, "poll": self.settings.poll_seconds,
        })  # fmt: skip

    def deliver(self, *, seconds: float) -> int:
        """Send the webhook deliveries that are due, for at most ``seconds`` (a one-shot
        run: retries scheduled later wait in the outbox for the next run); the attempts."""
        return self.webhooks.send_pending(seconds=seconds)

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Cycle every ``poll_seconds`` until ``stop`` is set, then release the leases;
        webhook deliveries go out from a thread meanwhile."""
        sender = WebhookSender(self.webhooks).start()
        try:
            while not stop.is_set():
                try:
                    report = self.run_once()
                except Exception:  # Redis away, say: log it and try again at the next poll
                    _log.exception("monitor cycle failed")
                else:
                    for key, action in report.actions.items():
                        _log.warning("rollout %s: %s", key, action)
                stop.wait(self.settings.poll_seconds)
        finally:
            sender.stop(timeout=self.webhooks.policy.timeout + 1)
            self.close()

    def close(self) -> None:
        """Give up every lease this monitor holds (a replacement takes over at once)."""
        for key, fence in list(self._held.items()):
            try:
                self.rollouts.release_lease(key, fence)
            except Exception:  # best effort on the way out; leases expire anyway
                _log.warning("could not release the lease of %s", key)
        self._held.clear()
        try:
            remove_heartbeat(self.redis, self.settings.instance)
        except Exception:  # best effort on the way out
            _log.warning("could not remove the heartbeat of %s", self.settings.instance)


__all__ = ["WATCHED", "CycleReport", "Monitor", "MonitorSettings"]
