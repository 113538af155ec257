"""The OpenAPI entries of the model factory's endpoints (holdout, challengers), merged into
`service.openapi.spec` in one place so the two files change independently."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from abtest.challengers import MAX_INTEGER_VERSION, MAX_MODEL_NAME, MAX_MODEL_VERSION
from abtest.experiment import SLUG_PATTERN
from abtest.experiment_schema import anchored

_ANY: Final[dict[str, Any]] = {"type": "object"}
_SLUG: Final = anchored(SLUG_PATTERN)
_NOT_BLANK: Final = r"\S"  # somewhere: JSON Schema patterns search

_HOLDOUT_BODY: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["name", "share"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": _SLUG,
                 "description": "A slug; the salt of the holdout draw"},
        "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
        "covers": {"oneOf": [
            {"const": "all"},
            {"type": "object", "additionalProperties": False, "properties": {
                "experiments": {"type": "array", "items": {"type": "string"}},
                "layers": {"type": "array", "items": {"type": "string"}}}},
        ]},
        "description": {"type": "string", "maxLength": 2000},
    },
}  # fmt: skip


_CHALLENGER_BODY: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["model"],
    "additionalProperties": False,
    "properties": {
        "model": {"type": "object", "required": ["name", "version"],
                  "additionalProperties": False,
                  "properties": {
                      "name": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_NAME,
                               "pattern": _NOT_BLANK},
                      "version": {"anyOf": [
                          {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_VERSION,
                           "pattern": _NOT_BLANK},
                          {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER_VERSION},
                      ]}}},
        "payload": {"type": "object", "description": "Extra payload (e.g. the endpoint)"},
        "variant": {"type": "string", "pattern": _SLUG},
        "experiment": {"type": "string", "pattern": _SLUG,
                       "description": "The new experiment's key, when one is created"},
    },
}  # fmt: skip


def factory_paths(
    op: Callable[..., dict[str, Any]], by_key: list[dict[str, Any]]
) -> dict[str, Any]:
    """The path items, built with `service.openapi`'s operation builder ``op`` and its
    ``{key}`` path parameter ``by_key``."""
    time_param = [
        {
            "name": n,
            "in": "query",
            "required": False,
            "schema": {"type": "string", "format": "date-time"},
        }
        for n in ("start", "end")
    ]
    return {
        "/v1/experiments/{key}/challengers": {
            "post": op("Register a model version as a challenger of the lineage's champion "
                       "(idempotent by model version; 201 created, 200 known)", "admin",
                       ok=201, body=_CHALLENGER_BODY, parameters=by_key),
        },
        "/v1/experiments/{key}/lineage": {
            "get": op("The experiment and its challengers' successors; head: the newest",
                      "admin", parameters=by_key),
        },
        "/v1/holdout": {
            "get": op("The global holdout, its period start and the experiments it covers",
                      "admin"),
            "put": op("Set the global holdout (?force=true to move assigned units); audited",
                      "admin", body=_HOLDOUT_BODY),
            "delete": op("Release the global holdout (audited)", "admin"),
        },
        "/v1/holdout/history": {"get": op("The holdout's audit entries", "admin")},
        "/v1/holdout/sync": {
            "post": op("Bring every experiment to the current holdout", "admin")
        },
        "/v1/holdout/results": {
            "get": op("The rest against the holdout over a period (analysis.holdout)", "admin",
                      parameters=[{"name": "metric", "in": "query", "required": False,
                                   "schema": {"type": "string"}}, *time_param])
        },
    }  # fmt: skip
