"""``/v1/experiments/<key>/challengers`` and ``/lineage``: a new model version enters a test
against the champion of ``key``'s lineage (`abtest.challengers`).  Admin key."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from abtest.challengers import ChallengerBody, lineage, register_challenger
from service.extension import abtest
from service.validation import experiment_key, json_body

bp = Blueprint("challengers", __name__, url_prefix="/v1/experiments")


@bp.post("/<key>/challengers")
def challenge(key: str) -> tuple[Response, int]:
    """``{model: {name, version}, payload?, variant?, experiment?}``: 201 with the experiment
    now testing it, or 200 when this model version was registered before (no change)."""
    lineage_key = experiment_key(key, "key")
    body = json_body(ChallengerBody)
    registration = register_challenger(abtest().store, lineage_key, body, key_id=str(g.api_key.id))
    return jsonify(registration.to_dict()), 201 if registration.created else 200


@bp.get("/<key>/lineage")
def chain(key: str) -> Response:
    """``key`` and the experiments challengers spawned from it, oldest first; the last one
    (``head``) is the one apps should ask."""
    stored = lineage(abtest().store, experiment_key(key, "key"))
    return jsonify({"experiment": key, "head": stored[-1].experiment.key,
                    "lineage": [s.to_dict() for s in stored]})  # fmt: skip
