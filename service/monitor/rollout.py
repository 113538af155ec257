"""One check of one guarded rollout: read where it stands, decide, act, record.

`check_rollout` is what the monitor runs for each running experiment with a rollout plan
whose lease it holds:

1. the step's age and new units (the rollout state, the store's exact counters, the
   monitor's clock), the guardrails' looks (`analysis.decision.rollout_looks`) from the
   check's `MonitorData`;
2. the decision (`analysis.decision.rollout.decide_rollout`);
3. an advance, a ship or a roll back is written through `abtest.rollout_store.Rollouts`:
   a config version with its audit entry holding the decision's numbers, only if the
   config is still the version the check read and the monitor still holds its lease;
4. every check, acting or not, is appended to the rollout's bounded timeline (what the
   console and ``GET /v1/experiments/{key}/rollout`` show), fenced by the lease too;
5. the registered decision hooks (`service.monitor.checks`) learn of each action (the
   alerts raise "rolled back" and notify).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from abtest.errors import Conflict
from abtest.rollout_store import MONITOR_KEY_ID, Rollouts
from abtest.store import LeaseLost
from analysis.decision.rollout import Action, RolloutDecision, StepProgress, decide_rollout
from analysis.decision.rollout_looks import GuardrailSeries, guardrail_looks
from service.monitor.checks import run_decision_hooks
from service.monitor.clock import Clock, from_us, to_us

if TYPE_CHECKING:
    from service.monitor.data import MonitorData

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """What one rollout check did: the decision, whether it was written (``acted``), the
    config version after it, and why an action was not taken (``error``)."""

    decision: RolloutDecision
    acted: bool
    version: int
    record: dict[str, Any] = field(compare=False)
    error: str = ""


def _series(series: list[GuardrailSeries]) -> dict[str, Any]:
    """The per-day cumulative effect of each guardrail (for the timeline's chart)."""
    return {s.metric.name: [{"day": day, "estimate": e.absolute_effect,
                             "se": e.absolute_se, "n_control": e.n_control,
                             "n_variant": e.n_variant, "control_mean": e.control_mean}
                            for day, e in zip(s.days, s.effects, strict=True)]
            for s in series}  # fmt: skip


def check_rollout(
    rollouts: Rollouts,
    data: MonitorData,
    clock: Clock,
    *,
    fence: str,
    monitor: str = MONITOR_KEY_ID,
) -> CheckResult | None:
    """Decide and act on one rollout (module docstring); None when the lease was lost
    (another monitor acts on it now)."""
    stored = data.stored
    experiment = stored.experiment
    plan = experiment.rollout
    assert plan is not None
    state = rollouts.state(experiment.key)
    now = clock.now()
    hours = max(0.0, (now - from_us(state.step_started_at)).total_seconds() / 3600)
    units = max(0, data.counts.variants.get(plan.variant, 0) - state.step_units)
    progress = StepProgress(
        step=state.step, hours=hours, units=units, paused=state.paused,
        paused_by=state.paused_by, complete=data.complete, incomplete=data.incomplete_reason,
    )  # fmt: skip
    looks, series = guardrail_looks(data.aggregates, experiment, note=data.note)
    decision = decide_rollout(plan, progress, looks)
    version, acted, error = stored.version, False, ""
    numbers = {**decision.numbers, "checked_at": now.isoformat(), "monitor": monitor}
    if decision.action is not Action.HOLD:
        try:
            if decision.action is Action.ROLL_BACK:
                after = rollouts.rollback(
                    experiment.key, key_id=monitor, expected_version=stored.version,
                    fence=fence, numbers=numbers,
                    reason="guarded rollout: " + "; ".join(decision.reasons),
                )  # fmt: skip
            else:
                after = rollouts.advance(experiment.key, expected_version=stored.version,
                                         fence=fence, numbers=numbers, key_id=monitor)  # fmt: skip
        except LeaseLost:
            return None
        except Conflict as exc:  # changed meanwhile (a person acted): the next check decides
            error = exc.message
        else:
            version, acted = after.version, True
    record = {
        "time": now.isoformat(), "time_us": to_us(now), "version": version,
        "read_version": stored.version, **decision.to_dict(), "numbers": numbers,
        "acted": acted, "error": error, "series": _series(series),
    }  # fmt: skip
    if not rollouts.record_check(experiment.key, record, fence=fence,
                                 state={"last_check_at": to_us(now)}):  # fmt: skip
        return None
    if acted:
        run_decision_hooks(rollouts.store, rollouts.redis, experiment, decision, clock)
        _log.info("rollout %s: %s at step %d", experiment.key, decision.action.value,
                  decision.step + 1)  # fmt: skip
    return CheckResult(decision, acted, version, record, error)


__all__ = ["CheckResult", "check_rollout"]
