"""A 503 says the store is unavailable and nothing about where it lives; the log has the detail."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from abtest.embedded import free_port
from service import create_app


@pytest.fixture
def down() -> tuple[Any, str]:
    """A client of an app whose Redis (with a password in its URL) does not answer."""
    port = free_port()
    app = create_app({"TESTING": True, "REDIS_URL": f"redis://:s3cret@127.0.0.1:{port}/0",
                      "REDIS_SOCKET_TIMEOUT": 0.5})  # fmt: skip
    return app.test_client(), str(port)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/healthz", None), ("POST", "/v1/assign", {"experiment": "e", "unit_id": "u"}),
     ("POST", "/v1/events", {"events": [{"event_id": "e", "unit_id": "u", "metric": "m"}]})],
)  # fmt: skip
def test_503_body_is_generic_and_the_log_has_the_detail(
    down: tuple[Any, str], caplog: pytest.LogCaptureFixture, method: str, path: str, body: Any
) -> None:
    """No address, port or password in the body; the Redis error goes to the log."""
    client, port = down
    with caplog.at_level(logging.WARNING, logger="service.errors"):
        response = client.open(path, method=method, json=body,
                               headers={"Authorization": "Bearer abt_x"})  # fmt: skip
    assert response.status_code == 503
    error = response.get_json()["error"]
    message = "the store is unavailable; see the server log"
    assert error == {"code": "store_unavailable", "message": message, "field": None}
    text = response.get_data(as_text=True)
    assert port not in text and "127.0.0.1" not in text and "s3cret" not in text
    assert any(port in record.getMessage() for record in caplog.records)
