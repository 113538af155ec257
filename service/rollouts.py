"""``/v1/experiments/{key}/rollout``: a guarded rollout's status and a person's actions on it.

``GET`` returns `service.rollout_status.rollout_document` (``?limit=`` newest checks, 200 by
default, at most 2,000).  ``POST .../rollout/pause``, ``resume`` and ``rollback`` take an
optional ``{"reason": ...}`` (`service.schemas.ReasonBody`) kept in the audit entry with
the caller's key id, and return the document after the action.  409 when the experiment
has no rollout plan or the action does not fit its state (pausing a paused rollout,
rolling back a shipped one).
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from abtest.errors import InvalidInput
from abtest.rollout_store import Rollouts
from service.extension import abtest
from service.rollout_status import DEFAULT_CHECKS, MAX_CHECKS, rollout_document
from service.schemas import ReasonBody
from service.validation import experiment_key, json_body

bp = Blueprint("rollouts", __name__, url_prefix="/v1/experiments")


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_CHECKS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CHECKS:
        raise InvalidInput(f"must be a whole number from 1 to {MAX_CHECKS:,}", "limit")
    return int(raw)


def _rollouts() -> Rollouts:
    return Rollouts(abtest().store)


@bp.get("/<key>/rollout")
def status(key: str) -> Response:
    """The rollout's plan, step, state, actions and newest checks."""
    return jsonify(rollout_document(_rollouts(), experiment_key(key, "key"), limit=_limit()))


def _act(key: str, action: str) -> Response:
    key = experiment_key(key, "key")
    reason = json_body(ReasonBody).reason if request.get_data() else None
    rollouts = _rollouts()
    getattr(rollouts, action)(key, key_id=str(g.api_key.id), reason=reason)
    return jsonify(rollout_document(rollouts, key, limit=20))


@bp.post("/<key>/rollout/pause")
def pause(key: str) -> Response:
    """Hold the rollout at its step (the monitor still rolls back on harm)."""
    return _act(key, "pause")


@bp.post("/<key>/rollout/resume")
def resume(key: str) -> Response:
    """Let the monitor advance a paused rollout again."""
    return _act(key, "resume")


@bp.post("/<key>/rollout/rollback")
def rollback(key: str) -> Response:
    """Take the new variant away: everyone is served control (status rolled_back)."""
    return _act(key, "rollback")
