"""The OpenAPI 3.1 description of the JSON API (``/v1/*`` and the operational endpoints).

``tests/test_service_openapi.py`` keeps it in step with the routes: every API route is
documented and nothing documented is missing.  The web console's HTML pages are not API.
A blueprint that adds a ``/v1`` route adds its entry here.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic.json_schema import models_json_schema

from abtest import __version__
from abtest.alerts import STATUSES
from abtest.auth import KEY_ID_PATTERN
from abtest.catalogue import CATALOGUE_NAME_PATTERN
from abtest.events import MAX_BATCH_EVENTS
from abtest.experiment import SLUG_PATTERN, Status
from abtest.experiment_schema import UNIT_ID_SCHEMA, anchored, experiment_schema
from abtest.rollout_store import MAX_CHECKS
from service.monitor.webhooks import LOG_LIMIT
from service.openapi_factory import FACTORY_MODELS, factory_paths
from service.schemas import MODELS

_ERROR: Final = {"$ref": "#/components/schemas/Error"}
_ANY: Final[dict[str, Any]] = {"type": "object"}
_REF: Final = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def request_schemas() -> dict[str, Any]:
    """The request bodies' JSON Schemas by name: the pydantic models the views validate
    with (`service.schemas`), and the experiment definition (`abtest.experiment_schema`)."""
    models = (*MODELS, *FACTORY_MODELS)
    _, rendered = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    return {
        **rendered["$defs"],
        "Experiment": experiment_schema(),
        "ExperimentVersion": experiment_schema(key_in_body=False),
    }


_PROMETHEUS: Final = "text/plain; version=0.0.4; charset=utf-8"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _op(summary: str, role: str | None, ok: int = 200, body: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None, *, response_type: str = "application/json",
        too_large: bool = False, invalid_config: bool = False,
        **extra: Any) -> dict[str, Any]:  # fmt: skip
    """One operation; every one may answer a 4xx error body, and 503 when Redis is down."""
    schema = {"type": "string"} if response_type == _PROMETHEUS else (response or _ANY)
    responses = {
        str(ok): {"description": "OK", "content": {response_type: {"schema": schema}}},
        "4XX": _error("Bad input: the error names the field"),
        "503": _error("Redis unavailable"),
    }
    if too_large:
        responses["413"] = _error("More items than the documented limit, or a body over 1 MiB")
    if invalid_config:
        responses["422"] = _error("The definition breaks a rule; `problems` lists every one")
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": responses,
        "security": [] if role is None else [{"bearer": []}],
        "x-role": role,
        **extra,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _unchanged_ok(operation: dict[str, Any]) -> dict[str, Any]:
    """A write that answers 200 when it changed nothing, beside its 201."""
    created = operation["responses"]["201"]
    operation["responses"]["200"] = {**created, "description": "Unchanged: the current version"}
    return operation


def _key_param(name: str = "key") -> list[dict[str, Any]]:
    schema: dict[str, Any] = {"type": "string", "pattern": anchored(SLUG_PATTERN)}
    if name == "key_id":
        schema["pattern"] = anchored(KEY_ID_PATTERN)
    return [{"name": name, "in": "path", "required": True, "schema": schema}]


def _optional_body(operation: dict[str, Any]) -> dict[str, Any]:
    """``operation`` with its request body optional (none: the same as ``{}``)."""
    operation["requestBody"]["required"] = False
    return operation


def alert_paths(by_key: list[dict[str, Any]]) -> dict[str, Any]:
    """The alert and webhook operations (`service.alerts`, `service.webhooks`)."""
    status = {
        "name": "status",
        "in": "query",
        "required": False,
        "schema": {"enum": list(STATUSES), "default": "active"},
    }
    since = {
        "name": "since",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "date-time"},
        "description": "Alerts active at some time since then",
    }
    experiment = {
        "name": "experiment",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": anchored(SLUG_PATTERN)},
    }
    by_id = _key_param("webhook_id")
    return {
        "/v1/alerts": {
            "get": _op("Alerts of every experiment (?experiment=, ?status=, ?since=)", "admin",
                       parameters=[experiment, status, since])
        },
        "/v1/experiments/{key}/alerts": {
            "get": _op("One experiment's alerts (?status=, ?since=)", "admin",
                       parameters=[*by_key, status, since])
        },
        "/v1/webhooks": {
            "get": _op("List webhooks with their deliveries by status", "admin"),
            "post": _op("Register a webhook (its secret is write-only)", "admin", ok=201,
                        body=_ref("WebhookBody")),
        },
        "/v1/webhooks/{webhook_id}": {
            "get": _op("One webhook", "admin", parameters=by_id),
            "delete": _op("Remove a webhook and its deliveries", "admin", parameters=by_id),
        },
        "/v1/webhooks/{webhook_id}/deliveries": {
            "get": _op("A webhook's deliveries: pending, then ended (newest first)", "admin",
                       parameters=[*by_id, {"name": "limit", "in": "query", "required": False,
                                            "schema": {"type": "integer", "minimum": 1,
                                                       "maximum": LOG_LIMIT}}])
        },
    }  # fmt: skip


def spec() -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    assignment = _ref("Assignment")
    by_key = _key_param()
    return {
        "openapi": "3.1.0",
        "info": {"title": "abtest", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **request_schemas(),
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
                "Assignment": {
                    "type": "object",
                    "properties": {
                        "experiment": {"type": "string"},
                        "unit_id": {"type": "string"},
                        "variant": {"type": ["string", "null"]},
                        "payload": {},
                        "in_experiment": {"type": "boolean"},
                        "reason": {"type": "string"},
                        "config_version": {"type": "integer"},
                    },
                },
            },
        },
        "paths": {
            "/healthz": {"get": _op("200 when Redis answers, else 503", None)},
            "/metrics": {"get": _op("Prometheus metrics", None, response_type=_PROMETHEUS)},
            "/openapi.json": {"get": _op("This document", None)},
            "/v1/assign": {
                "post": _op("Assign one unit (sticky; first exposure logged)", "sdk",
                            body=_ref("AssignBody"), response=assignment)
            },
            "/v1/assign/batch": {
                "post": _op("Assign many units in one call (all or nothing; answers in order)",
                            "sdk", body=_ref("AssignBatchBody"), too_large=True,
                            response={"type": "object", "properties": {
                                "assignments": {"type": "array", "items": assignment}}})
            },
            "/v1/assignments": {
                "get": _op("The unit's assignments in every running or shipped experiment "
                           "(attributes as attr.<name>=<JSON or text>)", "sdk",
                           parameters=[{"name": "unit_id", "in": "query", "required": True,
                                        "schema": {"type": "string", **UNIT_ID_SCHEMA}}])
            },
            "/v1/events": {
                "post": _op(f"Outcome events, at most {MAX_BATCH_EVENTS} per batch, idempotent "
                            "by event_id", "sdk", ok=202, body=_ref("EventBatch"), too_large=True)
            },
            "/v1/experiments": {
                "get": _op("List experiments (?status=)", "sdk", parameters=[
                    {"name": "status", "in": "query", "required": False,
                     "schema": {"enum": [s.value for s in Status]}}]),
                "post": _op("Create a draft experiment", "admin", ok=201, body=_ref("Experiment"),
                            invalid_config=True),
            },
            "/v1/experiments/{key}": {
                "get": _op("The current version", "sdk", parameters=by_key),
                "put": _op("Store a new version (?force=true to move assigned units)", "admin",
                           body=_ref("ExperimentVersion"), invalid_config=True,
                           parameters=[*by_key, {"name": "force", "in": "query",
                                                 "required": False,
                                                 "schema": {"type": "boolean"}}]),
            },
            "/v1/experiments/{key}/start": {"post": _op("Start", "admin", parameters=by_key)},
            "/v1/experiments/{key}/stop": {"post": _op("Stop", "admin", parameters=by_key)},
            "/v1/experiments/{key}/ship": {
                "post": _op("Ship a variant to everyone", "admin", parameters=by_key,
                            body=_ref("ShipBody"))
            },
            "/v1/experiments/{key}/history": {
                "get": _op("Every version with time, key id and diff", "admin", parameters=by_key)
            },
            "/v1/experiments/{key}/exposures": {
                "get": _op("Exposures per variant and day, with the SRM p-value", "admin",
                           parameters=by_key)
            },
            "/v1/experiments/{key}/results": {
                "get": _op("Analysis results from the exported files (service.results)", "admin",
                           parameters=by_key)
            },
            "/v1/experiments/{key}/rollout": {
                "get": _op("The guarded rollout: plan, step, state, actions and the newest "
                           "checks (?limit=, default 200)", "admin",
                           parameters=[*by_key, {"name": "limit", "in": "query",
                                                 "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": MAX_CHECKS}}])
            },
            **{
                f"/v1/experiments/{{key}}/rollout/{action}": {
                    "post": _optional_body(
                        _op(summary, "admin", parameters=by_key, body=_ref("ReasonBody"))
                    )
                }
                for action, summary in (
                    ("pause", "Hold the rollout at its step (it still rolls back on harm)"),
                    ("resume", "Let the monitor advance a paused rollout again"),
                    ("rollback", "Roll back: everyone is served control"),
                )
            },
            "/v1/clock": {
                "get": _op("The service's time and clock mode (system or controlled)", "admin"),
                "post": _op("Move the controlled clock (ABTEST_CLOCK=controlled only, else 409; "
                            "never backwards)", "admin",
                            body=_ref("ClockBody")),
            },
            **alert_paths(by_key),
            "/v1/metrics": {
                "get": _op("The metric catalogue, and events received per unknown metric",
                           "sdk"),
                "put": _unchanged_ok(_op(
                    "Store a metric definition as its next version (audited)", "admin", ok=201,
                    body=_ref("MetricBody"), invalid_config=True)),
            },
            "/v1/metrics/{name}": {
                "get": _op("One metric with every version and its audit entry", "sdk",
                           parameters=[{"name": "name", "in": "path", "required": True,
                                        "schema": {"type": "string",
                                                   "pattern": anchored(CATALOGUE_NAME_PATTERN)}}])
            },
            "/v1/keys": {
                "get": _op("List API keys", "admin"),
                "post": _op("Create an API key (shown once)", "admin", ok=201,
                            body=_ref("KeyBody")),
            },
            "/v1/keys/{key_id}": {
                "delete": _op("Revoke an API key", "admin", parameters=_key_param("key_id"))
            },
            **factory_paths(_op, by_key),
        },
    }  # fmt: skip
