"""``POST /v1/assign`` (one experiment), ``POST /v1/assign/batch`` (many units in one call)
and ``GET /v1/assignments`` (every live experiment for one unit)."""

from __future__ import annotations

import json
from typing import Any, Final

from flask import Blueprint, Response, jsonify, request

from abtest.attributes import segment_attributes
from abtest.auth import Role
from abtest.errors import InvalidInput
from abtest.experiment import validate_unit_id
from abtest.json_input import unsafe_value
from abtest.store import AssignRequest
from service.extension import abtest
from service.schemas import AssignBatchBody, AssignBody
from service.security import requires
from service.validation import json_body

bp = Blueprint("assignments", __name__, url_prefix="/v1")

# The bytes jsonify writes outside debug mode (compact, ASCII, keys in order, a final
# newline); encoding directly skips its per-call provider and keyword plumbing on the
# hottest endpoint.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


@bp.post("/assign")
@requires(Role.SDK)
def assign() -> Response:
    """The unit's variant; the first ``assigned`` answer is stored and logged as exposure."""
    wanted = json_body(AssignBody)
    ext = abtest()
    result, version = ext.store.assign(wanted.experiment, wanted.unit_id, wanted.attributes)
    ext.metrics.assigned(result)
    text = _ENCODER.encode(_answer(result.to_dict(), wanted.unit_id, version)) + "\n"
    return Response(text, mimetype="application/json")


@bp.post("/assign/batch")
@requires(Role.SDK)
def assign_batch() -> Response:
    """``{"requests": [{experiment, unit_id, attributes?, assigned_at?}, ...]}`` in one call,
    answers in order.

    For many first exposures at once (the client's local-evaluation mode sends its exposures
    this way, each with the time it assigned the unit).  All or nothing: any bad request,
    or an unknown experiment, and no unit of the batch is assigned.  At most
    `abtest.store.MAX_BATCH_ASSIGNMENTS` requests (else 413).
    """
    wanted = [
        AssignRequest(item.experiment, item.unit_id, item.attributes, item.assigned_at)
        for item in json_body(AssignBatchBody).requests
    ]
    ext = abtest()
    answers = []
    for one, (result, version) in zip(wanted, ext.store.assign_many(wanted), strict=True):
        ext.metrics.assigned(result)
        answers.append(_answer(result.to_dict(), one.unit_id, version))
    return jsonify({"assignments": answers})


@bp.get("/assignments")
@requires(Role.SDK)
def assignments() -> Response:
    """The unit's assignment in every running, shipped or rolled-back experiment.

    Attributes come as ``attr.<name>=<value>``; a value is read as JSON when it parses
    (``42``, ``true``, ``"x"``) and as a string otherwise (``DE``).  They meet the bounds of
    the POST bodies (`abtest.attributes`) and are kept with first exposures as those are.
    """
    unit_id = request.args.get("unit_id")
    problem = validate_unit_id(unit_id)
    if problem:
        raise InvalidInput(problem.message, problem.field)
    assert isinstance(unit_id, str)
    attributes: dict[str, Any] = {}
    for name, raw in request.args.items():
        if name.startswith("attr.") and len(name) > 5:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            problem = unsafe_value(value, name)  # NaN, or a "\ud800" escape
            if problem:
                raise InvalidInput(problem.message, problem.field)
            attributes[name[5:]] = value
        elif name != "unit_id":
            raise InvalidInput("unknown parameter (attributes are attr.<name>)", name)
    segment_attributes(attributes, "attr")  # the bounds of `abtest.attributes`, named attr.x
    ext = abtest()
    answers = []
    for key in ext.store.live_experiment_keys():
        result, version = ext.store.assign(key, unit_id, attributes)
        ext.metrics.assigned(result)
        answers.append(_answer(result.to_dict(), unit_id, version))
    return jsonify({"unit_id": unit_id, "assignments": answers})


def _answer(result: dict[str, Any], unit_id: str, version: int) -> dict[str, Any]:
    return {
        "experiment": result["experiment"],
        "unit_id": unit_id,
        "variant": result["variant"],
        "payload": result["payload"],
        "in_experiment": result["in_experiment"],
        "reason": result["reason"],
        "config_version": version,
    }
