"""The JSON Schema of an experiment definition, as published in the OpenAPI document. Pure.

`Experiment.from_dict` stays the one validator of a definition: it reports every problem
at once with its field, and most of its rules relate fields to each other (variant keys
unique, the control and every override naming a variant, a winner only when shipped, a
layer's start before its end, the weights' sum finite), which JSON Schema cannot say.  This
schema describes the shape that validator reads, built from the validator's own constants
(`SLUG_PATTERN`, `METRIC_NAME_PATTERN`, `MAX_UNIT_ID_LENGTH`, the operators, statuses and
metric types, the field list), and ``tests/test_experiment_schema.py`` checks the two
against each other: every field is described, every example validates, and definitions
generated from the schema are refused by ``from_dict`` only for those cross-field rules.
"""

from __future__ import annotations

from typing import Any, Final

from abtest.experiment import (
    _FIELDS,
    MAX_UNIT_ID_LENGTH,
    METRIC_NAME_PATTERN,
    SLUG_PATTERN,
    UNIT_ID_PATTERN,
    MetricType,
    Status,
)
from abtest.rollout_plan import rollout_plan_schema
from abtest.targeting import OPERATORS


def anchored(pattern: str) -> str:
    """``pattern`` for JSON Schema and pydantic-core, both of which search rather than match:
    anchored at both ends; their ``$`` never matches before a final newline."""
    return f"^{pattern}$"


_ORDER_OPS = ("gt", "gte", "lt", "lte")
# A unit id as `validate_unit_id` takes it: 1 to 256 characters, no NUL.
UNIT_ID_SCHEMA: Final = {
    "minLength": 1,
    "maxLength": MAX_UNIT_ID_LENGTH,
    "pattern": anchored(UNIT_ID_PATTERN),
}


def _rule() -> dict[str, Any]:
    """One targeting rule; the value's type depends on the operator (`Rule.build`)."""
    attribute = {"type": "string", "minLength": 1}

    def shape(ops: list[str], value: dict[str, Any] | None) -> dict[str, Any]:
        properties: dict[str, Any] = {"attribute": attribute, "op": {"enum": ops}}
        required = ["attribute", "op"]
        if value is not None:
            properties["value"] = value
            required.append("value")
        else:
            properties["value"] = {}
        return {"type": "object", "additionalProperties": False, "required": required,
                "properties": properties}  # fmt: skip

    equality = [op for op in OPERATORS if op not in ("in", "not_in", "exists", *_ORDER_OPS)]
    return {
        "oneOf": [
            shape(equality, None),
            shape(["in", "not_in"], {"type": "array"}),
            shape(list(_ORDER_OPS), {"type": ["number", "string"]}),
            shape(["exists"], {"type": "boolean"}),
        ]
    }


def _metric() -> dict[str, Any]:
    """A metric: ``{name, type, higher_is_better?, margin?}`` or the shorthand ``name:type``.

    The name's form depends on the type (`metric_name_problem`): a plain name, a ratio
    ``numerator/denominator`` or a quantile ``name:p95``.
    """
    plain = anchored(METRIC_NAME_PATTERN)
    forms = {
        MetricType.RATIO: anchored(f"{METRIC_NAME_PATTERN}/{METRIC_NAME_PATTERN}"),
        MetricType.QUANTILE: anchored(rf"{METRIC_NAME_PATTERN}:p[0-9]{{1,2}}(\.[0-9]+)?"),
    }
    objects = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "type"],
            "properties": {
                "name": {"type": "string", "pattern": forms.get(kind, plain)},
                "type": {"const": kind.value},
                "higher_is_better": {"type": "boolean", "default": True},
                "margin": _MARGIN,
                # Written by the service when it resolves a catalogue reference (pinned).
                "unit": {"type": "string", "maxLength": 32},
                "cap": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "description": "Each unit's value is capped at it (count, sum)",
                },
                "attribution_window_hours": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "catalogue_version": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "description": "The catalogue version this was resolved "
                    "from; must then equal it",
                },
            },
        }
        for kind in MetricType
    ]
    reference = {
        "type": "object",
        "additionalProperties": False,
        "required": ["catalogue"],
        "description": "A metric of the catalogue (GET /v1/metrics), resolved and pinned when "
        "the experiment is stored",
        "properties": {
            "catalogue": {"type": "string", "minLength": 1},
            "version": {"type": "integer", "minimum": 1,
                        "description": "Default: the version this experiment already pins, "
                        "else the latest"},
            "margin": _MARGIN,
        },
    }  # fmt: skip
    shorthand = "|".join(f"{forms.get(kind, plain)[1:-1]}:{kind.value}" for kind in MetricType)
    return {"oneOf": [*objects, reference, {"type": "string", "pattern": f"^({shorthand})$"}]}


_MARGIN: Final = {
    "type": ["number", "null"],
    "minimum": 0,
    "description": "Non-inferiority margin of a guardrail, relative",
}


def experiment_schema(*, key_in_body: bool = True) -> dict[str, Any]:
    """JSON Schema (2020-12, as OpenAPI 3.1 uses) of the body `Experiment.from_dict` reads.

    ``key_in_body=False`` is the form of a new version (``PUT``), whose key is the path's.
    """
    slug = {"type": "string", "pattern": anchored(SLUG_PATTERN)}
    optional_slug = {"type": "string", "pattern": f"^({SLUG_PATTERN})?$"}
    metric = _metric()
    properties: dict[str, Any] = {
        "key": {**slug, "description": "The experiment's key, used in URLs and Redis keys"},
        "seed": {**optional_slug, "description": "Hashing salt; defaults to the key"},
        "description": {"type": "string"},
        "owner": {"type": "string"},
        "hypothesis": {"type": "string"},
        "status": {
            "enum": [s.value for s in Status],
            "description": "Changed only by /start, /stop and /ship",
        },
        "winner": {"anyOf": [slug, {"type": "null"}]},
        "control": {**optional_slug, "description": "A variant key; defaults to the first"},
        "variants": {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key"],
                "properties": {
                    "key": slug,
                    "weight": {"type": "number", "exclusiveMinimum": 0, "default": 1},
                    "payload": {"description": "Any JSON value the app receives"},
                },
            },
        },
        "traffic": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1},
        "targeting": {"type": "array", "items": _rule()},
        "overrides": {
            "type": "object",
            "propertyNames": UNIT_ID_SCHEMA,
            "additionalProperties": slug,
            "description": "unit id -> variant key (QA)",
        },
        "layer": {
            "anyOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "range"],
                    "properties": {
                        "name": slug,
                        "range": {
                            "type": "array",
                            "minItems": 2,
                            "maxItems": 2,
                            "items": {"type": "number", "minimum": 0, "maximum": 1},
                        },
                    },
                },
                {"type": "null"},
            ]
        },
        "primary_metric": {"anyOf": [metric, {"type": "null"}]},
        "guardrail_metrics": {"type": "array", "items": metric},
        "secondary_metrics": {"type": "array", "items": metric},
        "planned_units_per_variant": {"type": ["integer", "null"], "minimum": 1},
        "minimum_detectable_effect": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "Relative effect the plan is powered for (0.03: 3%)",
        },
        "rollout": rollout_plan_schema(),
        "holdout": {
            "anyOf": [
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "share"],
                    "properties": {
                        "name": slug,
                        "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                    },
                },
                {"type": "null"},
            ],
            "description": "The global holdout covering it: written by /v1/holdout, a body's "
            "value is ignored",
        },
    }
    assert tuple(properties) == _FIELDS  # one description per field the validator reads
    if not key_in_body:
        del properties["key"]
    return {
        "title": "Experiment" if key_in_body else "ExperimentVersion",
        "type": "object",
        "additionalProperties": False,
        "required": ["key", "variants"] if key_in_body else ["variants"],
        "properties": properties,
    }
