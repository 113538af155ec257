"""Bad input to /v1/assign and friends: always a 4xx JSON error, never a 500 or a write."""

from __future__ import annotations

import json

import pytest

from abtest.embedded import free_port
from service import create_app
from service.errors import STORE_UNAVAILABLE_MESSAGE
from tests.conftest import Api, simple_config
from tests.stored import exposure_rows, outcome_entries, sticky_variant


@pytest.mark.parametrize(
    ("data", "status", "field"),
    [
        ("", 400, "$"),
        ("{", 400, "$"),
        ("[1]", 400, "$"),
        ('"exp"', 400, "$"),
        (b"\xff\xfe", 400, "$"),
        ("[" * 100_000 + "]" * 100_000, 400, "$"),
        ('{"unit_id": "u1"}', 400, "experiment"),
        ('{"experiment": 5, "unit_id": "u1"}', 400, "experiment"),
        ('{"experiment": "a}b{", "unit_id": "u1"}', 400, "experiment"),
        ('{"experiment": "missing", "unit_id": "u1"}', 404, "experiment"),
        ('{"experiment": "exp"}', 400, "unit_id"),
        ('{"experiment": "exp", "unit_id": 7}', 400, "unit_id"),
        ('{"experiment": "exp", "unit_id": ""}', 400, "unit_id"),
        ('{"experiment": "exp", "unit_id": "%s"}' % ("u" * 257), 400, "unit_id"),
        ('{"experiment": "exp", "unit_id": "a\\u0000b"}', 400, "unit_id"),
        ('{"experiment": "exp", "unit_id": "u1", "attributes": [1]}', 400, "attributes"),
        ('{"experiment": "exp", "unit_id": "u1", "attributes": {"a": NaN}}', 400, "attributes.a"),
        ('{"experiment": "exp", "unit_id": "u1", "extra": 1}', 400, "extra"),
    ],
)
def test_bad_assign_requests(api, client, redis_client, data, status, field):  # noqa: PLR0917 - table columns
    """Each malformed assign request is a 4xx naming the field, and nothing is stored."""
    api.create_experiment()
    response = client.post("/v1/assign", data=data, headers=api.headers("sdk"))
    _assert_refused_and_nothing_stored(response, redis_client, status, field)


_GOOD = {"experiment": "exp", "unit_id": "u1"}


def _batch(*requests: object, **extra: object) -> str:
    return json.dumps({"requests": [_GOOD, *requests], **extra})


@pytest.mark.parametrize(
    ("data", "status", "field"),
    [
        ("{}", 400, "requests"),
        ('{"requests": []}', 400, "requests"),
        ('{"requests": {"experiment": "exp"}}', 400, "requests"),
        (_batch(more=1), 400, "more"),
        (_batch(7), 400, "requests[1]"),
        (_batch({"experiment": "exp"}), 400, "requests[1].unit_id"),
        (_batch({"experiment": "exp", "unit_id": "u2", "x": 1}), 400, "requests[1].x"),
        (_batch({"experiment": "a}b", "unit_id": "u2"}), 400, "requests[1].experiment"),
        (_batch({"experiment": "exp", "unit_id": "u2", "attributes": 3}), 400,
         "requests[1].attributes"),
        (_batch({"experiment": "gone", "unit_id": "u2"}), 404, "requests[1].experiment"),
        (_batch(*[_GOOD] * 100), 413, "requests"),
    ],
)  # fmt: skip
def test_bad_batch_assign_requests(api, client, redis_client, data, status, field):  # noqa: PLR0917 - table columns
    """A bad batch is a 4xx naming the request and field, and no unit of it is stored."""
    api.create_experiment()
    response = client.post("/v1/assign/batch", data=data, headers=api.headers("sdk"))
    _assert_refused_and_nothing_stored(response, redis_client, status, field)


def _assert_refused_and_nothing_stored(response, redis_client, status, field):
    assert response.status_code == status, response.get_data()
    assert response.get_json()["error"]["field"] == field
    assert exposure_rows(redis_client, "exp") == []
    assert sticky_variant(redis_client, "exp", "u1") is None


def test_oversized_body_is_413(api, client, redis_client):
    """A body over MAX_CONTENT_LENGTH is refused with 413 before it is parsed."""
    data = (
        '{"events": ['
        + ",".join(['{"event_id": "e", "unit_id": "u", "metric": "m"}'] * 30_000)
        + "]}"
    )
    assert len(data) > 1024 * 1024
    response = client.post("/v1/events", data=data, headers=api.headers("sdk"))
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert outcome_entries(redis_client) == []


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/nope", 404), ("GET", "/v1/assign", 405)]
)
def test_unknown_routes_are_json_errors(client, method, path, status):
    """Unknown routes and methods get the JSON error body too."""
    response = client.open(path, method=method)
    assert response.status_code == status
    assert set(response.get_json()["error"]) == {"code", "message", "field"}


@pytest.fixture
def down_client():
    """A client of an app whose Redis URL points at a closed port."""
    app = create_app({"TESTING": True, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                      "REDIS_SOCKET_TIMEOUT": 0.5})  # fmt: skip
    return app.test_client()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/healthz", None), ("POST", "/v1/assign", {"experiment": "e", "unit_id": "u"}),
     ("POST", "/v1/assign/batch", {"requests": [{"experiment": "e", "unit_id": "u"}]}),
     ("POST", "/v1/events", {"events": [{"event_id": "e", "unit_id": "u", "metric": "m"}]}),
     ("GET", "/v1/experiments", None), ("GET", "/metrics", None)],
)  # fmt: skip
def test_redis_down_is_503(down_client, method, path, body):
    """With Redis unreachable, health and data endpoints answer 503 with a clear error."""
    response = down_client.open(
        path, method=method, json=body, headers={"Authorization": "Bearer abt_x"}
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "store_unavailable"


def test_a_write_no_replica_confirmed_is_503_and_safe_to_retry(redis_url, redis_client):
    """With REDIS_WAIT_REPLICAS=1 and no replica, an assign and an event batch answer 503
    (generic body); the retry without the wait neither exposes nor counts twice."""
    waiting = create_app({"TESTING": True, "REDIS_URL": redis_url, "REDIS_WAIT_REPLICAS": 1,
                          "REDIS_WAIT_TIMEOUT_MS": 5})  # fmt: skip
    api = Api(waiting.test_client(), waiting.extensions["abtest"].store)
    api.create_experiment(simple_config(primary_metric="m:binomial"))
    response = api.call("POST", "/v1/assign", {"experiment": "exp", "unit_id": "u1"}, role="sdk")
    assert response.status_code == 503
    assert response.get_json()["error"] == {
        "code": "store_unavailable",
        "message": STORE_UNAVAILABLE_MESSAGE,
        "field": None,
    }
    events = [{"event_id": "e1", "unit_id": "u1", "metric": "m"}]
    assert api.send_events(events).status_code == 503
    plain = create_app({"TESTING": True, "REDIS_URL": redis_url})
    retry = Api(plain.test_client(), plain.extensions["abtest"].store)
    retry.assign("exp", "u1")
    assert retry.send_events(events).get_json() == {"accepted": 0, "duplicates": 1}
    assert len(exposure_rows(redis_client, "exp")) == 1
