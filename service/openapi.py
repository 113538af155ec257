"""The OpenAPI 3.1 description of the JSON API (``/v1/*`` and the operational endpoints).

``tests/test_service_openapi.py`` keeps it in step with the routes: every API route is
documented and nothing documented is missing.  The web console's HTML pages are not API.
A blueprint that adds a ``/v1`` route adds its entry here.
"""

from __future__ import annotations

from typing import Any, Final

from abtest import __version__
from abtest.alerts import STATUSES, Severity
from abtest.events import MAX_BATCH_EVENTS, MAX_EVENT_ID_LENGTH
from abtest.store import MAX_BATCH_ASSIGNMENTS, MAX_REASON_LENGTH
from service.monitor.webhooks import (
    LOG_LIMIT,
    MAX_DESCRIPTION_LENGTH,
    MAX_SECRET_LENGTH,
    MAX_URL_LENGTH,
    MIN_SECRET_LENGTH,
)

_ERROR: Final = {"$ref": "#/components/schemas/Error"}
_ANY: Final[dict[str, Any]] = {"type": "object"}


def _op(summary: str, role: str | None, ok: int = 200, body: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(ok): {
                "description": "OK",
                "content": {"application/json": {"schema": response or _ANY}},
            },
            "4XX": {
                "description": "Bad input",
                "content": {"application/json": {"schema": _ERROR}},
            },
            "503": {
                "description": "Redis unavailable",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
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


def _key_param(name: str = "key") -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


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
        "schema": {"type": "string"},
    }
    by_id = _key_param("webhook_id")
    webhook_body = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH},
            "secret": {
                "type": "string",
                "minLength": MIN_SECRET_LENGTH,
                "maxLength": MAX_SECRET_LENGTH,
                "writeOnly": True,
                "description": "Signs each delivery; generated (and returned once) when absent",
            },
            "min_severity": {"enum": [s.value for s in Severity], "default": "warning"},
            "kinds": {"type": "array", "items": {"type": "string"}},
            "experiments": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION_LENGTH},
        },
    }
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
                        body=webhook_body),
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
    assign_body = {
        "type": "object",
        "required": ["experiment", "unit_id"],
        "properties": {
            "experiment": {"type": "string"},
            "unit_id": {"type": "string", "maxLength": 256},
            "attributes": {"type": "object"},
        },
    }
    assign_batch_body = {
        "type": "object",
        "required": ["requests"],
        "properties": {
            "requests": {"type": "array", "items": assign_body, "minItems": 1,
                         "maxItems": MAX_BATCH_ASSIGNMENTS},
        },
    }  # fmt: skip
    assignment = {"$ref": "#/components/schemas/Assignment"}
    event = {
        "type": "object",
        "required": ["event_id", "unit_id", "metric"],
        "properties": {
            "event_id": {"type": "string", "maxLength": MAX_EVENT_ID_LENGTH},
            "unit_id": {"type": "string", "maxLength": 256},
            "metric": {"type": "string", "maxLength": 64},
            "value": {"type": "number", "default": 1},
            "timestamp": {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]},
        },
    }
    events_body = {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "items": event, "maxItems": MAX_BATCH_EVENTS}},
    }
    by_key = _key_param()
    return {
        "openapi": "3.1.0",
        "info": {"title": "abtest", "version": __version__},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
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
            "/metrics": {"get": _op("Prometheus metrics (text)", None)},
            "/openapi.json": {"get": _op("This document", None)},
            "/v1/assign": {
                "post": _op("Assign one unit (sticky; first exposure logged)", "sdk",
                            body=assign_body, response=assignment)
            },
            "/v1/assign/batch": {
                "post": _op("Assign many units in one call (all or nothing; answers in order)",
                            "sdk", body=assign_batch_body,
                            response={"type": "object", "properties": {
                                "assignments": {"type": "array", "items": assignment}}})
            },
            "/v1/assignments": {
                "get": _op("The unit's assignments in every running or shipped experiment", "sdk",
                           parameters=[{"name": "unit_id", "in": "query", "required": True,
                                        "schema": {"type": "string"}}])
            },
            "/v1/events": {
                "post": _op(f"Outcome events, at most {MAX_BATCH_EVENTS} per batch, idempotent "
                            "by event_id", "sdk", ok=202, body=events_body)
            },
            "/v1/experiments": {
                "get": _op("List experiments (?status=)", "sdk"),
                "post": _op("Create a draft experiment", "admin", ok=201, body=_ANY),
            },
            "/v1/experiments/{key}": {
                "get": _op("The current version", "sdk", parameters=by_key),
                "put": _op("Store a new version (?force=true to move assigned units)", "admin",
                           body=_ANY, parameters=by_key),
            },
            "/v1/experiments/{key}/start": {"post": _op("Start", "admin", parameters=by_key)},
            "/v1/experiments/{key}/stop": {"post": _op("Stop", "admin", parameters=by_key)},
            "/v1/experiments/{key}/ship": {
                "post": _op("Ship a variant to everyone", "admin", parameters=by_key,
                            body={"type": "object", "required": ["variant"],
                                  "properties": {"variant": {"type": "string"},
                                                 "reason": {"type": "string",
                                                            "maxLength": MAX_REASON_LENGTH}}})
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
                                                            "maximum": 2000}}])
            },
            **{
                f"/v1/experiments/{{key}}/rollout/{action}": {
                    "post": _op(summary, "admin", parameters=by_key,
                                body={"type": "object", "properties": {
                                    "reason": {"type": "string",
                                               "maxLength": MAX_REASON_LENGTH}}})
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
                            body={"type": "object", "required": ["now"], "properties": {
                                "now": {"oneOf": [{"type": "string", "format": "date-time"},
                                                  {"type": "number"}]}}}),
            },
            **alert_paths(by_key),
            "/v1/keys": {
                "get": _op("List API keys", "admin"),
                "post": _op("Create an API key (shown once)", "admin", ok=201,
                            body={"type": "object", "required": ["role"],
                                  "properties": {"role": {"enum": ["admin", "sdk"]},
                                                 "name": {"type": "string"}}}),
            },
            "/v1/keys/{key_id}": {
                "delete": _op("Revoke an API key", "admin", parameters=_key_param("key_id"))
            },
        },
    }  # fmt: skip
