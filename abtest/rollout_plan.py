"""The rollout plan of a guarded rollout: steps, their minimums, the checks and the guardrails.

Pure: parsing and validation only (the monitor in ``service.monitor`` runs the plan, the
decision is `analysis.decision.rollout`).

Traffic semantics.  A *step* is the share of all eligible units that are served the new
variant.  It is realised through the experiment's monotone ``traffic`` ramp with the
variant weights fixed: ``traffic = step / w`` where ``w`` is the new variant's normalised
weight.  A unit included at a lower traffic stays included at a higher one and keeps its
sticky variant, so advancing a step never moves a unit; units outside the traffic get the
app's default (``not_in_traffic``) and are not exposures.  With weights 50/50, the step
1% puts 2% of the units in the experiment: 1% get the new variant, 1% get control and are
the comparison group.  Keeping the weights fixed keeps the split between the arms the same
at every step, so a trend over time (a weekday, a marketing push) hits both arms alike and
the cumulative comparison stays unbiased; changing the weights instead would confound the
variant with the time a unit arrived.  Hence every step below 100% must be at most ``w``
(traffic at most 1), and the last step is 100%: reaching it ships the new variant
(status ``shipped``, winner the new variant).

The guardrails are guardrail metrics of the experiment; each needs a ``margin`` (> 0), the
relative regression the rollout is planned to catch (it fixes the always-valid test's
mixing prior in advance) and, when shipping requires it, the largest harm that may ship.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from abtest.errors import Problem

DEFAULT_STEPS: Final = (0.01, 0.05, 0.25, 0.5, 1.0)
_TOLERANCE: Final = 1e-9
_FIELDS: Final = (
    "variant", "steps", "min_hours_per_step", "min_units_per_step", "check_interval_minutes",
    "guardrails", "alpha", "observation_hours", "ship_requires_non_inferiority",
)  # fmt: skip


@dataclass(frozen=True)
class RolloutPlan:
    """How a new variant goes out: see the module docstring for the traffic semantics.

    Parameters
    ----------
    variant : str
        The new variant's key (default: the experiment's one non-control variant).
    steps : tuple of float
        Shares of all eligible units served the new variant, strictly increasing in
        (0, 1]; the last is 1.0 (ship).
    min_hours_per_step : float
        The monitor never advances a step before it has lasted this long.
    min_units_per_step : int
        Nor before this many units were first exposed to the new variant during it.
    check_interval_minutes : float
        Time between two checks of the monitor.
    guardrails : tuple of str
        Names of the guardrail metrics the rollout watches (default: all of them).
    alpha : float
        Bound on the chance that the rollout rolls back a variant that harms no guardrail
        (over all checks and guardrails together), and on the chance that it ships one
        that harms a guardrail by its margin or more when ``ship_requires_non_inferiority``.
    observation_hours : float
        Each unit enters the tests once this long has passed since its first exposure,
        with the value of its events over that span (one fixed quantity per unit).
    ship_requires_non_inferiority : bool
        The last advance (to 100%: shipping) also needs every guardrail shown to be
        within its margin by the always-valid non-inferiority test.
    """

    variant: str = ""
    steps: tuple[float, ...] = DEFAULT_STEPS
    min_hours_per_step: float = 24.0
    min_units_per_step: int = 1000
    check_interval_minutes: float = 60.0
    guardrails: tuple[str, ...] = ()
    alpha: float = 0.05
    observation_hours: float = 1.0
    ship_requires_non_inferiority: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON; `parse_rollout_plan` restores an equal plan."""
        return {
            "variant": self.variant,
            "steps": list(self.steps),
            "min_hours_per_step": self.min_hours_per_step,
            "min_units_per_step": self.min_units_per_step,
            "check_interval_minutes": self.check_interval_minutes,
            "guardrails": list(self.guardrails),
            "alpha": self.alpha,
            "observation_hours": self.observation_hours,
            "ship_requires_non_inferiority": self.ship_requires_non_inferiority,
        }

    @property
    def last_step(self) -> int:
        """Index of the last step (reaching it ships)."""
        return len(self.steps) - 1

    def traffic(self, step: int, variant_share: float) -> float:
        """The experiment ``traffic`` that serves ``steps[step]`` to the new variant, whose
        normalised weight is ``variant_share`` (1.0 for the last step: everyone)."""
        if step >= self.last_step:
            return 1.0
        return min(1.0, self.steps[step] / variant_share)

    def step_of(self, traffic: float, variant_share: float) -> int | None:
        """The step a ``traffic`` value realises, or None when it is none of them."""
        share = traffic * variant_share
        for index, step in enumerate(self.steps[:-1]):
            if math.isclose(share, step, rel_tol=1e-6, abs_tol=_TOLERANCE):
                return index
        return None


def parse_rollout_plan(value: object, problems: list[Problem]) -> RolloutPlan | None:
    """The plan in ``value`` (JSON form), or None after appending its problems.

    Only the plan's own shape is checked here; the rules that relate it to the rest of the
    experiment (its variants and guardrails) are `rollout_plan_problems`.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        problems.append(Problem("rollout", "must be an object (see the README's rollout plan)"))
        return None
    count = len(problems)
    problems.extend(Problem(f"rollout.{name}", "unknown field") for name in value
                    if name not in _FIELDS)  # fmt: skip
    defaults = RolloutPlan()
    variant = value.get("variant", "")
    if not isinstance(variant, str):
        problems.append(Problem("rollout.variant", "must be a variant key"))
    steps = _steps(value.get("steps", list(defaults.steps)), problems)
    numbers = {}
    for name, positive in (("min_hours_per_step", False), ("check_interval_minutes", True),
                           ("observation_hours", True)):  # fmt: skip
        raw = value.get(name, getattr(defaults, name))
        if not _is_number(raw) or raw < 0 or (positive and raw == 0):
            problems.append(Problem(f"rollout.{name}", "must be a number > 0" if positive
                                    else "must be a number >= 0"))  # fmt: skip
        else:
            numbers[name] = float(raw)
    units = value.get("min_units_per_step", defaults.min_units_per_step)
    if isinstance(units, float) and units.is_integer():
        units = int(units)  # JSON has one number type: 1000.0 is the integer 1000
    if isinstance(units, bool) or not isinstance(units, int) or units < 0:
        problems.append(Problem("rollout.min_units_per_step", "must be an integer >= 0"))
    alpha = value.get("alpha", defaults.alpha)
    if not _is_number(alpha) or not 0 < alpha <= 0.5:
        problems.append(Problem("rollout.alpha", "must be a number in (0, 0.5], e.g. 0.05"))
    guardrails = value.get("guardrails", [])
    if not isinstance(guardrails, list) or not all(isinstance(g, str) for g in guardrails):
        problems.append(Problem("rollout.guardrails", "must be a list of guardrail metric names"))
    elif len(set(guardrails)) != len(guardrails):
        problems.append(Problem("rollout.guardrails", "lists a metric twice"))
    ship_ni = value.get("ship_requires_non_inferiority", True)
    if not isinstance(ship_ni, bool):
        problems.append(Problem("rollout.ship_requires_non_inferiority", "must be true or false"))
    if len(problems) > count:
        return None
    return RolloutPlan(
        variant=str(variant), steps=steps, min_units_per_step=int(units),
        guardrails=tuple(guardrails), alpha=float(alpha),
        ship_requires_non_inferiority=bool(ship_ni), **numbers,
    )  # fmt: skip


def rollout_plan_problems(
    plan: RolloutPlan,
    *,
    variants: Sequence[str],
    weights: Mapping[str, float],
    control: str,
    guardrail_margins: Mapping[str, float | None],
) -> tuple[RolloutPlan, list[Problem]]:
    """Check ``plan`` against the experiment; return it with the defaults filled in.

    ``weights`` are the normalised variant weights; ``guardrail_margins`` maps each
    guardrail metric of the experiment to its margin.
    """
    problems: list[Problem] = []
    if len(variants) != 2:
        problems.append(Problem("rollout", "a guarded rollout compares one new variant with "
                                "control: the experiment needs exactly two variants"))  # fmt: skip
        return plan, problems
    variant = plan.variant or next((v for v in variants if v != control), "")
    if variant not in variants:
        problems.append(Problem("rollout.variant", f"'{variant}' is not a variant"))
    elif variant == control:
        problems.append(Problem("rollout.variant", "is the control; name the new variant"))
    else:
        share = weights[variant]
        for index, step in enumerate(plan.steps[:-1]):
            if step > share * (1 + 1e-12):
                problems.append(Problem(
                    f"rollout.steps[{index}]",
                    f"{step:g} is more than '{variant}''s weight share {share:g}: steps "
                    "raise the traffic with the weights fixed, so a step below 100% is at "
                    "most the new variant's share",
                ))  # fmt: skip
    guardrails = plan.guardrails or tuple(guardrail_margins)
    if not guardrails:
        problems.append(Problem("rollout.guardrails", "a guarded rollout needs at least one "
                                "guardrail metric to watch (guardrail_metrics)"))  # fmt: skip
    for index, name in enumerate(guardrails):
        if name not in guardrail_margins:
            problems.append(
                Problem(
                    f"rollout.guardrails[{index}]",
                    f"'{name}' is not a guardrail metric of the experiment",
                )
            )
            continue
        margin = guardrail_margins[name]
        if margin is None or not margin > 0:
            problems.append(Problem(
                f"rollout.guardrails[{index}]",
                f"guardrail '{name}' needs a margin > 0: the relative regression the rollout "
                "is planned to catch",
            ))  # fmt: skip
    return RolloutPlan(**{**plan.__dict__, "variant": variant, "guardrails": guardrails}), problems


def rollout_plan_schema() -> dict[str, Any]:
    """JSON Schema of the ``rollout`` field (the shape `parse_rollout_plan` reads)."""
    return {
        "anyOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "description": "Guarded rollout plan: steps of the new variant's share",
                "properties": {
                    "variant": {"type": "string"},
                    "steps": {"type": "array", "minItems": 1,
                              "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}},
                    "min_hours_per_step": {"type": "number", "minimum": 0},
                    "min_units_per_step": {"type": "integer", "minimum": 0},
                    "check_interval_minutes": {"type": "number", "exclusiveMinimum": 0},
                    "guardrails": {"type": "array", "items": {"type": "string"},
                                   "uniqueItems": True},
                    "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                    "observation_hours": {"type": "number", "exclusiveMinimum": 0},
                    "ship_requires_non_inferiority": {"type": "boolean"},
                },
            },
            {"type": "null"},
        ]
    }  # fmt: skip


def _steps(value: object, problems: list[Problem]) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        problems.append(Problem("rollout.steps", "must be a non-empty list of shares in (0, 1]"))
        return ()
    steps: list[float] = []
    for index, step in enumerate(value):
        if not _is_number(step) or not 0 < step <= 1:
            problems.append(Problem(f"rollout.steps[{index}]", "must be a share in (0, 1]"))
            return ()
        if steps and step <= steps[-1]:
            problems.append(
                Problem(
                    f"rollout.steps[{index}]", "steps must increase (the traffic ramp is monotone)"
                )
            )
            return ()
        steps.append(float(step))
    if steps[-1] != 1.0:
        problems.append(Problem("rollout.steps", "the last step must be 1 (100%: ship)"))
        return ()
    if len(steps) < 2:
        problems.append(Problem("rollout.steps", "needs a step below 1 before the last (1: ship)"))
        return ()
    return tuple(steps)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = [
    "DEFAULT_STEPS",
    "RolloutPlan",
    "parse_rollout_plan",
    "rollout_plan_problems",
    "rollout_plan_schema",
]
