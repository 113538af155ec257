"""The published experiment schema against the validator it describes (`Experiment.from_dict`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from jsonschema_rs import Draft202012Validator

from abtest import InvalidConfig
from abtest.experiment import _FIELDS, Experiment
from abtest.experiment_schema import experiment_schema

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.json"))
# jsonschema-rs matches patterns as ECMA-262 does (``$`` is the end of the text; Python's
# ``re.search`` also lets it match before a final newline, which JSON Schema does not).
VALIDATOR = Draft202012Validator(experiment_schema())

# What JSON Schema cannot say: rules between fields (and a quantile level of 0), and a
# rollout plan's against the variants and guardrails, and its steps' order.
CROSS_FIELD = ("duplicate variant key", "is not a variant", "only a shipped experiment",
               "needs a winner", "0 <= start < end", "is listed twice", "the weights add up",
               "too small beside", "not a quantile name", "needs a",
               "compares one new variant", "is the control", "weight share",
               "is not a guardrail metric", "steps must increase",
               "the last step must be 1",
               # the store resolves catalogue references; caps suit count and sum only
               "reference is resolved by the service", "can be capped")  # fmt: skip


def test_every_field_the_validator_reads_is_described():
    """The schema's properties are exactly the fields ``from_dict`` reads."""
    assert tuple(experiment_schema()["properties"]) == _FIELDS
    assert "key" not in experiment_schema(key_in_body=False)["properties"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_and_their_full_form_match_the_schema(path):
    """Each shipped example, and its ``to_dict()`` with every default, is schema-valid."""
    data = json.loads(path.read_text(encoding="utf-8"))
    assert VALIDATOR.is_valid(data)
    assert VALIDATOR.is_valid(Experiment.from_dict(data).to_dict())


@pytest.mark.parametrize(
    "config",
    [{"key": "x"}, {"key": "x\n", "variants": [{"key": "a"}, {"key": "b"}]},
     {"key": "x", "variants": [{"key": "a", "weight": 0}, {"key": "b"}]},
     {"key": "x", "variants": [{"key": "a"}, {"key": "b"}], "traffic": 1.5},
     {"key": "x", "variants": [{"key": "a"}, {"key": "b"}], "colour": 1},
     {"key": "x", "variants": [{"key": "a"}, {"key": "b"}],
      "targeting": [{"attribute": "n", "op": "gte", "value": True}]},
     {"key": "x", "variants": [{"key": "a"}, {"key": "b"}], "primary_metric": "a/b:count"}],
)  # fmt: skip
def test_what_the_schema_refuses_the_validator_refuses(config: dict[str, Any]) -> None:
    """Schema-invalid configs are invalid for the model too."""
    assert not VALIDATOR.is_valid(config)
    with pytest.raises(InvalidConfig):
        Experiment.from_dict(config)


@pytest.fixture(scope="module")
def schema_configs(request: pytest.FixtureRequest) -> Any:
    """Experiment bodies generated from the published schema (schemathesis' generator)."""
    import schemathesis

    raw = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
           "paths": {"/e": {"post": {"requestBody": {"required": True, "content": {
               "application/json": {"schema": experiment_schema()}}},
               "responses": {"200": {"description": "OK"}}}}}}  # fmt: skip
    operation = next(schemathesis.openapi.from_dict(raw).get_all_operations()).ok()
    return operation.as_strategy()


@pytest.mark.slow
def test_schema_valid_configs_break_only_cross_field_rules(schema_configs: Any) -> None:
    """A config the schema accepts is valid for the model, or breaks only a rule between
    fields; the schema never promises a shape the validator refuses."""

    @given(case=schema_configs)
    @settings(max_examples=100, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(case: Any) -> None:
        assert VALIDATOR.is_valid(case.body)
        try:
            Experiment.from_dict(case.body)
        except InvalidConfig as exc:
            other = [p for p in exc.problems if not any(r in p.message for r in CROSS_FIELD)]
            assert other == [], other

    check()
