"""The rollout plan in the experiment model: its JSON form, every rule, the traffic mapping,
and what a rolled-back experiment serves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from abtest.assignment import Reason, assign, assign_batch
from abtest.errors import InvalidConfig
from abtest.experiment import Experiment, Status
from abtest.rollout_plan import DEFAULT_STEPS, RolloutPlan


def rollout_config(**plan: Any) -> dict[str, Any]:
    """A two-variant experiment with a latency guardrail and a rollout plan."""
    return {
        "key": "ranker-v3",
        "control": "v1",
        "variants": [{"key": "v1", "weight": 1, "payload": "old"},
                     {"key": "v2", "weight": 1, "payload": "new"}],
        "guardrail_metrics": [
            {"name": "latency_ms", "type": "sum", "higher_is_better": False, "margin": 0.05},
            {"name": "error", "type": "binomial", "higher_is_better": False, "margin": 0.1},
        ],
        "rollout": plan,
    }  # fmt: skip


def test_defaults_are_filled_in_and_stored_explicitly():
    """An empty plan gets the default steps, the new variant and every guardrail."""
    experiment = Experiment.from_dict(rollout_config())
    plan = experiment.rollout
    assert plan == RolloutPlan(variant="v2", guardrails=("latency_ms", "error"))
    assert plan.steps == DEFAULT_STEPS
    assert experiment.to_dict()["rollout"]["variant"] == "v2"
    assert Experiment.from_dict(experiment.to_dict()) == experiment
    assert Experiment.from_json(experiment.to_json()) == experiment


def test_a_config_without_a_plan_has_none():
    """The field is optional and written as null."""
    config = rollout_config()
    del config["rollout"]
    experiment = Experiment.from_dict(config)
    assert experiment.rollout is None and experiment.to_dict()["rollout"] is None


def test_a_full_plan_round_trips():
    """Every field given is kept as given."""
    plan = {
        "variant": "v2", "steps": [0.02, 0.1, 0.5, 1], "min_hours_per_step": 2,
        "min_units_per_step": 500, "check_interval_minutes": 15, "guardrails": ["error"],
        "alpha": 0.01, "observation_hours": 0.5, "ship_requires_non_inferiority": False,
    }  # fmt: skip
    experiment = Experiment.from_dict(rollout_config(**plan))
    assert experiment.rollout is not None
    assert experiment.rollout.to_dict() == {**plan, "steps": [0.02, 0.1, 0.5, 1.0],
                                            "min_hours_per_step": 2.0,
                                            "check_interval_minutes": 15.0}  # fmt: skip


BAD_PLANS = [
    ("rollout", "not an object", "must be an object"),
    ("rollout.steps", {"steps": []}, "non-empty list"),
    ("rollout.steps[1]", {"steps": [0.1, 0.1, 1]}, "must increase"),
    ("rollout.steps[0]", {"steps": [0, 1]}, "share in (0, 1]"),
    ("rollout.steps[1]", {"steps": [0.1, 1.5]}, "share in (0, 1]"),
    ("rollout.steps", {"steps": [0.1, 0.5]}, "last step must be 1"),
    ("rollout.steps", {"steps": [1]}, "a step below 1"),
    ("rollout.steps[1]", {"steps": [0.1, 0.6, 1]}, "weight share 0.5"),
    ("rollout.min_hours_per_step", {"min_hours_per_step": -1}, ">= 0"),
    ("rollout.check_interval_minutes", {"check_interval_minutes": 0}, "> 0"),
    ("rollout.observation_hours", {"observation_hours": "1"}, "> 0"),
    ("rollout.min_units_per_step", {"min_units_per_step": 2.5}, "integer"),
    ("rollout.alpha", {"alpha": 0.7}, "(0, 0.5]"),
    ("rollout.guardrails", {"guardrails": "error"}, "list of guardrail"),
    ("rollout.guardrails", {"guardrails": ["error", "error"]}, "twice"),
    ("rollout.guardrails[0]", {"guardrails": ["revenue"]}, "not a guardrail metric"),
    ("rollout.variant", {"variant": "v9"}, "not a variant"),
    ("rollout.variant", {"variant": "v1"}, "is the control"),
    ("rollout.ship_requires_non_inferiority", {"ship_requires_non_inferiority": 1}, "true or"),
    ("rollout.speed", {"speed": 2}, "unknown field"),
]


@pytest.mark.parametrize(("field", "plan", "message"), BAD_PLANS)
def test_each_bad_plan_is_refused_naming_its_field(field, plan, message):
    """A plan breaking a rule raises InvalidConfig naming the field."""
    config = rollout_config()
    config["rollout"] = plan
    with pytest.raises(InvalidConfig) as caught:
        Experiment.from_dict(config)
    problems = {(p.field, p.message) for p in caught.value.problems}
    assert any(f == field and message in m for f, m in problems), problems


def test_a_guardrail_without_margin_cannot_be_watched():
    """The margin is the regression the rollout is planned to catch: it is required."""
    config = rollout_config()
    config["guardrail_metrics"][1]["margin"] = None
    with pytest.raises(InvalidConfig, match="needs a margin"):
        Experiment.from_dict(config)


def test_a_plan_needs_exactly_two_variants_and_a_guardrail():
    """One new variant against control, and something to watch."""
    config = rollout_config()
    config["variants"].append({"key": "v3", "weight": 1})
    with pytest.raises(InvalidConfig, match="exactly two variants"):
        Experiment.from_dict(config)
    config = rollout_config()
    config["guardrail_metrics"] = []
    with pytest.raises(InvalidConfig, match="at least one"):
        Experiment.from_dict(config)


def test_steps_map_to_traffic_with_the_weights_fixed():
    """traffic = step / the new variant's share; 100% is everyone; step_of inverts it."""
    config = rollout_config(steps=[0.01, 0.05, 0.25, 1])
    config["variants"][0]["weight"] = 3  # v2 has a quarter of the in-experiment units
    plan = Experiment.from_dict(config).rollout
    assert plan is not None
    traffic = [plan.traffic(i, 0.25) for i in range(4)]
    assert traffic == pytest.approx([0.04, 0.2, 1.0, 1.0])
    assert [plan.step_of(t, 0.25) for t in traffic[:3]] == [0, 1, 2]
    assert plan.step_of(0.5, 0.25) is None
    config["rollout"]["steps"] = [0.01, 0.3, 1]
    with pytest.raises(InvalidConfig, match=r"weight share 0\.25"):
        Experiment.from_dict(config)


def test_a_rolled_back_experiment_serves_control_to_everyone_and_exposes_nobody():
    """rolled_back: control with its payload, reason rolled_back, never in the experiment;
    forced QA overrides still win."""
    config = {**copy.deepcopy(rollout_config()), "status": "rolled_back",
              "overrides": {"qa": "v2"}}  # fmt: skip
    experiment = Experiment.from_dict(config)
    assert experiment.status is Status.ROLLED_BACK
    answers = [assign(experiment, f"user-{i}") for i in range(200)]
    assert {(a.variant, a.payload, a.reason) for a in answers} == {
        ("v1", "old", Reason.ROLLED_BACK)
    }
    assert not any(a.in_experiment for a in answers)
    assert assign(experiment, "qa").reason is Reason.FORCED
    batch = assign_batch(experiment, [f"user-{i}" for i in range(200)])
    assert batch.variants() == ["v1"] * 200
    assert set(batch.reasons()) == {Reason.ROLLED_BACK}


def test_a_rolled_back_experiment_has_no_winner():
    """Only a shipped experiment names a winner."""
    config = {**rollout_config(), "status": "rolled_back", "winner": "v1"}
    with pytest.raises(InvalidConfig, match="only a shipped"):
        Experiment.from_dict(config)


def test_validate_prints_the_plan(capsys):
    """``abtest validate`` says ok, then the plan step by step with its guardrails."""
    from abtest.cli import main

    example = Path(__file__).resolve().parents[1] / "examples" / "ranker-v3-rollout.json"
    assert main(["validate", str(example)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ok"
    assert lines[1] == ("guarded rollout of 'v3' against 'v2': checks every 60 min, alpha 0.05")
    assert lines[2].startswith("  step 1   1.0% of units get 'v3' (traffic 2.0%); advance after")
    assert lines[6] == "  step 5  100%  ship 'v3' to everyone"
    assert lines[7].startswith("  guardrail latency_ms: rolls back when higher in 'v3'")
