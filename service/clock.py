"""``/v1/clock``: the controlled clock of demo and test mode (`service.monitor.clock`).

``GET`` answers the service's time and mode.  ``POST {"now": ...}`` (an ISO 8601 time with
a zone, or epoch seconds: `service.schemas.ClockBody`) moves the controlled clock that
dates exposures, events and audit entries and that the monitor checks by; it is refused
(409) unless the service was started with ``ABTEST_CLOCK=controlled``, and the clock
never moves backwards once set (400).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from abtest.errors import Conflict
from service.extension import abtest
from service.monitor.clock import RedisClock
from service.schemas import ClockBody
from service.validation import json_body

bp = Blueprint("clock", __name__, url_prefix="/v1/clock")


@bp.get("")
def now() -> Response:
    """The service's time and its clock mode (``system`` or ``controlled``)."""
    ext = abtest()
    return jsonify({"now": ext.clock.now().isoformat(), "mode": current_app.config["CLOCK"]})


@bp.post("")
def move() -> Response:
    """Move the controlled clock to ``now`` (demo and test mode only)."""
    ext = abtest()
    if not isinstance(ext.clock, RedisClock):
        raise Conflict("the clock is the system's: a client may set it only when the service "
                       "runs with ABTEST_CLOCK=controlled (demo and test mode)", "now")  # fmt: skip
    moment = json_body(ClockBody).now
    return jsonify({"now": ext.clock.set(moment).isoformat(), "mode": "controlled"})
