"""``/v1/metrics``: the metric catalogue (definitions, their versions and audit trail) and
the events received for metrics nothing knows."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from abtest.auth import Role
from abtest.catalogue import MetricDefinition
from service.extension import abtest
from service.schemas import MetricBody
from service.security import requires
from service.validation import json_body

bp = Blueprint("catalogue", __name__, url_prefix="/v1/metrics")


@bp.get("")
@requires(Role.SDK)
def listing() -> Response:
    """Every metric's current definition, and events accepted per unknown metric name."""
    store = abtest().store
    return jsonify({
        "metrics": [entry.to_dict() for entry in store.catalogue.entries()],
        "unknown": store.catalogue.unknown_counts(),
    })  # fmt: skip


@bp.put("")
def put() -> tuple[Response, int]:
    """Store a definition as the metric's next version (200 unchanged, 201 a new version)."""
    body = json_body(MetricBody)
    definition = MetricDefinition.from_dict(
        body.model_dump(mode="json", exclude={"reason", "base_version"})
    )
    ext = abtest()
    entry, changed = ext.store.catalogue.put(
        definition, key_id=str(g.api_key.id), reason=body.reason, base_version=body.base_version
    )
    ext.known_metrics.forget()
    return jsonify({**entry.to_dict(), "changed": changed}), 201 if changed else 200


@bp.get("/<path:name>")
@requires(Role.SDK)
def get(name: str) -> Response:
    """One metric's current definition with every version and its audit entry."""
    catalogue = abtest().store.catalogue
    entry = catalogue.get(name)
    return jsonify({**entry.to_dict(), "versions": catalogue.versions(name)})
