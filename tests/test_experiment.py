"""The experiment model: construction, validation messages and the JSON round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abtest import Experiment, InvalidConfig, Layer, layer_conflicts
from tests import strategies

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.json"))

VALID = {
    "key": "ranker-v2",
    "variants": [{"key": "v1", "weight": 1}, {"key": "v2", "weight": 1}],
}


def with_(change: dict) -> dict:
    """VALID with some top-level fields replaced."""
    return {**copy.deepcopy(VALID), **change}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid_and_round_trip(path):
    """Every shipped example validates and survives to_dict -> from_dict unchanged."""
    experiment = Experiment.from_json_file(path)
    assert Experiment.from_dict(experiment.to_dict()) == experiment
    assert Experiment.from_json(experiment.to_json()) == experiment


def test_example_has_payloads_guardrail_and_layer():
    """The realistic example shows two model versions, a guardrail and a layer."""
    experiment = Experiment.from_json_file(EXAMPLES[0])
    assert all(v.payload for v in experiment.variants)
    assert experiment.guardrail_metrics and experiment.layer is not None


def test_minimum_detectable_effect_is_optional_and_round_trips():
    """The planned relative effect is absent by default and survives the JSON round trip."""
    assert Experiment.from_dict(VALID).minimum_detectable_effect is None
    planned = Experiment.from_dict(with_({"minimum_detectable_effect": 0.03}))
    assert planned.minimum_detectable_effect == 0.03
    assert planned.to_dict()["minimum_detectable_effect"] == 0.03
    assert Experiment.from_json(planned.to_json()) == planned
    with pytest.raises(InvalidConfig, match="minimum_detectable_effect"):
        planned.with_changes(minimum_detectable_effect=1.5)


def test_defaults_are_explicit_after_construction():
    """The seed defaults to the key and the control to the first variant, stored explicitly."""
    experiment = Experiment.from_dict(VALID)
    assert (experiment.seed, experiment.control) == ("ranker-v2", "v1")
    assert experiment.to_dict()["seed"] == "ranker-v2"


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        (with_({"key": "Not A Slug"}), "key", "not a slug"),
        ({"variants": VALID["variants"]}, "key", "required"),
        (with_({"seed": "bad seed|"}), "seed", "not a slug"),
        (with_({"variants": [{"key": "only", "weight": 1}]}), "variants", "at least two"),
        (with_({"variants": "ab"}), "variants", "list"),
        (with_({"variants": [{"key": "a", "weight": 1}, {"key": "a", "weight": 1}]}),
         "variants[1].key", "duplicate"),
        (with_({"variants": [{"key": "a", "weight": 0}, {"key": "b", "weight": 1}]}),
         "variants[0].weight", "positive"),
        (with_({"variants": [{"key": "a", "weight": -2}, {"key": "b", "weight": 1}]}),
         "variants[0].weight", "positive"),
        (with_({"variants": [{"key": "a", "weight": "1"}, {"key": "b", "weight": 1}]}),
         "variants[0].weight", "positive"),
        (with_({"variants": [{"key": "a", "weight": float("inf")}, {"key": "b"}]}),
         "variants[0].weight", "positive"),
        (with_({"variants": [{"key": "A b", "weight": 1}, {"key": "b", "weight": 1}]}),
         "variants[0].key", "not a slug"),
        (with_({"variants": [{"key": "a", "wieght": 1}, {"key": "b"}]}),
         "variants[0].wieght", "unknown field"),
        (with_({"traffic": 0}), "traffic", "(0, 1]"),
        (with_({"traffic": 1.5}), "traffic", "(0, 1]"),
        (with_({"traffic": "all"}), "traffic", "(0, 1]"),
        (with_({"status": "paused"}), "status", "not one of"),
        (with_({"status": "shipped"}), "winner", "needs a winner"),
        (with_({"status": "shipped", "winner": "v9"}), "winner", "not a variant"),
        (with_({"winner": "v1"}), "winner", "only a shipped"),
        (with_({"control": "v9"}), "control", "not a variant"),
        (with_({"overrides": {"qa-1": "v9"}}), "overrides.qa-1", "not a variant"),
        (with_({"overrides": ["qa-1"]}), "overrides", "map unit ids"),
        (with_({"layer": {"name": "l", "range": [0.5, 0.5]}}), "layer.range", "start < end"),
        (with_({"layer": {"name": "l", "range": [-0.1, 0.5]}}), "layer.range", "start < end"),
        (with_({"layer": {"name": "l", "range": [0.5, 1.1]}}), "layer.range", "start < end"),
        (with_({"layer": {"name": "l"}}), "layer.range", "start < end"),
        (with_({"layer": {"name": "Bad Name", "range": [0, 1]}}), "layer.name", "not a slug"),
        (with_({"layer": "search"}), "layer", "name, range"),
        (with_({"targeting": [{"attribute": "c", "op": "like", "value": "x"}]}),
         "targeting[0].op", "not one of"),
        (with_({"targeting": [{"attribute": "c", "op": "in", "value": "DE"}]}),
         "targeting[0].value", "list"),
        (with_({"targeting": [{"attribute": "c", "op": "gt", "value": [1]}]}),
         "targeting[0].value", "number or a string"),
        (with_({"targeting": [{"attribute": "c", "op": "exists", "value": "yes"}]}),
         "targeting[0].value", "true or false"),
        (with_({"targeting": [{"op": "eq", "value": 1}]}), "targeting[0].attribute", "required"),
        (with_({"targeting": {"country": "DE"}}), "targeting", "list"),
        (with_({"primary_metric": {"name": "conv", "type": "rate"}}),
         "primary_metric.type", "not one of"),
        (with_({"primary_metric": {"name": "clicks", "type": "ratio"}}),
         "primary_metric.name", "numerator/denominator"),
        (with_({"primary_metric": {"name": "latency", "type": "quantile"}}),
         "primary_metric.name", "latency_ms:p95"),
        (with_({"guardrail_metrics": [{"name": "err", "type": "binomial", "margin": -1}]}),
         "guardrail_metrics[0].margin", "non-negative"),
        (with_({"guardrail_metrics": [{"name": "e", "type": "count", "higher_is_better": 0}]}),
         "guardrail_metrics[0].higher_is_better", "true or false"),
        (with_({"primary_metric": {"name": "a", "type": "count"},
                "secondary_metrics": [{"name": "a", "type": "sum"}]}),
         "secondary_metrics[0].name", "twice"),
        (with_({"planned_units_per_variant": 0}), "planned_units_per_variant", "positive"),
        (with_({"minimum_detectable_effect": 3}), "minimum_detectable_effect", "0.03 for 3%"),
        (with_({"minimum_detectable_effect": 0}), "minimum_detectable_effect", "(0, 1]"),
        (with_({"minimum_detectable_effect": "5%"}), "minimum_detectable_effect", "(0, 1]"),
        (with_({"minimum_detectable_effect": True}), "minimum_detectable_effect", "(0, 1]"),
        (with_({"colour": "red"}), "colour", "unknown field"),
    ],
)  # fmt: skip
def test_invalid_configs_name_the_field(config, field, message):
    """Each broken rule raises InvalidConfig with a problem naming the field and the rule."""
    with pytest.raises(InvalidConfig) as info:
        Experiment.from_dict(config)
    assert any(p.field == field and message in p.message for p in info.value.problems), [
        str(p) for p in info.value.problems
    ]


def test_every_problem_is_reported_at_once():
    """A config with three mistakes reports all three, not just the first."""
    config = with_({"key": "Bad Key", "traffic": 2, "status": "paused"})
    with pytest.raises(InvalidConfig) as info:
        Experiment.from_dict(config)
    assert {p.field for p in info.value.problems} >= {"key", "traffic", "status"}


def test_non_object_and_bad_json_are_refused():
    """A JSON array or malformed text is an InvalidConfig, not a crash."""
    with pytest.raises(InvalidConfig, match="object"):
        Experiment.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="not valid JSON"):
        Experiment.from_json("{")


def test_caller_dict_is_not_mutated():
    """Building an experiment never changes the caller's dict."""
    config = with_({"overrides": {"qa": "v2"}})
    snapshot = json.dumps(config, sort_keys=True)
    Experiment.from_dict(config)
    assert json.dumps(config, sort_keys=True) == snapshot


def test_metric_shorthand_name_colon_type():
    """A metric may be written 'name:type', including quantile names that contain a colon."""
    experiment = Experiment.from_dict(with_({"guardrail_metrics": ["latency_ms:p95:quantile"]}))
    assert experiment.guardrail_metrics[0].name == "latency_ms:p95"


def test_layer_conflicts_find_overlaps_in_one_layer_only():
    """Overlapping ranges in the same layer conflict; other layers and touching ranges do not."""
    a = Experiment.from_dict(with_({"key": "a", "layer": {"name": "l", "range": [0, 0.5]}}))
    b = Experiment.from_dict(with_({"key": "b", "layer": {"name": "l", "range": [0.5, 1]}}))
    c = Experiment.from_dict(with_({"key": "c", "layer": {"name": "l", "range": [0.4, 0.6]}}))
    d = Experiment.from_dict(with_({"key": "d", "layer": {"name": "m", "range": [0, 1]}}))
    assert layer_conflicts([a, b, d]) == []
    problems = layer_conflicts([a, b, c])
    assert len(problems) == 2 and all("overlaps" in p.message for p in problems)
    assert Layer("l", 0, 0.5).overlaps(Layer("l", 0.25, 0.3))


@given(
    key=strategies.slugs,
    weights=st.lists(strategies.weights, min_size=2, max_size=5),
    traffic=strategies.traffic_fractions,
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    ),
)
def test_json_round_trip_is_lossless(key, weights, traffic, payload):
    """Any valid definition survives to_json -> from_json unchanged."""
    config = {
        "key": key,
        "traffic": traffic,
        "variants": [
            {"key": f"v{i}", "weight": w, "payload": payload} for i, w in enumerate(weights)
        ],
    }
    experiment = Experiment.from_dict(config)
    assert Experiment.from_json(experiment.to_json()) == experiment


def test_an_over_long_integer_in_a_file_is_a_problem_with_its_field():
    """A JSON integer longer than Python reads is reported where it is, not a traceback."""
    text = '{"key": "a", "variants": [{"key": "a", "payload": %s}, {"key": "b"}]}' % ("9" * 5000)
    with pytest.raises(InvalidConfig) as info:
        Experiment.from_json(text)
    assert [p.field for p in info.value.problems] == ["variants[0].payload"]


@pytest.mark.parametrize(
    ("change", "field"),
    [({"description": "bad \ud800"}, "description"), ({"key": "ranker-v2\n"}, "key"),
     ({"variants": [{"key": "v1", "weight": 1e308}, {"key": "v2", "weight": 1e308}]},
      "variants")],
)  # fmt: skip
def test_configs_that_could_not_be_stored_or_assigned_are_refused(change, field):
    """Lone surrogates, a trailing newline in a key and weights whose sum overflows."""
    with pytest.raises(InvalidConfig) as info:
        Experiment.from_dict(with_(change))
    assert field in [p.field for p in info.value.problems]
