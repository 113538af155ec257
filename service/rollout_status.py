"""A guarded rollout as ``GET /v1/experiments/{key}/rollout`` and the console show it.

Gathered from the store (no Flask): the plan, where the rollout stands, each step with when
it began (from the audit trail, the one record of every action), the actions with who took
them, and the monitor's newest checks with the numbers behind each decision.  Times are
ISO 8601 in UTC on the store's clock (the controlled clock in demo and test mode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from abtest.experiment import Status
from abtest.rollout_rules import plan_steps
from abtest.rollout_store import MAX_CHECKS, Rollouts
from service.monitor.clock import from_us

DEFAULT_CHECKS: Final = 200
ROLLOUT_ACTIONS: Final = ("start", "rollout_advance", "ship", "rollback", "rollout_pause",
                          "rollout_resume", "stop")  # fmt: skip


def _iso(epoch_us: int) -> str | None:
    return from_us(epoch_us).isoformat() if epoch_us else None


def _actions(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"version": h["version"], "time": h["time"], "action": h["action"],
             "key_id": h["key_id"], "reason": h.get("reason"),
             "step": (h.get("rollout") or {}).get("step")}
            for h in history if h.get("action") in ROLLOUT_ACTIONS]  # fmt: skip


def _step_state(index: int, current: int, status: Status) -> str:
    """passed, current, pending; or shipped, rolled back, not reached, stopped."""
    if status is Status.DRAFT:
        return "pending"
    if index < current:
        return "passed"
    if index > current:
        return "not reached" if status is Status.ROLLED_BACK else "pending"
    return {Status.SHIPPED: "shipped", Status.ROLLED_BACK: "rolled back",
            Status.STOPPED: "stopped"}.get(status, "current")  # fmt: skip


def _status(status: Status, paused: bool) -> str:
    if status is Status.RUNNING:
        return "paused" if paused else "running"
    return status.value


def rollout_document(
    rollouts: Rollouts, key: str, *, limit: int = DEFAULT_CHECKS
) -> dict[str, Any]:
    """Everything about one rollout (module docstring); `Conflict` when ``key`` has no plan.

    ``limit``: how many of the newest checks to include (the timeline keeps
    `abtest.rollout_store.MAX_CHECKS`).
    """
    stored, plan = rollouts.planned(key)
    experiment = stored.experiment
    state = rollouts.state(key)
    actions = _actions(rollouts.store.history(key))
    steps = plan_steps(experiment)
    entered: dict[int, str] = {}
    for action in actions:
        if action["action"] == "start" and 1 not in entered:
            entered[1] = action["time"]
        elif action["action"] in ("rollout_advance", "ship") and action["step"] is not None:
            entered[int(action["step"]) + 1] = action["time"]
    status = experiment.status
    current = plan.last_step if status is Status.SHIPPED else state.step
    for index, step in enumerate(steps):
        step["entered_at"] = entered.get(index + 1)
        step["state"] = _step_state(index, current, status)
    checks = rollouts.checks(key, max(1, min(limit, MAX_CHECKS)))
    share = {Status.SHIPPED: 1.0, Status.ROLLED_BACK: 0.0}.get(status, plan.steps[current])
    return {
        "experiment": key,
        "version": stored.version,
        "status": _status(status, state.paused),
        "variant": plan.variant,
        "control": experiment.control,
        "step": current + 1,
        "steps_total": len(plan.steps),
        "share": share,
        "traffic": experiment.traffic,
        "paused": state.paused and status is Status.RUNNING,
        "paused_by": state.paused_by or None,
        "paused_at": _iso(state.paused_at),
        "paused_reason": state.paused_reason or None,
        "step_started_at": _iso(state.step_started_at),
        "last_check_at": _iso(state.last_check_at),
        "plan": plan.to_dict(),
        "steps": steps,
        "actions": actions,
        "checks": checks,
    }


__all__ = ["DEFAULT_CHECKS", "MAX_CHECKS", "rollout_document"]
