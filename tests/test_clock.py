"""The controlled clock: refused unless the service runs in demo or test mode; there it dates
exposures and audit entries, the monitor reads the same time, and it never goes back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from abtest import keys
from abtest.errors import InvalidInput
from service.monitor.clock import from_us, make_clock
from tests.conftest import Api, simple_config


@pytest.fixture
def controlled(redis_url, redis_client):
    """An app in demo and test mode, with an `Api` helper."""
    from service import create_app

    app = create_app({"TESTING": True, "REDIS_URL": redis_url, "CLOCK": "controlled"})
    return Api(app.test_client(), app.extensions["abtest"].store)


def test_a_system_clock_cannot_be_set(api):
    """ABTEST_CLOCK unset: the time is the system's and a client may not move it."""
    answer = api.call("GET", "/v1/clock").get_json()
    assert answer["mode"] == "system"
    response = api.call("POST", "/v1/clock", {"now": "2026-03-02T00:00:00Z"})
    assert response.status_code == 409
    assert "ABTEST_CLOCK=controlled" in response.get_json()["error"]["message"]


def test_the_controlled_clock_dates_exposures_audit_entries_and_monitor_checks(
    controlled, redis_client
):
    """Set to a past day: the exposure, the audit entry and the monitor's clock say so."""
    answer = controlled.call("POST", "/v1/clock", {"now": "2026-03-02T09:30:00Z"}).get_json()
    assert answer == {"now": "2026-03-02T09:30:00+00:00", "mode": "controlled"}
    controlled.create_experiment(simple_config())
    assert controlled.store.history("exp")[-1]["time"] == "2026-03-02T09:30:00.000Z"
    controlled.assign("exp", "user-1")
    ((_, entry),) = redis_client.xrange(keys.exposures_stream("exp"))
    assert from_us(int(entry["t"])) == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert make_clock("controlled", redis_client).now() == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    later = controlled.call("POST", "/v1/clock", {"now": 1772445600}).get_json()
    assert later["now"] == "2026-03-02T10:00:00+00:00"


def test_setting_the_clock_to_its_own_time_answers_that_time(controlled):
    """Moving to where it already is (a simulation's first hour) is no move, not a 500."""
    for _ in range(2):
        answer = controlled.call("POST", "/v1/clock", {"now": "2026-03-02T09:30:00Z"})
        assert answer.status_code == 200
        assert answer.get_json()["now"] == "2026-03-02T09:30:00+00:00"


@pytest.mark.parametrize(
    ("now", "message"),
    [
        ("2026-03-01T00:00:00Z", "never moves backwards"),
        ("2026-03-03T00:00:00", "needs a time zone"),
        ("tomorrow", "not an ISO-8601 time"),
        (1e12, "between 2000 and 2100"),
        (None, "required"),
    ],
)
def test_bad_or_backward_times_are_refused(controlled, now, message):
    """400 naming ``now``; the clock stays where it was."""
    controlled.call("POST", "/v1/clock", {"now": "2026-03-02T00:00:00Z"})
    response = controlled.call("POST", "/v1/clock", {"now": now})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "now" and message in error["message"]
    assert controlled.call("GET", "/v1/clock").get_json()["now"] == "2026-03-02T00:00:00+00:00"


def test_an_unknown_clock_mode_is_refused_when_the_app_is_built(redis_url):
    """ABTEST_CLOCK is system or controlled; anything else stops the service at start."""
    from service import create_app

    with pytest.raises(InvalidInput, match="system or controlled"):
        create_app({"REDIS_URL": redis_url, "CLOCK": "sundial"})


def test_only_admin_keys_touch_the_clock(controlled):
    """An sdk key may not read or move it."""
    assert controlled.call("GET", "/v1/clock", role="sdk").status_code == 403
    assert controlled.call("POST", "/v1/clock", {"now": 1e9}, role="sdk").status_code == 403
