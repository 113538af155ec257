"""``POST /v1/events``: outcome events, idempotent by ``event_id`` (limits in abtest.events);
events for unknown metrics are refused, counted or kept (`service.known_metrics`)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from abtest.auth import Role
from abtest.events import parse_event_batch
from service import known_metrics
from service.extension import abtest
from service.security import requires
from service.validation import json_object

bp = Blueprint("events", __name__, url_prefix="/v1")


@bp.post("/events")
@requires(Role.SDK)
def record() -> tuple[Response, int]:
    """Validate the whole batch (`abtest.events.EventBatch`), then append it atomically:
    202 ``{accepted, duplicates}``."""
    events = parse_event_batch(json_object())
    ext = abtest()
    how = known_metrics.mode(current_app.config)
    unknown = ext.known_metrics.check(ext.store, events, how)
    accepted, duplicates = ext.store.record_events(events)
    if unknown and how == "count":  # once stored (a retried batch counts again)
        ext.store.catalogue.count_unknown(events[i].metric for i in unknown)
    return jsonify({"accepted": accepted, "duplicates": duplicates}), 202
