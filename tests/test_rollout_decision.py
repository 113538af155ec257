"""The rollout decision: its tests against independent computations, its rules one by one,
and simulated rollouts (A/A: rollbacks at most alpha; a regression of the planned size:
caught with the stated power, and shipped at most alpha of the time)."""

from __future__ import annotations

import doctest
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analysis.planning.rollout
from abtest.experiment import MetricType
from analysis.decision.rollout import (
    Action,
    GuardrailArms,
    GuardrailLook,
    StepProgress,
    decide_actions,
    decide_rollout,
    guardrail_prior,
    guardrail_series,
    guardrail_tests,
)
from analysis.planning.rollout import regression_detection_power, units_for_regression_power
from analysis.statistics.aggregates import SampleStats
from analysis.statistics.inference import mean_difference, proportion_difference
from analysis.statistics.sequential import always_valid_p_values
from analysis.statistics.sequential_margin import sequential_margin_test
from tests.rollout_simulation import (
    ERROR,
    LATENCY,
    PLAN,
    Scenario,
    expected_units_before_ship,
    simulate,
)


def latency_effect(control_mean: float, variant_mean: float, n: int = 5000, sd: float = 100.0):
    """A latency effect from per-arm aggregates with the given means and SD."""

    def stats(mean: float) -> SampleStats:
        return SampleStats(n, n * mean, (n - 1) * sd**2 + n * mean**2)

    return mean_difference(control=stats(control_mean), variant=stats(variant_mean))


def error_effect(control: int, variant: int, n: int = 5000):
    """An error-rate effect with the given error counts out of ``n`` per arm."""
    return proportion_difference(control=SampleStats(n, control, control),
                                 variant=SampleStats(n, variant, variant))  # fmt: skip


READY = StepProgress(step=1, hours=30.0, units=5000)


@pytest.mark.parametrize("metric", [ERROR, LATENCY, replace(LATENCY, higher_is_better=True)])
@pytest.mark.parametrize("shift", [-0.08, -0.02, 0.0, 0.03, 0.1])
def test_the_tests_agree_with_the_library_on_effects(metric, shift):
    """Harm p = the one-sided always-valid p against 0 under the margin prior; NI p =
    `sequential_margin_test`'s (relative, Fieller SE under the margin)."""
    if metric.type is MetricType.BINOMIAL:
        effect = error_effect(500, round(500 * (1 + shift)))
    else:
        effect = latency_effect(200.0, 200.0 * (1 + shift))
    tests = guardrail_tests(GuardrailArms.from_effects([effect]), margins=[metric.margin],
                            higher_is_better=[metric.higher_is_better], alpha=0.05)  # fmt: skip
    tau2 = (metric.margin * abs(effect.control_mean)) ** 2
    prior_tau2 = guardrail_prior(metric).tau2(
        variance=effect.absolute_se**2, n_control=effect.n_control, n_variant=effect.n_variant,
        control_mean=effect.control_mean)  # fmt: skip
    assert float(prior_tau2) == pytest.approx(tau2)
    harm = "greater" if not metric.higher_is_better else "less"
    expected = always_valid_p_values(
        estimate=effect.absolute_effect, variance=effect.absolute_se**2, tau2=tau2, alternative=harm
    )
    assert tests.p_harm[0, 0] == pytest.approx(float(expected), rel=1e-9)
    margin = sequential_margin_test(
        effect,
        margin=metric.margin,
        tau2=tau2,
        higher_is_better=metric.higher_is_better,
        relative=True,
    )
    assert tests.p_non_inferior[0, 0] == pytest.approx(margin.p_non_inferior, rel=1e-9)
    assert tests.lower[0, 0] <= effect.absolute_effect <= tests.upper[0, 0]


@settings(max_examples=60, deadline=None)
@given(
    means=st.tuples(st.floats(50, 500), st.floats(50, 500)),
    ses=st.tuples(st.floats(0.1, 50), st.floats(0.1, 50)),
    n=st.integers(2, 10**6),
)
def test_p_values_are_probabilities_and_the_sequence_holds_the_estimate(means, ses, n):
    """Whatever the data: p in [0, 1], the confidence sequence contains the estimate."""
    arms = GuardrailArms(*(np.array([[v]]) for v in (means[0], ses[0], means[1], ses[1], n, n)))
    tests = guardrail_tests(arms, margins=[0.05], higher_is_better=[False], alpha=0.05)
    for p in (tests.p_harm, tests.p_harm_adjusted, tests.p_non_inferior):
        assert 0.0 <= float(p[0, 0]) <= 1.0
    assert tests.lower[0, 0] <= tests.estimate[0, 0] <= tests.upper[0, 0]


def test_harm_beyond_the_evidence_rolls_back_with_its_numbers():
    """A clear latency regression rolls back, whatever the step's time and units."""
    looks = [GuardrailLook(ERROR, error_effect(500, 500)),
             GuardrailLook(LATENCY, latency_effect(200.0, 230.0))]  # fmt: skip
    decision = decide_rollout(PLAN, StepProgress(step=0, hours=1.0, units=10), looks)
    assert decision.action is Action.ROLL_BACK
    assert "latency_ms is higher in the new variant" in decision.reasons[0]
    assert len(decision.reasons) == 1
    latency = decision.numbers["guardrails"][1]
    assert latency["metric"] == "latency_ms" and latency["p_harm_adjusted"] <= 0.05
    assert latency["estimate"] == pytest.approx(30.0)
    assert latency["relative"] == pytest.approx(0.15)


def test_a_regression_in_the_good_direction_is_no_harm():
    """Lower latency is better: a big drop never rolls back."""
    looks = [GuardrailLook(ERROR, error_effect(500, 400)),
             GuardrailLook(LATENCY, latency_effect(200.0, 150.0))]  # fmt: skip
    assert decide_rollout(PLAN, READY, looks).action is Action.ADVANCE


@pytest.mark.parametrize(
    ("progress", "reason"),
    [
        (StepProgress(step=1, hours=3.0, units=5000), "has run 3 h of its minimum 24 h"),
        (StepProgress(step=1, hours=30.0, units=20), "has 20 new units"),
        (StepProgress(step=1, hours=30.0, units=5000, paused=True, paused_by="k1"), "paused by k1"),
        (
            StepProgress(step=1, hours=30.0, units=5000, complete=False, incomplete="export gone"),
            "incomplete data, so no action: export gone",
        ),
    ],
)
def test_each_hold_says_why(progress, reason):
    """Not enough time, units, a pause or incomplete data: hold, naming the cause."""
    looks = [GuardrailLook(ERROR, error_effect(500, 500)),
             GuardrailLook(LATENCY, latency_effect(200.0, 200.0))]  # fmt: skip
    decision = decide_rollout(PLAN, progress, looks)
    assert decision.action is Action.HOLD
    assert any(reason in r for r in decision.reasons), decision.reasons


def test_incomplete_data_never_rolls_back_either():
    """A check that missed exposures does not act, even on what looks like harm."""
    looks = [GuardrailLook(ERROR, error_effect(500, 500)),
             GuardrailLook(LATENCY, latency_effect(200.0, 260.0))]  # fmt: skip
    progress = StepProgress(step=1, hours=30.0, units=5000, complete=False, incomplete="x")
    assert decide_rollout(PLAN, progress, looks).action is Action.HOLD


def test_a_paused_rollout_still_rolls_back_on_harm():
    """A pause stops the advances, never the safety net."""
    looks = [GuardrailLook(ERROR, error_effect(500, 500)),
             GuardrailLook(LATENCY, latency_effect(200.0, 260.0))]  # fmt: skip
    paused = StepProgress(step=1, hours=30.0, units=5000, paused=True)
    assert decide_rollout(PLAN, paused, looks).action is Action.ROLL_BACK


def test_a_guardrail_without_data_holds_the_advance():
    """No look on a guardrail: no advance (there is nothing to say it is safe)."""
    looks = [GuardrailLook(ERROR, None, "no unit observed for 1 h yet"),
             GuardrailLook(LATENCY, latency_effect(200.0, 200.0))]  # fmt: skip
    decision = decide_rollout(PLAN, READY, looks)
    assert decision.action is Action.HOLD
    assert decision.reasons == ("guardrail error: no unit observed for 1 h yet",)
    assert decision.numbers["no_look"] == {"error": "no unit observed for 1 h yet"}


def test_shipping_waits_for_non_inferiority_unless_the_plan_says_otherwise():
    """The last advance needs every guardrail within its margin (always-valid)."""
    small = [GuardrailLook(ERROR, error_effect(50, 50, n=500)),
             GuardrailLook(LATENCY, latency_effect(200.0, 200.0))]  # fmt: skip
    last = StepProgress(step=3, hours=30.0, units=5000)
    decision = decide_rollout(PLAN, last, small)
    assert decision.action is Action.HOLD
    assert decision.reasons[0].startswith("guardrail error not yet shown within its 0.1 margin")
    relaxed = replace(PLAN, ship_requires_non_inferiority=False)
    shipped = decide_rollout(relaxed, last, small)
    assert (shipped.action, shipped.ship) == (Action.ADVANCE, True)
    big = [GuardrailLook(ERROR, error_effect(5000, 5000, n=200_000)),
           GuardrailLook(LATENCY, latency_effect(200.0, 200.0, n=50_000))]  # fmt: skip
    assert decide_rollout(PLAN, last, big).ship
    assert not decide_rollout(PLAN, READY, big).ship  # step 2 of 4 only advances


def test_the_single_and_the_vectorised_rules_agree():
    """`decide_rollout` is `decide_actions` on one rollout, for random data."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        looks = [GuardrailLook(ERROR, error_effect(int(rng.integers(300, 700)), 500)),
                 GuardrailLook(LATENCY, latency_effect(200.0, 200.0 * rng.uniform(0.9, 1.1),
                                                       n=int(rng.integers(50, 500))))]  # fmt: skip
        progress = StepProgress(step=int(rng.integers(0, 4)), hours=float(rng.uniform(0, 50)),
                                units=int(rng.integers(0, 2000)))  # fmt: skip
        single = decide_rollout(PLAN, progress, looks)
        tests = guardrail_tests(GuardrailArms.from_effects([lk.effect for lk in looks]),
                                margins=[0.1, 0.05], higher_is_better=[False, False],
                                alpha=PLAN.alpha)  # fmt: skip
        codes, ships = decide_actions(PLAN, tests, step=[progress.step], hours=[progress.hours],
                                      units=[progress.units])  # fmt: skip
        assert (single.action, single.ship) == (
            (Action.HOLD, Action.ADVANCE, Action.ROLL_BACK)[codes[0]],
            bool(ships[0]),
        )


def test_the_series_uses_the_decision_prior():
    """The timeline's confidence sequence is the decision's, day by day."""
    effects = [latency_effect(200.0, 204.0, n=n) for n in (500, 2000, 8000)]
    series = guardrail_series(effects, LATENCY, alpha=0.05)
    tests = guardrail_tests(GuardrailArms.from_effects([effects[-1]]), margins=[0.05],
                            higher_is_better=[False], alpha=0.05)  # fmt: skip
    assert series.lower[-1] == pytest.approx(float(tests.lower[0, 0]))
    assert series.upper[-1] == pytest.approx(float(tests.upper[0, 0]))
    assert series.upper[0] - series.lower[0] > series.upper[-1] - series.lower[-1]


def test_planning_doctests_and_bound():
    """The planning module's examples hold; power grows with units; units invert it."""
    result = doctest.testmod(analysis.planning.rollout, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
    power = regression_detection_power(regression=0.1, cv=3.0, units_per_arm=[1e3, 1e4, 1e5])
    assert np.all(np.diff(power) > 0)
    n = units_for_regression_power(regression=0.1, cv=3.0, power=0.8, guardrails=2)
    assert float(
        regression_detection_power(regression=0.1, cv=3.0, units_per_arm=n, guardrails=2)
    ) == pytest.approx(0.8, abs=1e-3)


# -- simulated rollouts through the rules ------------------------------------------------


def _se(share: float, count: int) -> float:
    return math.sqrt(max(share * (1 - share), 1e-4) / count)


def test_aa_rollouts_roll_back_at_most_alpha():
    """1,000 A/A rollouts (2 guardrails, hourly checks, 4 steps + ship): rollbacks <= 5%."""
    out = simulate(Scenario(), 1000, seed=11)
    assert out.share("roll_back") <= PLAN.alpha
    assert out.share("ship") >= 0.9  # and the rollout does finish


def test_a_regression_of_the_planned_size_is_caught_with_the_stated_power():
    """Error rate +10% (its margin): rolled back at least as often as the planning bound
    says when shipping does not wait for non-inferiority."""
    relaxed = replace(PLAN, ship_requires_non_inferiority=False)
    scenario = Scenario(error_effect=0.1)
    out = simulate(scenario, 600, seed=12, plan=relaxed)
    stated = float(regression_detection_power(
        regression=0.1, cv=math.sqrt(0.9 / 0.1), guardrails=2,
        units_per_arm=expected_units_before_ship(scenario, relaxed)))  # fmt: skip
    assert 0.3 < stated < 0.9  # the scenario is one where power is a question
    share = out.share("roll_back")
    assert share >= stated - 3 * _se(share, 600)


def test_a_regression_of_the_margin_ships_at_most_alpha():
    """With non-inferiority required to ship, a harm of exactly the margin ships <= 5%."""
    out = simulate(Scenario(error_effect=0.1), 600, seed=13)
    assert out.share("ship") <= PLAN.alpha
    assert out.share("roll_back") >= 0.9


def test_a_latency_regression_is_caught_early():
    """Latency +5%: rolled back in every run, by step 3 (25%) in most, within days."""
    out = simulate(Scenario(latency_effect=0.05), 400, seed=14)
    assert out.share("roll_back") == 1.0
    assert np.mean(out.step <= 2) >= 0.9
    assert np.median(out.hours) <= 72


def test_a_guardrail_without_variation_does_not_hold_the_advance_but_the_ship():
    """No error in either arm yet: no harm shown, so the rollout advances; shipping waits
    until non-inferiority can be shown."""
    looks = [GuardrailLook(ERROR, error_effect(0, 0)),
             GuardrailLook(LATENCY, latency_effect(200.0, 200.0))]  # fmt: skip
    decision = decide_rollout(PLAN, READY, looks)
    assert decision.action is Action.ADVANCE
    assert decision.numbers["no_variation"] == ["error"]
    last = decide_rollout(PLAN, StepProgress(step=3, hours=30.0, units=5000), looks)
    assert last.action is Action.HOLD
    assert "guardrail error not yet shown within its 0.1 margin" in last.reasons[0]
