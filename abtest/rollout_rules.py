"""What the store's lifecycle changes mean for a guarded rollout. Pure.

`starting_step`: where a start puts the rollout; `check_rollout_update`: what a new version
may not change while the rollout runs.  The rollout's state and actions are
`abtest.rollout_store`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from abtest.errors import Conflict, InvalidConfig
from abtest.experiment import Experiment, Status


def step_fields(step: int, started_at: int, units: int) -> dict[str, str | int | float]:
    """Rollout state fields of a rollout that begins ``step`` at ``started_at`` (epoch µs)
    when the new variant has ``units`` first exposures."""
    return {"step": step, "step_started_at": started_at, "step_units": units}


def starting_step(
    status: Status, new: Experiment, *, units: int, now_us: int
) -> tuple[Experiment, dict[str, str | int | float]]:
    """The experiment and rollout state a start from ``status`` gives.

    A draft begins at the first step; a stopped rollout resumes at the step its traffic
    realises, or else at the first step that does not lower its traffic (lowering it
    would take assigned units out).
    """
    plan = new.rollout
    assert plan is not None
    share = new.weights[plan.variant]
    step = 0
    if status is Status.STOPPED:
        found = plan.step_of(new.traffic, share)
        if found is None:
            found = next(
                (i for i in range(plan.last_step) if plan.traffic(i, share) >= new.traffic),
                max(plan.last_step - 1, 0),
            )
        step = found
    fields = {**step_fields(step, now_us, units), "paused": "0"}
    return new.with_changes(traffic=plan.traffic(step, share)), fields


def check_rollout_update(old: Experiment, config: Mapping[str, Any]) -> None:
    """`Conflict` when a new version would change what a running rollout owns: its traffic
    (the monitor moves it step by step) or its plan (stop the experiment to change it)."""
    assert old.rollout is not None
    if "traffic" in config and config["traffic"] != old.traffic:
        raise Conflict("the guarded rollout sets traffic step by step; send the current "
                       f"traffic ({old.traffic}) or leave it out", "traffic")  # fmt: skip
    plan = config.get("rollout")
    same = False
    if plan is not None:
        try:
            same = Experiment.from_dict({**old.to_dict(), "rollout": plan}).rollout == old.rollout
        except InvalidConfig:
            same = False
    if not same:
        raise Conflict("the rollout plan cannot change while the rollout runs; stop the "
                       "experiment first (or roll back)", "rollout")  # fmt: skip


def plan_steps(experiment: Experiment) -> list[dict[str, Any]]:
    """Each step of the rollout: its number, share of the new variant, the experiment's
    traffic that realises it, and whether it ships (for `plan_lines` and the console)."""
    plan = experiment.rollout
    assert plan is not None
    share = experiment.weights[plan.variant]
    return [{"step": i + 1, "share": step, "traffic": plan.traffic(i, share),
             "ship": i == plan.last_step} for i, step in enumerate(plan.steps)]  # fmt: skip


def plan_lines(experiment: Experiment) -> list[str]:
    """The rollout plan in words, one line each (``abtest validate`` prints them)."""
    plan = experiment.rollout
    assert plan is not None
    lines = [f"guarded rollout of '{plan.variant}' against '{experiment.control}': checks "
             f"every {plan.check_interval_minutes:g} min, alpha {plan.alpha:g}"]  # fmt: skip
    for step in plan_steps(experiment):
        if step["ship"]:
            lines.append(f"  step {step['step']}  100%  ship '{plan.variant}' to everyone")
            continue
        lines.append(
            f"  step {step['step']}  {step['share']:>5.1%} of units get '{plan.variant}' "
            f"(traffic {step['traffic']:.1%}); advance after >= {plan.min_hours_per_step:g} h "
            f"and >= {plan.min_units_per_step:,} new units of '{plan.variant}'"
        )
    margins = {m.name: m for m in experiment.guardrail_metrics}
    for name in plan.guardrails:
        metric = margins[name]
        worse = "lower" if metric.higher_is_better else "higher"
        lines.append(f"  guardrail {name}: rolls back when {worse} in '{plan.variant}' "
                     f"(always-valid, Holm); planned regression {metric.margin:.3g} "
                     "(relative)")  # fmt: skip
    lines.append(f"  each unit is observed for {plan.observation_hours:g} h after its exposure"
                 + ("; shipping needs every guardrail shown within its margin"
                    if plan.ship_requires_non_inferiority else ""))  # fmt: skip
    return lines


__all__ = ["check_rollout_update", "plan_lines", "plan_steps", "starting_step", "step_fields"]
