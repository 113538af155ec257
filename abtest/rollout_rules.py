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


__all__ = ["check_rollout_update", "starting_step", "step_fields"]
