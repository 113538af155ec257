"""``/v1/alerts`` and ``/v1/experiments/<key>/alerts``: the monitor's alerts (admin).

Filters: ``experiment`` (``/v1/alerts`` only), ``status`` (``active``, the default,
``resolved`` or ``all``) and ``since`` (an ISO 8601 time: alerts active at some time since
then).  The alert book is `service.monitor.alerts`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request

from abtest.errors import InvalidInput
from service.extension import abtest
from service.monitor.alerts import AlertBook
from service.validation import experiment_key

bp = Blueprint("alerts", __name__)


def since_parameter() -> datetime | None:
    """``?since=``: an ISO 8601 time (UTC when it names no zone); 400 otherwise."""
    raw = request.args.get("since")
    if raw is None or raw == "":
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("an ISO 8601 time such as 2024-05-01T12:00:00Z", "since") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _listing(experiments: list[str]) -> list[dict[str, object]]:
    book = AlertBook(abtest().redis)
    found = book.alerts(experiments, status=request.args.get("status", "active"),
                        since=since_parameter())  # fmt: skip
    return [alert.to_dict() for alert in found]


@bp.get("/v1/alerts")
def listing() -> Response:
    """Alerts of every experiment (or of ``?experiment=``), active ones first."""
    store = abtest().store
    wanted = request.args.get("experiment")
    if wanted is not None:
        experiments = [store.get_experiment(experiment_key(wanted)).experiment.key]
    else:
        experiments = [stored.experiment.key for stored in store.list_experiments()]
    return jsonify({"alerts": _listing(experiments)})


@bp.get("/v1/experiments/<key>/alerts")
def of_experiment(key: str) -> Response:
    """One experiment's alerts; 404 for an unknown experiment."""
    abtest().store.get_experiment(key)
    return jsonify({"experiment": key, "alerts": _listing([key])})
