"""A guarded rollout's state in Redis and the actions that move it: start at a step,
advance, ship, roll back, pause, resume; the monitor's lease and its check timeline.

The plan is part of the experiment's config (`abtest.rollout_plan`), and so is the step a
rollout is at: the config's ``traffic`` realises it.  Every action that changes what units
get is a new config version with its audit entry, written by the store's one write path
(`Store._write`: compare-and-set on the version) together with the rollout state
(``abtest:{K}:rollout``) in one script, so the two never disagree.  Pause and resume
change no assignment but are audited the same way (a version whose diff is empty and
whose entry says who paused, when and why).  The monitor's writes carry its lease's
fencing value and are refused once its lease has passed to another monitor (`LeaseLost`);
people's actions (API, CLI, console) need no lease.

Key names and scripts: `abtest.keys` (every key here carries the experiment's hash tag).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from abtest import keys
from abtest.changes import audit_reason
from abtest.errors import Conflict
from abtest.experiment import Experiment, Status
from abtest.redis_client import register_script
from abtest.rollout_plan import RolloutPlan
from abtest.rollout_rules import step_fields

if TYPE_CHECKING:
    from abtest.store import Store, StoredExperiment

MAX_CHECKS: Final = 2_000  # per rollout: about 83 days of hourly checks
MONITOR_KEY_ID: Final = "monitor"  # the audit trail's key id of the monitor's own actions


@dataclass(frozen=True)
class RolloutState:
    """Where a guarded rollout stands (all times in epoch µs of the store's clock).

    ``step``: index into the plan's steps; ``step_started_at`` and ``step_units`` (the
    new variant's exposures when the step began, from the exact counters) measure the
    step's time and units; ``paused*``: a person's hold (the monitor then never
    advances, but still rolls back on harm); ``last_check_at``: the monitor's last check.
    """

    step: int = 0
    step_started_at: int = 0
    step_units: int = 0
    paused: bool = False
    paused_by: str = ""
    paused_at: int = 0
    paused_reason: str = ""
    last_check_at: int = 0
    lease_epoch: int = 0

    @classmethod
    def from_hash(cls, raw: Mapping[str, str]) -> RolloutState:
        """From the state hash (missing fields take their defaults)."""
        return cls(
            step=int(raw.get("step", 0)), step_started_at=int(raw.get("step_started_at", 0)),
            step_units=int(raw.get("step_units", 0)), paused=raw.get("paused") == "1",
            paused_by=raw.get("paused_by", ""), paused_at=int(raw.get("paused_at", 0)),
            paused_reason=raw.get("paused_reason", ""),
            last_check_at=int(raw.get("last_check_at", 0)),
            lease_epoch=int(raw.get("lease_epoch", 0)),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return dict(self.__dict__)


def variant_units(store: Store, experiment: Experiment) -> int:
    """First exposures of the rollout's new variant so far (exact counters)."""
    assert experiment.rollout is not None
    return store.exposure_counts(experiment.key).variants.get(experiment.rollout.variant, 0)


class Rollouts:
    """Reads and actions of guarded rollouts, on top of a `Store` (its write path)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self._lease = register_script(self.redis, keys.LEASE_SCRIPT)
        self._record = register_script(self.redis, keys.RECORD_CHECK_SCRIPT)
        self._release = register_script(self.redis, keys.RELEASE_LOCK_SCRIPT)

    # -- reads ----------------------------------------------------------------------------
    def state(self, key: str) -> RolloutState:
        """The rollout state of ``key`` (defaults when it never started)."""
        return RolloutState.from_hash(self.redis.hgetall(keys.rollout_state(key)))

    def checks(self, key: str, limit: int = MAX_CHECKS) -> list[dict[str, Any]]:
        """The newest ``limit`` check records, oldest first."""
        raw = self.redis.lrange(keys.rollout_checks(key), -max(1, limit), -1)
        return [json.loads(item) for item in raw]

    def planned(self, key: str) -> tuple[StoredExperiment, RolloutPlan]:
        """The stored experiment and its plan; `Conflict` when it has no rollout plan."""
        stored = self.store.get_experiment(key)
        if stored.experiment.rollout is None:
            raise Conflict(f"'{key}' has no rollout plan", "rollout")
        return stored, stored.experiment.rollout

    # -- people's actions -----------------------------------------------------------------
    def pause(self, key: str, *, key_id: str, reason: object = None) -> StoredExperiment:
        """Hold the running rollout at its step: the monitor stops advancing it (it still
        rolls back on harm).  Audited; `Conflict` unless running and not paused."""
        text = audit_reason(reason)
        stored, _ = self.planned(key)
        self._require_running(stored, "pause")
        if self.state(key).paused:
            raise Conflict(f"the rollout of '{key}' is already paused", "rollout")
        fields: dict[str, str | int | float] = {
            "paused": "1", "paused_by": key_id, "paused_at": self.store.now_us(),
            "paused_reason": text or "",
        }  # fmt: skip
        return self.store.write_version(
            stored, stored.experiment, key_id=key_id, action="rollout_pause",
            note={"reason": text} if text else None, rollout_state=fields,
        )  # fmt: skip

    def resume(self, key: str, *, key_id: str, reason: object = None) -> StoredExperiment:
        """Let the monitor advance a paused rollout again.  Audited."""
        text = audit_reason(reason)
        stored, _ = self.planned(key)
        self._require_running(stored, "resume")
        if not self.state(key).paused:
            raise Conflict(f"the rollout of '{key}' is not paused", "rollout")
        return self.store.write_version(
            stored, stored.experiment, key_id=key_id, action="rollout_resume",
            note={"reason": text} if text else None, rollout_state={"paused": "0"},
        )  # fmt: skip

    # -- the monitor's and people's decisions ------------------------------------------------
    def rollback(
        self,
        key: str,
        *,
        key_id: str,
        reason: object = None,
        expected_version: int | None = None,
        fence: str | None = None,
        numbers: Mapping[str, Any] | None = None,
    ) -> StoredExperiment:
        """running (or stopped) -> rolled_back: everyone is served control from now on.

        ``expected_version``: act only on that config version (the one the decision
        read), else `Conflict`; ``fence``: the monitor's lease value; ``numbers``: the
        decision's numbers, kept in the audit entry.
        """
        text = audit_reason(reason)
        stored, _ = self.planned(key)
        self._require_version(stored, expected_version)
        if stored.experiment.status not in (Status.RUNNING, Status.STOPPED):
            raise Conflict(f"cannot roll back a {stored.experiment.status.value} experiment",
                           "status")  # fmt: skip
        new = stored.experiment.with_changes(status=Status.ROLLED_BACK)
        note: dict[str, Any] = {"reason": text} if text else {}
        if numbers is not None:
            note["decision"] = dict(numbers)
        return self.store.write_version(
            stored, new, key_id=key_id, action="rollback", note=note or None,
            rollout_state={"paused": "0"}, fence=fence,
        )  # fmt: skip

    def advance(
        self,
        key: str,
        *,
        expected_version: int,
        fence: str | None,
        numbers: Mapping[str, Any],
        key_id: str = MONITOR_KEY_ID,
    ) -> StoredExperiment:
        """Move the running rollout to its next step (the last one ships the new variant).

        Only from ``expected_version`` (the config the decision read), else `Conflict`.
        """
        stored, plan = self.planned(key)
        self._require_version(stored, expected_version)
        self._require_running(stored, "advance")
        experiment = stored.experiment
        step = self.state(key).step + 1
        if step > plan.last_step:
            raise Conflict(f"the rollout of '{key}' is past its last step", "rollout")
        fields = step_fields(step, self.store.now_us(), variant_units(self.store, experiment))
        note: dict[str, Any] = {"decision": dict(numbers),
                                "rollout": {"step": step, "share": plan.steps[step]}}  # fmt: skip
        if step == plan.last_step:
            new = experiment.with_changes(status=Status.SHIPPED, winner=plan.variant)
            note["reason"] = (f"guarded rollout complete: every step passed its checks, "
                              f"'{plan.variant}' ships to everyone")  # fmt: skip
            action = "ship"
        else:
            share = experiment.weights[plan.variant]
            new = experiment.with_changes(traffic=plan.traffic(step, share))
            action = "rollout_advance"
        return self.store.write_version(
            stored, new, key_id=key_id, action=action, note=note, rollout_state=fields,
            fence=fence,
        )  # fmt: skip

    # -- the monitor's lease and timeline ------------------------------------------------------
    def acquire_lease(self, key: str, token: str, ttl_ms: int) -> str | None:
        """Take or renew the monitor lease of ``key``: its fencing value, or None when
        another monitor holds it."""
        epoch = int(self._lease(keys=[keys.monitor_lease(key), keys.rollout_state(key)],
                                args=[token, ttl_ms]))  # fmt: skip
        return f"{token}:{epoch}" if epoch else None

    def release_lease(self, key: str, fence: str) -> None:
        """Give the lease up (only while it still holds ``fence``)."""
        self._release(keys=[keys.monitor_lease(key)], args=[fence])

    def record_check(
        self,
        key: str,
        record: Mapping[str, Any],
        *,
        fence: str,
        state: Mapping[str, str | int | float] | None = None,
    ) -> bool:
        """Append one check to the bounded timeline (and set ``state`` fields) while the
        lease holds ``fence``; False when it does not."""
        pairs = [item for pair in (state or {}).items() for item in pair]
        written = self._record(
            keys=[keys.monitor_lease(key), keys.rollout_checks(key), keys.rollout_state(key)],
            args=[fence, json.dumps(record, allow_nan=False), MAX_CHECKS, *pairs],
        )  # fmt: skip
        return int(written) == 1

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _require_running(stored: StoredExperiment, action: str) -> None:
        status = stored.experiment.status
        if status is not Status.RUNNING:
            raise Conflict(f"cannot {action} the rollout of a {status.value} experiment",
                           "status")  # fmt: skip

    @staticmethod
    def _require_version(stored: StoredExperiment, expected: int | None) -> None:
        if expected is not None and stored.version != expected:
            raise Conflict(f"'{stored.experiment.key}' changed since the check read it "
                           f"(version {expected}, now {stored.version})", "version")  # fmt: skip


__all__ = ["MAX_CHECKS", "MONITOR_KEY_ID", "RolloutState", "Rollouts", "variant_units"]
