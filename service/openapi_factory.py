"""The OpenAPI entries of the model factory's endpoints (holdout, challengers), merged into
`service.openapi.spec` in one place so the two files change independently; their request
bodies are the pydantic models the views validate with (`FACTORY_MODELS`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel

from abtest.challengers import ChallengerBody
from abtest.holdout_requests import HoldoutBody

# The request bodies, validated by the views with these models and published from them.
FACTORY_MODELS: Final = (ChallengerBody, HoldoutBody)


def _body(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


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
                       ok=201, body=_body(ChallengerBody), parameters=by_key),
        },
        "/v1/experiments/{key}/lineage": {
            "get": op("The experiment and its challengers' successors; head: the newest",
                      "admin", parameters=by_key),
        },
        "/v1/holdout": {
            "get": op("The global holdout, its period start and the experiments it covers",
                      "admin"),
            "put": op("Set the global holdout (?force=true to move assigned units); audited",
                      "admin", body=_body(HoldoutBody)),
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
