"""``/v1/clock``: the controlled clock of demo and test mode (`service.monitor.clock`).

``GET`` answers the service's time and mode.  ``POST {"now": ...}`` (an ISO 8601 time with
a zone, or epoch seconds) moves the controlled clock that dates exposures, events and audit
entries and that the monitor checks by; it is refused (409) unless the service was started
with ``ABTEST_CLOCK=controlled``, and the clock never moves backwards once set (400).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify

from abtest.errors import Conflict, InvalidInput
from service.extension import abtest
from service.monitor.clock import RedisClock
from service.validation import json_object

bp = Blueprint("clock", __name__, url_prefix="/v1/clock")


def _moment(value: object) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00", 1))
        except ValueError:
            raise InvalidInput("not an ISO-8601 time such as 2026-03-02T09:00:00Z", "now") from None
        if moment.tzinfo is None:
            raise InvalidInput("an ISO-8601 time needs a time zone (e.g. 'Z')", "now")
        return moment.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        if not 946_684_800 <= value <= 4_102_444_800:  # 2000 to 2100
            raise InvalidInput("must be epoch seconds between 2000 and 2100", "now")
        return datetime.fromtimestamp(value, UTC)
    raise InvalidInput("required: an ISO-8601 time or epoch seconds", "now")


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
    moment = _moment(json_object(allowed=("now",)).get("now"))
    return jsonify({"now": ext.clock.set(moment).isoformat(), "mode": "controlled"})
