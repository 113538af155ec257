"""The decision of one check of a guarded rollout: advance, hold or roll back. Pure.

Inputs are the plan (`abtest.rollout_plan.RolloutPlan`), where the current step stands
(`StepProgress`) and, per guardrail, the effect of the new variant against control on the
units observed so far (`GuardrailLook`: cumulative sufficient statistics turned into an
`Effect`).  The rules, in order:

1. **Roll back** when any guardrail's always-valid one-sided *harm* test rejects "no
   harm" (the effect is worse than 0 in the metric's bad direction), Holm across the
   guardrails at the plan's alpha.  The mixing prior is fixed by the plan before any data:
   ``τ = margin · |control mean|``, the guardrail's margin being the regression the
   rollout is planned to catch (`analysis.statistics.mixing.MixingPrior`, relative scale).
   Each test is an mSPRT, valid at any number of checks and any stopping time, and the
   comparison pools every unit since the first step: the weights are fixed and only
   traffic grows (`abtest.rollout_plan`), so the split between the arms is the same at
   every step.  Holm's first step is Bonferroni on the smallest p-value, so under no
   harm at all the chance of *any* rollback over the whole rollout is at most alpha
   (Ville's inequality per guardrail, then the union bound).  Any proven harm rolls
   back, also one smaller than the margin: LaunchDarkly's default regression threshold
   is 0% for the same reason, and GrowthBook's Safe Rollouts roll back on a significant
   guardrail failure.
2. **Hold** while the data are incomplete, while a person paused the rollout, while the
   step is younger than ``min_hours_per_step`` or has fewer than ``min_units_per_step``
   new units of the new variant, or while a guardrail has no look yet.
3. **Hold** before shipping (the advance to the last step, 100%) until every guardrail
   is shown non-inferior: its always-valid test rejects "the harm is at least the
   margin", each at alpha (an intersection-union test needs no multiplicity correction:
   the chance to ship a variant that harms some guardrail by its margin or more is at
   most alpha).  Plans may turn this off (``ship_requires_non_inferiority``).
4. Otherwise **advance** (at the last step: ship).

References: Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B tests", KDD (mSPRT);
Howard, Ramdas, McAuliffe & Sekhon (2021), Ann. Statist. 49 (one-sided mixtures);
Holm (1979), Scand. J. Statist. 6; Berger (1982), Technometrics 24 (intersection-union
tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from abtest.experiment import Metric
from abtest.rollout_plan import RolloutPlan
from analysis.decision.rules import holm_along_last_axis
from analysis.statistics.mixing import MixingPrior
from analysis.statistics.results import Effect, json_float
from analysis.statistics.sequential import (
    SequentialResult,
    always_valid_p_values,
    confidence_sequence,
    sequential_from_effects,
)

FloatArray = NDArray[np.float64]


class Action(StrEnum):
    """What one check decides."""

    ADVANCE = "advance"
    HOLD = "hold"
    ROLL_BACK = "roll_back"


@dataclass(frozen=True)
class StepProgress:
    """Where the current step stands at the check.

    ``hours``: time since the step began; ``units``: units first exposed to the new
    variant since then; ``paused``: a person holds the rollout (say who in
    ``paused_by``); ``complete``: the check saw every exposure the store counted (else
    ``incomplete`` says what is missing and the check never acts).
    """

    step: int
    hours: float
    units: int
    paused: bool = False
    paused_by: str = ""
    complete: bool = True
    incomplete: str = ""


@dataclass(frozen=True)
class GuardrailLook:
    """One guardrail at the check: its metric and the new variant's effect against control
    on the units observed so far (None: no look yet, ``note`` says why)."""

    metric: Metric
    effect: Effect | None
    note: str = ""


@dataclass(frozen=True)
class RolloutDecision:
    """What one check decided, why, and the numbers behind it.

    ``action``: advance, hold or roll_back; ``step``: the step the check looked at;
    ``ship``: an advance that reaches the last step (100%: the new variant ships).
    """

    action: Action
    step: int
    reasons: tuple[str, ...]
    numbers: dict[str, Any] = field(compare=False)
    ship: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return {"action": self.action.value, "step": self.step, "ship": self.ship,
                "reasons": list(self.reasons), "numbers": self.numbers}  # fmt: skip


def guardrail_prior(metric: Metric) -> MixingPrior:
    """The mSPRT prior the plan fixes for a guardrail: τ = margin · |control mean|."""
    assert metric.margin is not None and metric.margin > 0
    return MixingPrior(metric.margin, "relative", "rollout plan: the guardrail's margin")


@dataclass(frozen=True)
class GuardrailArms:
    """The arm estimates of every guardrail at one check of many rollouts, as arrays of
    shape ``(rollouts, guardrails)``: means, their standard errors, units.  A guardrail
    without a look has nan means."""

    control_mean: FloatArray
    control_se: FloatArray
    variant_mean: FloatArray
    variant_se: FloatArray
    n_control: FloatArray
    n_variant: FloatArray

    @classmethod
    def from_effects(cls, effects: Sequence[Effect | None]) -> GuardrailArms:
        """One rollout's guardrails (shape ``(1, guardrails)``) from their effects."""

        def column(get: Any) -> FloatArray:
            return np.array([[math.nan if e is None else float(get(e)) for e in effects]])

        return cls(
            column(lambda e: e.control_mean), column(lambda e: _se(e.control_se)),
            column(lambda e: e.variant_mean), column(lambda e: _se(e.variant_se)),
            column(lambda e: e.n_control), column(lambda e: e.n_variant),
        )  # fmt: skip


def _se(value: float | None) -> float:
    return math.nan if value is None else value


@dataclass(frozen=True)
class GuardrailTests:
    """The always-valid tests of every guardrail (arrays shaped like `GuardrailArms`).

    ``estimate``: absolute effect in metric units, with its (1 - alpha) confidence
    sequence ``lower``/``upper``; ``tau``: the prior's scale in metric units; ``p_harm``
    (and Holm-adjusted across each rollout's guardrails), ``p_non_inferior``; ``present``:
    the guardrail has a look (units in both arms); ``looked``: and the look varies, so it
    carries evidence (a guardrail whose every unit has the same value, an error rate with
    no error yet, has p = 1 both ways: no harm shown, and no non-inferiority either).
    """

    estimate: FloatArray
    relative: FloatArray
    lower: FloatArray
    upper: FloatArray
    tau: FloatArray
    p_harm: FloatArray
    p_harm_adjusted: FloatArray
    p_non_inferior: FloatArray
    looked: NDArray[np.bool_]
    present: NDArray[np.bool_]


def guardrail_tests(
    arms: GuardrailArms, *, margins: ArrayLike, higher_is_better: ArrayLike, alpha: float
) -> GuardrailTests:
    """Harm and non-inferiority tests of every guardrail (vectorised; module docstring).

    The harm test is the one-sided mSPRT of the absolute effect against 0 in the
    metric's bad direction; non-inferiority is the one-sided mSPRT of the relative effect
    against the margin, its SE taken under the margin (Fieller's, as
    `analysis.statistics.sequential_margin.sequential_margin_test`), with the same prior.
    """
    margin = np.asarray(margins, dtype=float)
    bad = np.where(np.asarray(higher_is_better, dtype=bool), -1.0, 1.0)  # the harmful sign
    m_c, m_v = arms.control_mean, arms.variant_mean
    se_c, se_v = arms.control_se, arms.variant_se
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = se_c**2 + se_v**2
        present = np.isfinite(m_c) & np.isfinite(m_v)
        looked = present & np.isfinite(variance) & (variance > 0)
        estimate = m_v - m_c
        tau2 = (margin * np.abs(m_c)) ** 2
        p_harm = always_valid_p_values(estimate=bad * estimate, variance=variance, tau2=tau2,
                                       alternative="greater")  # fmt: skip
        # Non-inferiority: (s·rel + margin) > 0 with s = -bad, the SE under the margin.
        scale = np.abs(m_c)
        relative = estimate / scale
        ratio = 1.0 + bad * margin * np.sign(m_c)
        se_rel = np.hypot(se_v, ratio * se_c) / scale
        tau2_rel = tau2 * se_rel**2 / variance
        p_ni = always_valid_p_values(estimate=-bad * relative + margin, variance=se_rel**2,
                                     tau2=tau2_rel, alternative="greater")  # fmt: skip
        lower, upper = confidence_sequence(estimate=estimate, variance=variance, tau2=tau2,
                                           alpha=alpha)  # fmt: skip
    p_harm = np.where(looked, p_harm, 1.0)
    p_ni = np.where(looked & np.isfinite(relative) & (scale > 0), p_ni, 1.0)
    return GuardrailTests(
        estimate=estimate, relative=relative, lower=lower, upper=upper,
        tau=np.sqrt(tau2), p_harm=p_harm, p_harm_adjusted=holm_along_last_axis(p_harm),
        p_non_inferior=p_ni, looked=looked, present=present,
    )  # fmt: skip


HOLD, ADVANCE, ROLL_BACK = 0, 1, 2
"""The action codes of `decide_actions` (indices into `ACTIONS`)."""
ACTIONS: tuple[Action, ...] = (Action.HOLD, Action.ADVANCE, Action.ROLL_BACK)


def decide_actions(
    plan: RolloutPlan,
    tests: GuardrailTests,
    *,
    step: ArrayLike,
    hours: ArrayLike,
    units: ArrayLike,
    paused: ArrayLike = False,
    complete: ArrayLike = True,
) -> tuple[NDArray[np.int8], NDArray[np.bool_]]:
    """The rules of the module docstring for many rollouts at once: action codes (`HOLD`,
    `ADVANCE`, `ROLL_BACK`) and whether an advance ships.  `decide_rollout` decides one
    rollout with it; the simulations decide thousands."""
    step = np.asarray(step)
    harmed = (tests.p_harm_adjusted <= plan.alpha).any(axis=-1)
    ready = (
        ~np.asarray(paused, dtype=bool)
        & (np.asarray(hours, dtype=float) >= plan.min_hours_per_step)
        & (np.asarray(units) >= plan.min_units_per_step)
        & tests.present.all(axis=-1)
    )
    ship = step + 1 >= plan.last_step
    if plan.ship_requires_non_inferiority:
        ready &= ~ship | (tests.p_non_inferior <= plan.alpha).all(axis=-1)
    complete = np.asarray(complete, dtype=bool)
    action = np.where(harmed, ROLL_BACK, np.where(ready, ADVANCE, HOLD))
    action = np.where(complete, action, HOLD).astype(np.int8)
    return action, (action == ADVANCE) & ship


def _describe(tests: GuardrailTests, g: int, look: GuardrailLook, alpha: float) -> str:
    worse = "lower" if look.metric.higher_is_better else "higher"
    effect = look.effect
    assert effect is not None
    relative = tests.relative[0, g]
    rel = f" ({relative:+.2%})" if math.isfinite(relative) else ""
    return (f"guardrail {look.metric.name} is {worse} in the new variant: "
            f"{tests.estimate[0, g]:+.4g}{rel} on {effect.n_variant:,}/{effect.n_control:,} "
            f"units, always-valid harm p = {tests.p_harm[0, g]:.3g} (Holm-adjusted "
            f"{tests.p_harm_adjusted[0, g]:.3g} <= alpha {alpha:g})")  # fmt: skip


def _numbers(tests: GuardrailTests, looks: Sequence[GuardrailLook]) -> list[dict[str, Any]]:
    out = []
    for g, look in enumerate(looks):
        if not tests.present[0, g] or look.effect is None:
            continue
        e = look.effect
        row = {"metric": look.metric.name, "higher_is_better": look.metric.higher_is_better,
               "margin": look.metric.margin, "n_control": e.n_control, "n_variant": e.n_variant,
               "control_mean": e.control_mean, "variant_mean": e.variant_mean}  # fmt: skip
        for name in ("estimate", "relative", "lower", "upper", "tau", "p_harm",
                     "p_harm_adjusted", "p_non_inferior"):  # fmt: skip
            row[name] = float(getattr(tests, name)[0, g])
        out.append({k: json_float(v) if isinstance(v, float) else v for k, v in row.items()})
    return out


def decide_rollout(
    plan: RolloutPlan, progress: StepProgress, looks: Sequence[GuardrailLook]
) -> RolloutDecision:
    """The decision of one check (rules in the module docstring), with its reasons and
    the numbers behind it.

    Parameters
    ----------
    plan : RolloutPlan
        The experiment's plan (its guardrails are ``looks``'s metrics).
    progress : StepProgress
        The current step's age, units and the holds on it.
    looks : sequence of GuardrailLook
        One per guardrail of the plan.

    Returns
    -------
    RolloutDecision
    """
    alpha = plan.alpha
    tests = guardrail_tests(
        GuardrailArms.from_effects([look.effect for look in looks]),
        margins=[look.metric.margin or math.nan for look in looks],
        higher_is_better=[look.metric.higher_is_better for look in looks], alpha=alpha,
    )  # fmt: skip
    codes, ships = decide_actions(
        plan, tests, step=[progress.step], hours=[progress.hours], units=[progress.units],
        paused=[progress.paused], complete=[progress.complete],
    )  # fmt: skip
    action, ship = ACTIONS[int(codes[0])], bool(ships[0])
    no_look = {look.metric.name: look.note or "no data to test yet"
               for g, look in enumerate(looks) if not tests.present[0, g]}  # fmt: skip
    numbers: dict[str, Any] = {
        "step": progress.step, "share": plan.steps[progress.step], "alpha": alpha,
        "step_hours": progress.hours, "step_units": progress.units,
        "min_hours": plan.min_hours_per_step, "min_units": plan.min_units_per_step,
        "guardrails": _numbers(tests, looks), "no_look": no_look,
        "no_variation": [look.metric.name for g, look in enumerate(looks)
                         if tests.present[0, g] and not tests.looked[0, g]],
    }  # fmt: skip
    if action is Action.ROLL_BACK:
        reasons = [_describe(tests, g, look, alpha) for g, look in enumerate(looks)
                   if tests.p_harm_adjusted[0, g] <= alpha]  # fmt: skip
    elif action is Action.ADVANCE:
        nxt = progress.step + 1
        reasons = [f"step {progress.step + 1} ({plan.steps[progress.step]:.3g}) ran "
                   f"{progress.hours:.3g} h with {progress.units:,} new units of the new "
                   f"variant and no guardrail harmed (smallest harm p = "
                   f"{float(tests.p_harm.min(initial=1.0)):.3g})",
                   "every guardrail within its margin: ship" if ship
                   else f"advance to step {nxt + 1} ({plan.steps[nxt]:.3g})"]  # fmt: skip
    else:
        reasons = _hold_reasons(plan, progress, looks, tests, no_look)
    return RolloutDecision(action, progress.step, tuple(reasons), numbers, ship)


def _hold_reasons(
    plan: RolloutPlan,
    progress: StepProgress,
    looks: Sequence[GuardrailLook],
    tests: GuardrailTests,
    no_look: dict[str, str],
) -> list[str]:
    if not progress.complete:
        return [f"incomplete data, so no action: {progress.incomplete}"]
    reasons = []
    if progress.paused:
        reasons.append(f"paused by {progress.paused_by or 'a person'}: no advance until resumed")
    if progress.hours < plan.min_hours_per_step:
        reasons.append(f"step {progress.step + 1} has run {progress.hours:.3g} h of its "
                       f"minimum {plan.min_hours_per_step:g} h")  # fmt: skip
    if progress.units < plan.min_units_per_step:
        reasons.append(f"step {progress.step + 1} has {progress.units:,} new units of the "
                       f"new variant of its minimum {plan.min_units_per_step:,}")  # fmt: skip
    reasons += [f"guardrail {name}: {note}" for name, note in no_look.items()]
    if not reasons:  # only non-inferiority holds the ship back
        reasons = [
            f"guardrail {look.metric.name} not yet shown within its {look.metric.margin:.3g} "
            f"margin (always-valid non-inferiority p = {tests.p_non_inferior[0, g]:.3g} > "
            f"alpha {plan.alpha:g}); shipping waits for it"
            for g, look in enumerate(looks)
            if tests.p_non_inferior[0, g] > plan.alpha
        ]
    return reasons


def guardrail_series(
    effects: Sequence[Effect], metric: Metric, *, alpha: float
) -> SequentialResult:
    """The guardrail's cumulative effect with its confidence sequence at each look (one per
    day, for the timeline), under the same prior as the decision."""
    return sequential_from_effects(effects, prior=guardrail_prior(metric), alpha=alpha,
                                   note="the rollout's guardrail test")  # fmt: skip


__all__ = [
    "Action",
    "GuardrailArms",
    "GuardrailLook",
    "GuardrailTests",
    "RolloutDecision",
    "StepProgress",
    "decide_actions",
    "decide_rollout",
    "guardrail_prior",
    "guardrail_series",
    "guardrail_tests",
]
