"""``/v1/webhooks``: register, list and remove webhooks, and read their deliveries (admin).

A webhook's secret signs every delivery (`abtest.webhook_signature`); it is write-only:
given in the ``POST`` (or generated there and returned that once), never shown again.
Deliveries are made by the monitor (`service.monitor.webhooks`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from abtest.alerts import Severity, parse_severity
from abtest.errors import InvalidInput
from service.extension import abtest
from service.monitor.webhooks import LOG_LIMIT, Webhooks
from service.validation import json_object

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")

_FIELDS = ("url", "secret", "min_severity", "kinds", "experiments", "description")


def _hooks() -> Webhooks:
    return Webhooks(abtest().redis)


def _strings(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise InvalidInput("must be a list of names", name)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidInput("must be a string", f"{name}[{i}]")
    return value


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput("must be a string", name)
    return value


@bp.post("")
def create() -> tuple[Response, int]:
    """A new webhook; the answer holds its secret only when it was generated here."""
    body = json_object(allowed=_FIELDS)
    severity = body.get("min_severity", Severity.WARNING.value)
    webhook, secret = _hooks().create_webhook(
        _text(body, "url") or "", secret=_text(body, "secret"),
        min_severity=parse_severity(severity, "min_severity"),
        kinds=_strings(body, "kinds"), experiments=_strings(body, "experiments"),
        description=_text(body, "description") or "",
    )  # fmt: skip
    answer = webhook.to_dict()
    if "secret" not in body:
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
