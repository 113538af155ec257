"""One place maps errors to JSON: ``{"error": {"code", "message", "field"}}``.

`AbtestError` subclasses become 4xx (503 for `StoreUnavailable`); Redis failures become 503;
Flask's HTTP errors (unknown route, wrong method, body too large) keep their status.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import redis
from flask import Flask, Response, jsonify
from redis.exceptions import RedisClusterException
from werkzeug.exceptions import HTTPException

from abtest.errors import (
    AbtestError,
    Conflict,
    Forbidden,
    InvalidConfig,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthorized,
)

STATUS: Final[dict[type[AbtestError], int]] = {
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    InvalidConfig: 422,
    StoreUnavailable: 503,
}
_HTTP_CODES: Final = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
_log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, field: str | None = None,
                   **extra: Any) -> tuple[Response, int]:  # fmt: skip
    """The JSON error body with its status."""
    return jsonify({"error": {"code": code, "message": message, "field": field, **extra}}), status


def _abtest_error(exc: AbtestError) -> tuple[Response, int]:
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
    extra: dict[str, Any] = {}
    if isinstance(exc, InvalidConfig):
        extra["problems"] = [{"field": p.field, "message": p.message} for p in exc.problems]
    response, status = error_response(status, exc.code, exc.message, exc.field, **extra)
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = "Bearer"
    return response, status


STORE_UNAVAILABLE_MESSAGE: Final = "the store is unavailable; see the server log"


def store_unavailable(exc: Exception) -> tuple[Response, int]:
    """503 with a generic message: Redis's own text names its address, which stays in the log.

    A Redis Cluster in failover or resharding (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a refused
    node, an uncovered slot: some of them not `redis.RedisError`) is a moment to retry, not
    a server bug.
    """
    _log.warning("redis error: %s: %s", type(exc).__name__, exc)
    return error_response(503, StoreUnavailable.code, STORE_UNAVAILABLE_MESSAGE)


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "invalid_input" if status < 500 else "internal_error")
    return error_response(status, code, exc.description or exc.name)


def _unexpected(exc: Exception) -> tuple[Response, int]:
    _log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on ``app``."""
    app.register_error_handler(AbtestError, _abtest_error)
    app.register_error_handler(redis.RedisError, store_unavailable)
    app.register_error_handler(RedisClusterException, store_unavailable)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
