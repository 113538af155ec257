"""Operational endpoints without a key: ``/healthz``, ``/metrics``, ``/openapi.json``."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify

from service.errors import store_unavailable
from service.extension import abtest
from service.openapi import spec
from service.security import public

bp = Blueprint("system", __name__)


@bp.get("/healthz")
@public
def healthz() -> tuple[Response, int]:
    """200 when Redis answers PING, else 503."""
    try:
        abtest().redis.ping()
    except redis.RedisError as exc:
        return store_unavailable(exc)
    return jsonify({"status": "ok"}), 200


@bp.get("/metrics")
@public
def metrics() -> Response:
    """Prometheus text format."""
    ext = abtest()
    return ext.metrics.render(ext.store)


@bp.get("/openapi.json")
@public
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    return jsonify(spec())
