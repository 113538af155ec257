"""The Python client against the real Flask app served over real HTTP (werkzeug, a thread)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from abtest import keys
from abtest.assignment import Reason, assign
from abtest.client import Client, ServiceUnavailable
from abtest.embedded import free_port
from abtest.errors import InvalidInput, NotFound, Unauthorized
from abtest.experiment import Experiment
from tests.conftest import Api, example_config, serve, simple_config
from tests.stored import exposure_rows, outcome_entries

RANKER_UNITS = [
    ("qa-alice", {"country": "US", "app_version": 1}),  # forced
    *[(f"user-{i}", {"country": ["DE", "FR", "US"][i % 3], "app_version": 400 + i})
      for i in range(60)],
]  # fmt: skip


@pytest.fixture
def make_client(api: Api) -> Iterator[Callable[..., Client]]:
    """Build clients (sdk key unless given) and close them after the test."""
    made: list[Client] = []

    def make(url: str, key: str | None = None, **options: Any) -> Client:
        made.append(Client(url, api.sdk_key if key is None else key, **options))
        return made[-1]

    yield make
    for client in made:
        client.close(timeout=1)


def outcome_ids(r: redis.Redis) -> list[str]:
    """event_id of every entry in the outcomes stream, in order."""
    return [fields["event_id"] for fields in outcome_entries(r)]


def declare(api: Api, metric: str) -> None:
    """Start an experiment that names ``metric``, so the service knows its events."""
    api.create_experiment(simple_config(f"reads-{metric}", primary_metric=f"{metric}:binomial"))


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Poll until ``condition()`` holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- remote assignment ------------------------------------------------------------------------


def test_assign_returns_the_services_sticky_answer(
    api: Api, url: str, make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    """``assign`` gives the variant the pure assignment computes and logs one exposure each."""
    stored = api.create_experiment(example_config())
    experiment = Experiment.from_dict(stored["config"])
    client = make_client(url)
    for unit, attributes in RANKER_UNITS:
        answer = client.assign("ranker-v2", unit, attributes)
        expected = assign(experiment, unit, attributes)
        assert (answer.variant, answer.reason) == (expected.variant, expected.reason)
        assert answer.config_version == stored["version"] and answer.unit_id == unit
        assert answer.to_dict()["reason"] == expected.reason.value
    in_experiment = sum(assign(experiment, u, a).in_experiment for u, a in RANKER_UNITS)
    assert 0 < in_experiment < len(RANKER_UNITS)
    assert len(exposure_rows(redis_client, "ranker-v2")) == in_experiment


def test_assignments_lists_every_live_experiment_with_attributes(
    api: Api, url: str, make_client: Callable[..., Client]
) -> None:
    """``assignments`` sends attributes as attr.<name> and returns one answer per experiment."""
    api.create_experiment(example_config())
    api.create_experiment(simple_config("checkout"))
    api.create_experiment(simple_config("draft-one"), start=False)
    client = make_client(url)
    answers = client.assignments("user-7", {"country": "DE", "app_version": 500})
    assert set(answers) == {"checkout", "ranker-v2"}
    assert answers["ranker-v2"].reason is not Reason.NOT_TARGETED
    assert (
        client.assignments("user-7", {"country": "US"})["ranker-v2"].reason is Reason.NOT_TARGETED
    )


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.assign("no-such-experiment", "u1"), NotFound),
        (lambda c: c.assign("checkout", ""), InvalidInput),
        (lambda c: c.assign("checkout", "u1", {"x": float("inf")}), InvalidInput),
        (lambda c: c.track("u1", "bad metric name!"), InvalidInput),
        (lambda c: c.track("u1", "clicks", value=float("nan")), InvalidInput),
        (lambda c: c.track("x" * 300, "clicks"), InvalidInput),
    ],
)
def test_bad_requests_raise_typed_errors(
    api: Api, url: str, make_client: Callable[..., Client], call: Any, error: type[Exception]
) -> None:
    """4xx answers and events the service would refuse raise the matching `AbtestError`."""
    api.create_experiment(simple_config("checkout"))
    client = make_client(url)
    with pytest.raises(error):
        call(client)
    assert client.stats().tracked == 0


def test_unknown_key_is_unauthorized(url: str, make_client: Callable[..., Client]) -> None:
    """A wrong API key raises `Unauthorized`."""
    with pytest.raises(Unauthorized):
        make_client(url, "not-a-key").assign("checkout", "u1")


def test_unreachable_service_raises_service_unavailable(
    make_client: Callable[..., Client],
) -> None:
    """Nothing listening: `ServiceUnavailable` (a `StoreUnavailable`), not a socket error."""
    client = make_client(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(ServiceUnavailable):
        client.assign("checkout", "u1")


# -- events -------------------------------------------------------------------------------------


def test_track_then_flush_delivers_every_event_once(
    api: Api, url: str, make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    """Events go out in batches; each ``event_id`` returned by ``track`` is stored once."""
    declare(api, "purchase")
    client = make_client(url, batch_size=250, flush_interval=30)
    ids = [client.track(f"u{i % 17}", "purchase", value=i / 4) for i in range(1100)]
    assert client.flush(timeout=20)
    assert sorted(outcome_ids(redis_client)) == sorted(ids)
    stats = client.stats()
    assert (stats.tracked, stats.sent, stats.pending, stats.dropped) == (1100, 1100, 0, 0)
    last = redis_client.xrevrange(keys.outcomes_stream(), count=1)[0][1]
    assert last["value"] == repr(1099 / 4)


def test_a_full_buffer_drops_new_events_with_a_counter(
    make_client: Callable[..., Client],
) -> None:
    """With the service down, ``track`` keeps returning at once and counts what it drops."""
    client = make_client(f"http://127.0.0.1:{free_port()}", max_buffer=10, timeout=0.2)
    results = [client.track("u1", "clicks") for _ in range(50)]
    assert sum(r is not None for r in results) == 10
    assert results[10:] == [None] * 40
    stats = client.stats()
    assert (stats.tracked, stats.dropped, stats.pending) == (10, 40, 10)
    client.close(timeout=0.3)
    assert client.stats().dropped == 50  # the undeliverable ten are counted at close


def test_events_buffered_during_an_outage_arrive_once_it_ends(
    app: Flask, api: Api, make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    """Failed sends are retried with backoff; nothing is lost while the buffer has room."""
    declare(api, "clicks")
    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}", flush_interval=0.05, backoff_base=0.01,
                         backoff_max=0.1, timeout=0.5)  # fmt: skip
    ids = [client.track(f"u{i}", "clicks") for i in range(30)]
    wait_for(lambda: client.stats().retries >= 2)
    server, thread = serve(app, port)
    try:
        assert client.flush(timeout=20)
    finally:
        server.shutdown()
        thread.join()
    assert sorted(outcome_ids(redis_client)) == sorted(ids)
    assert client.stats().last_error is not None


class ResponseDroppingProxy:
    """A real TCP proxy that forwards the first ``drops`` requests but loses their responses."""

    def __init__(self, upstream_port: int, drops: int) -> None:
        self.upstream_port = upstream_port
        self.drops = drops
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            drop = self.drops > 0
            self.drops -= drop
            threading.Thread(target=self._serve, args=(downstream, drop), daemon=True).start()

    def _serve(self, downstream: socket.socket, drop: bool) -> None:
        with downstream, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            if drop:
                upstream.sendall(downstream.recv(1 << 20))
                answer = b""
                while b"\r\n\r\n" not in answer:  # wait until the service has answered ...
                    answer += upstream.recv(1 << 16)
                return  # ... and close: the client never hears it
            pump = threading.Thread(target=self._pipe, args=(upstream, downstream))
            pump.start()
            self._pipe(downstream, upstream)
            pump.join()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def test_a_lost_response_is_retried_and_counted_once_by_event_id(
    api: Api, url: str, make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    """The service stored the batch but the answer was lost: the retry is a duplicate."""
    declare(api, "clicks")
    proxy = ResponseDroppingProxy(int(url.rsplit(":", 1)[1]), drops=1)
    try:
        client = make_client(f"http://127.0.0.1:{proxy.port}", flush_interval=30,
                             backoff_base=0.01, backoff_max=0.05)  # fmt: skip
        ids = [client.track("u1", "clicks") for _ in range(40)]
        assert client.flush(timeout=20)
    finally:
        proxy.close()
    assert sorted(outcome_ids(redis_client)) == sorted(ids)
    stats = client.stats()
    assert (stats.retries, stats.duplicates, stats.sent) == (1, 40, 40)


def test_context_manager_flushes_on_exit_and_then_drops(
    api: Api, url: str, redis_client: redis.Redis
) -> None:
    """Leaving the ``with`` block flushes; a closed client counts new events as dropped."""
    declare(api, "signup")
    with Client(url, api.sdk_key, flush_interval=30) as client:
        ids = [client.track("u1", "signup") for _ in range(3)]
    assert outcome_ids(redis_client) == ids
    assert client.track("u1", "signup") is None
    assert client.stats().dropped == 1


@pytest.mark.slow
def test_events_are_flushed_at_interpreter_exit(
    api: Api, url: str, redis_client: redis.Redis
) -> None:
    """A process that never calls close still delivers its buffered events (atexit)."""
    declare(api, "purchase")
    script = textwrap.dedent(f"""
        from abtest.client import Client
        client = Client({url!r}, {api.sdk_key!r}, flush_interval=3600)
        for i in range(7):
            client.track("u" + str(i), "purchase", value=i)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert len(outcome_ids(redis_client)) == 7


# -- local evaluation ---------------------------------------------------------------------------


@pytest.mark.parametrize("redis_topology", ["single", "cluster"], indirect=True)
def test_local_evaluation_agrees_with_the_service_and_reports_each_exposure_once(
    api: Api, url: str, make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    """In-process answers equal the service's; each first-seen unit is exposed exactly once."""
    api.create_experiment(example_config())
    local = make_client(url, local_evaluation=True, flush_interval=30)
    answers = {}
    for _ in range(3):
        for unit, attributes in RANKER_UNITS:
            answers[unit] = local.assign("ranker-v2", unit, attributes)
    assert local.flush(timeout=20)
    remote = make_client(url)
    for unit, attributes in RANKER_UNITS:
        assert remote.assign("ranker-v2", unit, attributes) == answers[unit]
    rows = exposure_rows(redis_client, "ranker-v2")
    exposed = {row["unit_id"] for row in rows}
    assert exposed == {u for u, a in answers.items() if a.in_experiment}
    assert len(rows) == len(exposed) > 0
    stats = local.stats()
    assert (stats.exposures_sent, stats.mismatches) == (len(exposed), 0)


def _requests_to(client: FlaskClient, endpoint: str) -> float:
    """POST requests to ``endpoint`` that answered 200, from the app's /metrics."""
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "abtest_http_requests_total"
        and sample.labels == {"endpoint": endpoint, "method": "POST", "status": "200"}
    )


def test_local_evaluation_sends_exposures_in_batches(
    api: Api, url: str, make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    """250 first-seen units reach the service in 3 batch requests, none one by one."""
    api.create_experiment(simple_config("checkout"))
    local = make_client(url, local_evaluation=True, flush_interval=30)
    for i in range(250):
        local.assign("checkout", f"u{i}")
    assert local.flush(timeout=20)
    assert len(exposure_rows(redis_client, "checkout")) == 250
    assert local.stats().exposures_sent == 250
    assert _requests_to(api.client, "/v1/assign/batch") == 3
    assert _requests_to(api.client, "/v1/assign") == 0


def test_a_refused_exposure_batch_loses_only_the_named_unit(
    api: Api, url: str, make_client: Callable[..., Client], redis_client: redis.Redis
) -> None:
    """An experiment removed from Redis refuses the batch naming ``requests[i]``: that unit
    is dropped and the rest sent again in one batch, each exposed once."""
    api.create_experiment(simple_config("checkout"))
    api.create_experiment(simple_config("gone"))
    local = make_client(url, local_evaluation=True, flush_interval=30)
    for i in range(5):
        local.assign("checkout", f"u{i}")
    local.assign("gone", "u0")
    redis_client.delete(keys.experiment_meta("gone"))
    assert local.flush(timeout=20)
    assert sorted(row["unit_id"] for row in exposure_rows(redis_client, "checkout")) == [
        f"u{i}" for i in range(5)
    ]
    stats = local.stats()
    assert (stats.exposures_sent, stats.exposures_dropped) == (5, 1)
    assert "requests[5].experiment" in (stats.last_error or "")
    assert _requests_to(api.client, "/v1/assign/batch") == 1  # the 200; the 404 came first
    assert _requests_to(api.client, "/v1/assign") == 0


def test_local_assignments_match_remote_ones(
    api: Api, url: str, make_client: Callable[..., Client]
) -> None:
    """``assignments`` in local mode covers the same live experiments with the same answers."""
    api.create_experiment(example_config())
    api.create_experiment(simple_config("checkout"))
    api.create_experiment(simple_config("draft-one"), start=False)
    local, remote = make_client(url, local_evaluation=True), make_client(url)
    attributes = {"country": "FR", "app_version": 999}
    for unit in ("user-1", "user-2", "qa-bob"):
        assert local.assignments(unit, attributes) == remote.assignments(unit, attributes)


def test_local_evaluation_follows_config_changes_on_refresh(
    api: Api, url: str, make_client: Callable[..., Client]
) -> None:
    """A stopped or shipped experiment is seen after the next refresh (explicit or periodic)."""
    api.create_experiment(simple_config("checkout"))
    client = make_client(url, local_evaluation=True, refresh_interval=0.1, flush_interval=0.05)
    assert client.assign("checkout", "u1").reason is Reason.ASSIGNED
    assert api.call("POST", "/v1/experiments/checkout/stop").status_code == 200
    wait_for(lambda: client.assign("checkout", "u1").reason is Reason.NOT_RUNNING)
    response = api.call("POST", "/v1/experiments/checkout/ship", {"variant": "treatment"})
    assert response.status_code == 200
    client.refresh()
    shipped = client.assign("checkout", "u2")
    assert (shipped.variant, shipped.reason, shipped.in_experiment) == (
        "treatment", Reason.SHIPPED, False)  # fmt: skip
    assert shipped.config_version == response.get_json()["version"]


def test_local_evaluation_errors(api: Api, url: str, make_client: Callable[..., Client]) -> None:
    """Unknown experiment -> NotFound; bad unit id -> InvalidInput; no configs -> unavailable."""
    api.create_experiment(simple_config("checkout"))
    client = make_client(url, local_evaluation=True)
    with pytest.raises(NotFound):
        client.assign("nope", "u1")
    with pytest.raises(InvalidInput):
        client.assign("checkout", "")
    offline = make_client(f"http://127.0.0.1:{free_port()}", local_evaluation=True, timeout=0.3)
    with pytest.raises(ServiceUnavailable, match="no experiment configs"):
        offline.assign("checkout", "u1")


@pytest.mark.parametrize(
    ("options", "field"),
    [({"batch_size": 0}, "batch_size"), ({"batch_size": 5000}, "batch_size"),
     ({"max_buffer": 0}, "max_buffer")],
)  # fmt: skip
def test_bad_options_are_refused(options: dict[str, Any], field: str) -> None:
    """Options outside their range raise `InvalidInput` naming the option."""
    with pytest.raises(InvalidInput) as caught:
        Client("http://127.0.0.1:1", "k", **options)
    assert caught.value.field == field


def test_bad_url_is_refused() -> None:
    """Only http(s) URLs with a host are accepted."""
    with pytest.raises(InvalidInput, match="not an http"):
        Client("ftp://example", "k")


# -- hostile input and partly refused batches ----------------------------------------------------

LONE = "\ud800"


@pytest.mark.parametrize("local", [False, True], ids=["remote", "local"])
@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.track("u" + LONE, "purchase"),
        lambda c: c.track("u1", "purchase" + LONE),
        lambda c: c.track("u1", "purchase\n"),
        lambda c: c.assign("checkout", "u" + LONE),
        lambda c: c.assign("checkout", "u1", {"country": LONE}),
        lambda c: c.assign("checkout", "u1", {LONE: "DE"}),
        lambda c: c.assignments("u1", {"nested": [1, {"x": LONE}]}),
    ],
)
def test_lone_surrogates_are_refused_at_once_and_never_queued(  # noqa: PLR0917 - table columns
    api: Api, url: str, make_client: Callable[..., Client], redis_client: redis.Redis,
    local: bool, call: Any,
) -> None:  # fmt: skip
    """``track``/``assign`` raise `InvalidInput` before anything is sent or queued."""
    api.create_experiment(simple_config("checkout"))
    client = make_client(url, local_evaluation=local, flush_interval=30)
    with pytest.raises(InvalidInput):
        call(client)
    assert client.flush(timeout=10)
    stats = client.stats()
    assert (stats.tracked, stats.rejected, stats.exposures_sent, stats.exposures_dropped) == (
        0, 0, 0, 0)  # fmt: skip
    assert exposure_rows(redis_client, "checkout") == outcome_ids(redis_client) == []


@pytest.fixture
def served(redis_url: str, redis_client: redis.Redis) -> Iterator[Callable[..., tuple[str, Api]]]:
    """Serve an app built with extra settings over real HTTP: ``(url, api)``."""
    from service import create_app

    running = []

    def start(**settings: Any) -> tuple[str, Api]:
        app = create_app({"TESTING": True, "REDIS_URL": redis_url, **settings})
        server, thread = serve(app)
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}", Api(
            app.test_client(), app.extensions["abtest"].store
        )

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join()


def test_events_the_service_refuses_are_dropped_and_the_rest_delivered(
    served: Callable[..., tuple[str, Api]], redis_client: redis.Redis
) -> None:
    """A batch refused for ``events[i]`` (here an undeclared metric) loses only that event:
    it is counted as rejected, never retried, and every other event arrives once."""
    url, api = served(REFUSE_UNDECLARED_METRICS=True)
    api.create_experiment(example_config())
    with Client(url, api.sdk_key, flush_interval=30, batch_size=50) as client:
        good, bad = [], []
        for i in range(120):
            if i % 37 == 5:
                bad.append(client.track(f"u{i}", "purchse"))
            else:
                good.append(client.track(f"u{i}", "purchase"))
        assert client.flush(timeout=20)
        stats = client.stats()
    assert sorted(outcome_ids(redis_client)) == sorted(good)
    assert (stats.sent, stats.rejected, stats.pending, stats.retries) == (len(good), len(bad), 0, 0)
    assert "did you mean 'purchase'" in (stats.last_error or "")


def test_a_batch_over_the_body_limit_is_split_until_it_fits(
    served: Callable[..., tuple[str, Api]], redis_client: redis.Redis
) -> None:
    """A 413 names no event: the batch is halved until each part fits, and nothing is lost."""
    url, api = served(MAX_CONTENT_LENGTH=6_000)
    declare(api, "purchase")
    with Client(url, api.sdk_key, flush_interval=30, batch_size=500) as client:
        ids = [client.track(f"user-{i}", "purchase", value=i) for i in range(300)]
        assert client.flush(timeout=30)
        stats = client.stats()
    assert sorted(outcome_ids(redis_client)) == sorted(ids)
    assert (stats.sent, stats.rejected) == (300, 0)
