"""``/v1/holdout``: the global holdout's definition, audit trail and cumulative analysis.

``PUT`` sets it (409 when running experiments with assigned units would gain members,
unless ``?force=true``), ``DELETE`` releases it, ``POST /sync`` repairs experiments left
behind by an interrupted write, ``GET /results`` exports the holdout logs and events and
compares the rest with the holdout (`analysis.holdout.analyze_holdout`).  Admin key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from abtest.errors import Conflict, InvalidInput
from abtest.export import Kind, export, files, sources_for_holdout
from abtest.holdout_requests import HoldoutBody
from abtest.holdout_store import HoldoutStore
from service.extension import abtest
from service.results import export_dir
from service.validation import flag, json_body

bp = Blueprint("holdout", __name__, url_prefix="/v1/holdout")


def _holdouts() -> HoldoutStore:
    return HoldoutStore(abtest().store)


@bp.get("")
def get() -> Response:
    """The current holdout (``holdout`` null when none), its period start and coverage."""
    return jsonify(_holdouts().get().to_dict())


@bp.put("")
def put() -> Response:
    """Set the holdout ``{name, share, covers, description}``; audited, then every covered
    experiment gets a new version carrying it."""
    holdout = json_body(HoldoutBody).holdout()
    stored = _holdouts().put(holdout, key_id=str(g.api_key.id), force=flag("force"))
    return jsonify(stored.to_dict())


@bp.delete("")
def release() -> Response:
    """Release the holdout: no experiment carries it from now on (audited)."""
    return jsonify(_holdouts().release(key_id=str(g.api_key.id)).to_dict())


@bp.post("/sync")
def sync() -> Response:
    """Bring every experiment to the current holdout; the keys that got a new version."""
    return jsonify({"changed": _holdouts().sync(key_id=str(g.api_key.id))})


@bp.get("/history")
def history() -> Response:
    """The holdout's audit entries, oldest first."""
    return jsonify({"history": _holdouts().history()})


@bp.get("/results")
def results() -> Response:
    """The cumulative effect: ``?metric=purchase:binomial`` (repeatable; default the primary
    metrics of the covered experiments), ``start``/``end`` (ISO 8601; default the holdout's
    start and now)."""
    for name in request.args:
        if name not in ("metric", "start", "end"):
            raise InvalidInput("unknown parameter", name)
    start = _time("start")
    end = _time("end")
    result = holdout_results(current_app, request.args.getlist("metric"), start, end)
    return jsonify(result.to_dict())


class NoHoldout(Conflict):
    """There is no holdout to analyse, or no data of it yet."""

    code = "no_data"


def holdout_results(
    app: Flask, metrics: list[str], start: datetime | None = None, end: datetime | None = None
) -> Any:
    """Export the holdout logs and events, then `analysis.holdout.analyze_holdout`."""
    from analysis.holdout import analyze_holdout

    ext = app.extensions["abtest"]
    stored = HoldoutStore(ext.store).get()
    holdout = stored.holdout
    if holdout is None:
        raise NoHoldout("there is no holdout: set one with PUT /v1/holdout", "holdout")
    if not metrics:
        metrics = _primary_metrics(ext.store, holdout.name)
    if not metrics:
        raise InvalidInput("name a metric (?metric=purchase:binomial): no covered "
                           "experiment has a primary metric", "metric")  # fmt: skip
    root = export_dir(app)
    export(ext.redis, sources=sources_for_holdout(ext.redis), out_dir=root)
    if not files(root, Kind.HOLDOUT) or not files(root, Kind.OUTCOMES):
        raise NoHoldout(f"no contact of holdout '{holdout.name}' or no event exported yet",
                        "holdout")  # fmt: skip
    if start is None and stored.started_at:
        start = datetime.fromisoformat(stored.started_at.replace("Z", "+00:00"))
    try:
        return analyze_holdout(
            root / Kind.HOLDOUT.value, root / Kind.OUTCOMES.value, metrics=metrics,
            share=holdout.share, holdout=holdout.name, start=start, end=end,
        )  # fmt: skip
    except InvalidInput as exc:
        raise NoHoldout(f"cannot analyse holdout '{holdout.name}' yet: {exc.message}",
                        exc.field) from exc  # fmt: skip


def _primary_metrics(store: Any, name: str) -> list[str]:
    found: dict[str, str] = {}
    for stored in store.list_experiments():
        experiment = stored.experiment
        metric = experiment.primary_metric
        if experiment.holdout is not None and experiment.holdout.name == name and metric:
            found.setdefault(metric.name, f"{metric.name}:{metric.type.value}")
    return list(found.values())


def _time(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("not an ISO-8601 time such as 2025-01-01T00:00:00Z", name) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
