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
    """200 when Redis answers PING, else 503; ``monitor`` says whether a monitor runs
    (``ok``, ``stale`` or ``none``, `service.monitor.heartbeat`), with each monitor and
    each running rollout's last check (``overdue`` when older than three intervals).  A
    stale monitor does not make the service unhealthy: it keeps serving."""
    from abtest.rollout_store import Rollouts
    from service.monitor.heartbeat import monitor_health

    ext = abtest()
    try:
        ext.redis.ping()
        health = monitor_health(ext.redis, Rollouts(ext.store), ext.store.list_experiments(),
                                ext.clock.now())  # fmt: skip
    except redis.RedisError as exc:
        return store_unavailable(exc)
    return jsonify({"status": "ok", "monitor": health}), 200


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
