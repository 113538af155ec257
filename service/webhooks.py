"""``/v1/webhooks``: register, list and remove webhooks, and read their deliveries (admin).

A webhook's secret signs every delivery (`abtest.webhook_signature`); it is write-only:
given in the ``POST`` (`service.schemas.WebhookBody`), or generated there and returned that
once; never shown again.
Deliveries are made by the monitor (`service.monitor.webhooks`).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from abtest.alerts import Severity
from abtest.errors import InvalidInput
from service.extension import abtest
from service.monitor.webhooks import LOG_LIMIT, Webhooks
from service.schemas import WebhookBody
from service.validation import json_body

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")


def _hooks() -> Webhooks:
    return Webhooks(abtest().redis)


@bp.post("")
def create() -> tuple[Response, int]:
    """A new webhook; the answer holds its secret only when it was generated here."""
    body = json_body(WebhookBody)
    webhook, secret = _hooks().create_webhook(
        body.url, secret=body.secret, min_severity=Severity(body.min_severity),
        kinds=body.kinds, experiments=body.experiments, description=body.description,
    )  # fmt: skip
    answer = webhook.to_dict()
    if body.secret is None:
        answer["secret"] = secret
    return jsonify(answer), 201


@bp.get("")
def listing() -> Response:
    """Every webhook (never a secret), with its deliveries counted by status."""
    hooks = _hooks()
    counts = hooks.status_counts()
    return jsonify({"webhooks": [
        {**w.to_dict(), "deliveries": {status: n for (hook, status), n in counts.items()
                                       if hook == w.id}}
        for w in hooks.list_webhooks()
    ]})  # fmt: skip


@bp.get("/<webhook_id>")
def get(webhook_id: str) -> Response:
    """One webhook; 404 when there is none."""
    return jsonify(_hooks().get_webhook(webhook_id).to_dict())


@bp.delete("/<webhook_id>")
def delete(webhook_id: str) -> Response:
    """Remove a webhook, its delivery log and its pending deliveries."""
    return jsonify(_hooks().delete_webhook(webhook_id).to_dict())


@bp.get("/<webhook_id>/deliveries")
def deliveries(webhook_id: str) -> Response:
    """The webhook's pending deliveries, then its ended ones, newest first (``?limit=``,
    at most the log's size)."""
    raw = request.args.get("limit", str(LOG_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= LOG_LIMIT:
        raise InvalidInput(f"an integer from 1 to {LOG_LIMIT}", "limit")
    found = _hooks().deliveries(webhook_id, limit=int(raw))
    return jsonify({"webhook": webhook_id, "deliveries": [d.to_dict() for d in found]})
