"""``POST /v1/assign`` (one experiment), ``POST /v1/assign/batch`` (many units in one call)
and ``GET /v1/assignments`` (every live experiment for one unit)."""

from __future__ import annotations

import json
from typing import Any, Final

from flask import Blueprint, Response, jsonify, request

from abtest.auth import Role
from abtest.errors import InvalidInput
from abtest.experiment import validate_unit_id
from abtest.store import AssignRequest
from service.extension import abtest
from service.security import requires
from service.validation import experiment_key, json_object, only_fields

bp = Blueprint("assignments", __name__, url_prefix="/v1")

# The bytes jsonify writes outside debug mode (compact, ASCII, keys in order, a final
# newline); encoding directly skips its per-call provider and keyword plumbing on the
# hottest endpoint.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


_FIELDS: Final = ("experiment", "unit_id", "attributes")


def _unit_id(value: object, field: str = "unit_id") -> str:
    problem = validate_unit_id(value, field)
    if problem:
        raise InvalidInput(problem.message, problem.field)
    assert isinstance(value, str)
    return value


def _assign_request(body: dict[str, Any], where: str = "") -> AssignRequest:
    """The fields of one assignment request; ``where`` prefixes the field names in errors."""
    key = experiment_key(body.get("experiment"), where + "experiment")
    unit_id = _unit_id(body.get("unit_id"), where + "unit_id")
    attributes = body.get("attributes", {})
    if not isinstance(attributes, dict):
        raise InvalidInput("must be an object of attribute values", where + "attributes")
    return AssignRequest(key, unit_id, attributes)


@bp.post("/assign")
@requires(Role.SDK)
def assign() -> Response:
    """The unit's variant; the first ``assigned`` answer is stored and logged as exposure."""
    wanted = _assign_request(json_object(allowed=_FIELDS))
    ext = abtest()
    result, version = ext.store.assign(*wanted)
    ext.metrics.assigned(result)
    text = _ENCODER.encode(_answer(result.to_dict(), wanted.unit_id, version)) + "\n"
    return Response(text, mimetype="application/json")


@bp.post("/assign/batch")
@requires(Role.SDK)
def assign_batch() -> Response:
    """``{"requests": [{experiment, unit_id, attributes?}, ...]}`` in one call, answers in order.

    For many first exposures at once (the client's local-evaluation mode sends its exposures
    this way).  All or nothing: any bad request, or an unknown experiment, and no unit of the
    batch is assigned.  At most `abtest.store.MAX_BATCH_ASSIGNMENTS` requests (else 413).
    """
    items = json_object(allowed=("requests",)).get("requests")
    if not isinstance(items, list) or not items:
        raise InvalidInput("required: a non-empty list of {experiment, unit_id}", "requests")
    wanted = []
    for index, item in enumerate(items):
        where = f"requests[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput("must be an object with experiment and unit_id", where)
        only_fields(item, _FIELDS, where + ".")
        wanted.append(_assign_request(item, where + "."))
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
    (``42``, ``true``, ``"x"``) and as a string otherwise (``DE``).
    """
    unit_id = _unit_id(request.args.get("unit_id"))
    attributes: dict[str, Any] = {}
    for name, raw in request.args.items():
        if name.startswith("attr.") and len(name) > 5:
            try:
                attributes[name[5:]] = json.loads(raw)
            except ValueError:
                attributes[name[5:]] = raw
        elif name != "unit_id":
            raise InvalidInput("unknown parameter (attributes are attr.<name>)", name)
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
