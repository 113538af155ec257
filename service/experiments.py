"""``/v1/experiments``: definitions, lifecycle, audit trail and live exposure counts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request, url_for

from abtest.auth import Role
from abtest.errors import InvalidInput
from abtest.experiment import Status
from abtest.store import ExposureCounts
from service.extension import abtest
from service.schemas import ShipBody
from service.security import requires
from service.validation import experiment_key, flag, json_body, json_object

bp = Blueprint("experiments", __name__, url_prefix="/v1/experiments")


def _key_id() -> str:
    return str(g.api_key.id)


@bp.post("")
def create() -> tuple[Response, int, dict[str, str]]:
    """Create a draft from an experiment definition (``status``/``winner`` are ignored)."""
    ext = abtest()
    stored = ext.store.create_experiment(json_object(), key_id=_key_id())
    ext.known_metrics.forget()
    location = url_for("experiments.get", key=stored.experiment.key)
    return jsonify(stored.to_dict()), 201, {"Location": location}


@bp.get("")
@requires(Role.SDK)
def listing() -> Response:
    """Every experiment, optionally ``?status=running``."""
    raw = request.args.get("status")
    try:
        status = None if raw is None else Status(raw)
    except ValueError:
        raise InvalidInput(
            "must be one of: " + ", ".join(s.value for s in Status), "status"
        ) from None
    stored = abtest().store.list_experiments(status=status)
    return jsonify({"experiments": [s.to_dict() for s in stored]})


@bp.get("/<key>")
@requires(Role.SDK)
def get(key: str) -> Response:
    """The current version."""
    return jsonify(abtest().store.get_experiment(experiment_key(key, "key")).to_dict())


@bp.put("/<key>")
def update(key: str) -> Response:
    """Store a new version; 409 if it would move assigned units, unless ``?force=true``."""
    ext = abtest()
    stored = ext.store.update_experiment(
        experiment_key(key, "key"), json_object(), key_id=_key_id(), force=flag("force")
    )
    ext.known_metrics.forget()
    return jsonify(stored.to_dict())


@bp.post("/<key>/start")
def start(key: str) -> Response:
    """draft or stopped -> running (409 on a layer overlap)."""
    return jsonify(
        abtest().store.start_experiment(experiment_key(key, "key"), key_id=_key_id()).to_dict()
    )


@bp.post("/<key>/stop")
def stop(key: str) -> Response:
    """running -> stopped."""
    return jsonify(
        abtest().store.stop_experiment(experiment_key(key, "key"), key_id=_key_id()).to_dict()
    )


@bp.post("/<key>/ship")
def ship(key: str) -> Response:
    """running or stopped -> shipped with ``{"variant": ..., "reason": ...}``: everyone gets
    the variant; the optional reason is kept in the audit entry."""
    body = json_body(ShipBody)
    stored = abtest().store.ship_experiment(
        experiment_key(key, "key"), body.variant, key_id=_key_id(), reason=body.reason
    )
    return jsonify(stored.to_dict())


@bp.get("/<key>/history")
def history(key: str) -> Response:
    """Every version with time, key id, action and diff (the audit trail)."""
    key = experiment_key(key, "key")
    return jsonify({"experiment": key, "history": abtest().store.history(key)})


@bp.get("/<key>/exposures")
def exposures(key: str) -> Response:
    """First exposures per variant and per day, with a live sample-ratio-mismatch p-value."""
    store = abtest().store
    key = experiment_key(key, "key")
    counts = store.exposure_counts(key)
    weights = store.get_experiment(key).experiment.weights
    return jsonify({**counts.to_dict(), "srm": srm(counts, weights)})


def srm(counts: ExposureCounts, weights: dict[str, float]) -> dict[str, Any]:
    """Chi-square goodness-of-fit of the observed split against the configured weights.

    Uses the current weights; ``p_value`` is null until some unit is exposed.

    References
    ----------
    Fabijan et al. (2019), "Diagnosing Sample Ratio Mismatch in Online Controlled
    Experiments", KDD; `scipy.stats.chisquare`.
    """
    from scipy.stats import chisquare  # lazy: keeps scipy off the assignment path

    observed = [counts.variants.get(v, 0) for v in weights]
    total = sum(observed)
    expected = [total * w for w in weights.values()]
    p_value = None
    if total > 0:
        p_value = float(chisquare(observed, expected).pvalue)
    return {
        "test": "chi-square goodness of fit",
        "p_value": p_value,
        "expected": dict(zip(weights, expected, strict=True)),
    }
