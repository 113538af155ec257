"""POST /v1/events: validation, limits, idempotency and all-or-nothing batches."""

from __future__ import annotations

import pytest

from abtest.events import MAX_BATCH_EVENTS, MAX_EVENT_ID_LENGTH
from tests.conftest import Api, simple_config
from tests.stored import outcome_entries

REDIS_TOPOLOGIES = ("single", "cluster")


def event(i: int = 0, **changes: object) -> dict[str, object]:
    """A valid event with id e<i>."""
    return {"event_id": f"e{i}", "unit_id": "u1", "metric": "purchase", **changes}


@pytest.fixture(autouse=True)
def _purchase_is_declared(api: Api) -> None:
    """An experiment names 'purchase', so events for it are known (an unknown metric is a
    400 by default, which would hide the refusals these tests are about)."""
    api.create_experiment(simple_config(primary_metric="purchase:binomial"))


def test_events_are_accepted_once(api, redis_client):
    """A retried batch reports duplicates and appends nothing new."""
    batch = [event(0), event(1, value=9.5, timestamp=1714564800.25)]
    first = api.send_events(batch)
    assert first.status_code == 202
    assert first.get_json() == {"accepted": 2, "duplicates": 0}
    assert api.send_events(batch).get_json() == {"accepted": 0, "duplicates": 2}
    entries = sorted(outcome_entries(redis_client), key=lambda e: e["event_id"])
    assert entries[1] == {"event_id": "e1", "unit_id": "u1", "metric": "purchase", "value": "9.5",
                          "timestamp": "1714564800250000"}  # fmt: skip
    assert len(entries) == 2


def test_the_batch_limit_itself_is_accepted(api, redis_client):
    """Exactly MAX_BATCH_EVENTS events are accepted in one call."""
    response = api.send_events([event(i) for i in range(MAX_BATCH_EVENTS)])
    assert response.get_json() == {"accepted": MAX_BATCH_EVENTS, "duplicates": 0}
    assert len(outcome_entries(redis_client)) == MAX_BATCH_EVENTS


@pytest.mark.parametrize(
    ("events", "status", "field"),
    [
        ([], 400, "events"),
        ("e1", 400, "events"),
        ([event(i) for i in range(MAX_BATCH_EVENTS + 1)], 413, "events"),
        ([event(0), 5], 400, "events[1]"),
        ([event(0), {"unit_id": "u", "metric": "m"}], 400, "events[1].event_id"),
        ([event(0, event_id="x" * (MAX_EVENT_ID_LENGTH + 1))], 400, "events[0].event_id"),
        ([event(0, unit_id="")], 400, "events[0].unit_id"),
        ([event(0, unit_id="u" * 257)], 400, "events[0].unit_id"),
        ([event(0, metric="bad metric")], 400, "events[0].metric"),
        ([event(0, metric=3)], 400, "events[0].metric"),
        ([event(0, value="1")], 400, "events[0].value"),
        ([event(0, value=True)], 400, "events[0].value"),
        ([event(0, value=10**400)], 400, "events[0].value"),
        ([event(0, timestamp="yesterday")], 400, "events[0].timestamp"),
        ([event(0, timestamp="2024-05-01T12:00:00")], 400, "events[0].timestamp"),
        ([event(0, timestamp=1.0)], 400, "events[0].timestamp"),
        ([event(0, timestamp=4102444800)], 400, "events[0].timestamp"),
        ([event(0, colour="red")], 400, "events[0].colour"),
    ],
)
def test_bad_batches_write_nothing(api, redis_client, events, status, field):
    """Any bad event refuses the whole batch with a 4xx naming it; nothing is appended."""
    response = api.send_events(events)
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field
    assert outcome_entries(redis_client) == []


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_values_are_refused(api, client, redis_client, constant):
    """NaN and Infinity literals in the body are a 400, never stored."""
    template = '{"events": [{"event_id": "e", "unit_id": "u", "metric": "purchase", "value": X}]}'
    body = template.replace("X", constant)
    response = client.post("/v1/events", data=body, headers=api.headers("sdk"))
    assert response.status_code == 400
    assert outcome_entries(redis_client) == []
