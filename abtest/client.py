"""Python client of the abtest service: assign units, track outcomes, or evaluate locally.

    with Client("http://localhost:8000", api_key) as ab:
        variant = ab.assign("checkout-button", user_id).variant
        ab.track(user_id, "purchase", value=42.0)

`Client.track` never blocks on the network: it validates the event, gives it a uuid4
``event_id`` (so a retry is counted once by the server) and puts it in a bounded buffer; when
the buffer is full the event is dropped and counted (`ClientStats.dropped`) rather than
blocking the caller.  One background thread sends batches every ``flush_interval`` seconds,
retrying failures with exponential backoff and full jitter, and everything left is flushed
by `Client.flush`, `Client.close` and at interpreter exit.

With ``local_evaluation=True`` the client fetches every experiment config
(``GET /v1/experiments``), refreshes them every ``refresh_interval`` seconds, and assigns in
process with `abtest.assignment.assign` (the service's own hashing).  Exposures are still
recorded by the service: the first time this process sees a unit ``assigned`` in an
experiment, the background thread sends it with ``POST /v1/assign/batch`` (up to
`abtest.store.MAX_BATCH_ASSIGNMENTS` units per request) together with the time it was
assigned here, which dates the exposure (`abtest.store.exposure_time`), so outcomes tracked
right after the assignment are not older than it; the service stores the sticky variant and
logs the first exposure exactly once (under a global holdout, holdout members and a shipped
experiment's units are reported the same way, for the holdout's own log).  A batch the
service refuses in part loses only the items it names (`abtest.client_batches`).  Only the
standard library is used (``http.client`` with one keep-alive connection per thread).
"""

from __future__ import annotations

import atexit
import json
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlencode

from abtest import errors
from abtest.assign_requests import check_assign_request
from abtest.assignment import Reason, recorded
from abtest.assignment import assign as assign_locally
from abtest.attributes import segment_attributes
from abtest.client_batches import Delivery, deliver
from abtest.client_http import HttpTransport, ServiceUnavailable
from abtest.events import MAX_BATCH_EVENTS, now_us, parse_event
from abtest.experiment import Experiment, Status, validate_unit_id
from abtest.json_input import unsafe_value
from abtest.store import MAX_BATCH_ASSIGNMENTS

__all__ = ["Client", "ClientAssignment", "ClientStats", "ServiceUnavailable"]

_SEEN_LIMIT: Final = 100_000  # (experiment, unit) pairs remembered to send one exposure each
# A first exposure to report: experiment, unit, attributes, and when it was assigned here
# (epoch µs; the service dates the exposure by it, so outcomes tracked at once count).
_Exposure = tuple[str, str, Mapping[str, Any], int]


@dataclass(frozen=True)
class ClientAssignment:
    """The answer of `Client.assign`: the service's JSON, typed."""

    experiment: str
    unit_id: str
    variant: str | None
    payload: Any
    in_experiment: bool
    reason: Reason
    config_version: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientAssignment:
        """Build from the ``POST /v1/assign`` response body."""
        return cls(data["experiment"], data["unit_id"], data["variant"], data["payload"],
                   bool(data["in_experiment"]), Reason(data["reason"]),
                   int(data["config_version"]))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (the service's field names)."""
        return {**asdict(self), "reason": self.reason.value}


@dataclass(frozen=True)
class ClientStats:
    """Counters since the client was created (a snapshot)."""

    tracked: int  # events accepted into the buffer
    sent: int  # events the service acknowledged (accepted + duplicates)
    duplicates: int  # of those, events the service had already seen (retries)
    dropped: int  # events refused because the buffer was full, or left at close
    rejected: int  # events the service refused with a 4xx (not retried)
    pending: int  # events still in the buffer
    retries: int  # failed send attempts that were retried
    exposures_sent: int  # local mode: first exposures reported with POST /v1/assign/batch
    exposures_dropped: int
    mismatches: int  # local mode: the service's sticky variant differed from ours
    config_refreshes: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form."""
        return asdict(self)


class Client:
    """A thread-safe client; use one per process, as a context manager or `close` it.

    Parameters: ``timeout`` (seconds per HTTP request), ``flush_interval`` (seconds between
    background sends), ``batch_size`` (events per request, at most the service's limit),
    ``max_buffer`` (events held before new ones are dropped), ``backoff_base`` /
    ``backoff_max`` (seconds; retry delays are uniform in [0, min(max, base * 2**n)]),
    ``close_timeout`` (seconds `close` and the exit hook spend flushing),
    ``local_evaluation`` and ``refresh_interval`` (see the module docstring).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 2.0,
        flush_interval: float = 1.0,
        batch_size: int = 500,
        max_buffer: int = 10_000,
        backoff_base: float = 0.1,
        backoff_max: float = 10.0,
        close_timeout: float = 5.0,
        local_evaluation: bool = False,
        refresh_interval: float = 30.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise errors.InvalidInput(f"must be 1 to {MAX_BATCH_EVENTS}", "batch_size")
        if max_buffer < 1:
            raise errors.InvalidInput("must be at least 1", "max_buffer")
        self._http = HttpTransport(url, api_key, timeout)
        self.flush_interval, self.batch_size, self.max_buffer = (
            flush_interval,
            batch_size,
            max_buffer,
        )
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.close_timeout, self.refresh_interval = close_timeout, refresh_interval
        self.local_evaluation = local_evaluation
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # buffer drained / config loaded
        self._wake = threading.Event()
        self._events: deque[dict[str, Any]] = deque()
        self._exposures: deque[_Exposure] = deque()
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._configs: dict[str, tuple[Experiment, int]] | None = None
        self._counts = dict.fromkeys(("tracked", "sent", "duplicates", "dropped", "rejected",
                                      "retries", "exposures_sent", "exposures_dropped",
                                      "mismatches", "config_refreshes"), 0)  # fmt: skip
        self._last_error: str | None = None
        self._closed = False
        self._deadline: float | None = None  # set by close: stop retrying after it
        self._next_refresh = 0.0
        if local_evaluation:
            self._refresh()
        self._thread = threading.Thread(target=self._run, name="abtest-client", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- assignment ------------------------------------------------------------------------
    def assign(
        self, experiment: str, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> ClientAssignment:
        """The unit's variant; remote (one request) or, in local mode, computed in process.

        A request the service would refuse raises `InvalidInput` here, before anything is
        sent or queued.
        """
        if not self.local_evaluation:
            return self.assign_remote(experiment, unit_id, attributes)
        _check_unit(unit_id, attributes)
        configs = self._loaded()
        if experiment not in configs:
            raise errors.NotFound(f"no experiment '{experiment}'", "experiment")
        return self._local(configs[experiment], unit_id, attributes)

    def assignments(
        self, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> dict[str, ClientAssignment]:
        """The unit's assignment in every running, shipped or rolled-back experiment, by
        experiment key."""
        _check_unit(unit_id, attributes)
        if not self.local_evaluation:
            query = [("unit_id", unit_id)]
            query += [(f"attr.{k}", v if isinstance(v, str) else json.dumps(v))
                      for k, v in (attributes or {}).items()]  # fmt: skip
            body = self._call("GET", f"/v1/assignments?{urlencode(query, quote_via=quote)}")
            answers = [ClientAssignment.from_dict(a) for a in body["assignments"]]
            return {a.experiment: a for a in answers}
        live = (Status.RUNNING, Status.SHIPPED, Status.ROLLED_BACK)
        return {key: self._local(entry, unit_id, attributes)
                for key, entry in sorted(self._loaded().items())
                if entry[0].status in live}  # fmt: skip

    def _local(
        self, entry: tuple[Experiment, int], unit_id: str, attributes: Mapping[str, Any] | None
    ) -> ClientAssignment:
        experiment, version = entry
        result = assign_locally(experiment, unit_id, attributes)
        if recorded(experiment, result):
            self._report_exposure(experiment.key, unit_id, attributes or {})
        return ClientAssignment(experiment.key, unit_id, result.variant, result.payload,
                                result.in_experiment, result.reason, version)  # fmt: skip

    def _report_exposure(self, key: str, unit_id: str, attributes: Mapping[str, Any]) -> None:
        with self._lock:
            if (key, unit_id) in self._seen:
                self._seen.move_to_end((key, unit_id))
                return
            if len(self._exposures) >= self.max_buffer:
                self._counts["exposures_dropped"] += 1
                return
            self._seen[(key, unit_id)] = None
            if len(self._seen) > _SEEN_LIMIT:
                self._seen.popitem(last=False)  # forgotten: at worst one more idempotent call
            self._exposures.append((key, unit_id, dict(attributes), now_us()))
        self._wake.set()

    def _loaded(self) -> dict[str, tuple[Experiment, int]]:
        configs = self._configs
        if configs is None:
            raise ServiceUnavailable(f"no experiment configs loaded yet: {self._last_error}")
        return configs

    def refresh(self) -> None:
        """Local mode: fetch every experiment config now (the thread also does so)."""
        self._refresh(raise_errors=True)

    def _refresh(self, *, raise_errors: bool = False) -> None:
        try:
            body = self._call("GET", "/v1/experiments")
        except errors.AbtestError as exc:
            self._note(exc)
            if raise_errors:
                raise
            return
        configs = {}
        for item in body["experiments"]:
            try:
                configs[item["key"]] = (Experiment.from_dict(item["config"]), int(item["version"]))
            except (errors.AbtestError, KeyError, TypeError, ValueError) as exc:
                self._note(exc)  # a config this client version cannot read: skip, keep the rest
        with self._lock:
            self._configs = configs
            self._counts["config_refreshes"] += 1
            self._next_refresh = time.monotonic() + self.refresh_interval

    # -- events ----------------------------------------------------------------------------
    def track(
        self,
        unit_id: str,
        metric: str,
        value: float = 1.0,
        timestamp: datetime | float | None = None,
    ) -> str | None:
        """Buffer one outcome event; returns its ``event_id``, or None if the buffer was full.

        Raises `InvalidInput` at once for an event the service would refuse (bad id, metric
        name or value); never waits for the network.
        """
        if isinstance(timestamp, datetime):
            timestamp = timestamp.timestamp()
        event = parse_event({"event_id": uuid.uuid4().hex, "unit_id": unit_id, "metric": metric,
                             "value": value, "timestamp": timestamp})  # fmt: skip
        wire = {**event.to_dict(), "timestamp": event.timestamp / 1e6}  # the API takes seconds
        with self._lock:
            if self._closed or len(self._events) >= self.max_buffer:
                self._counts["dropped"] += 1
                return None
            self._events.append(wire)
            self._counts["tracked"] += 1
            full = len(self._events) >= self.batch_size
        if full:
            self._wake.set()
        return event.event_id

    def flush(self, timeout: float | None = None) -> bool:
        """Ask the thread to send everything now; True if the buffers emptied within timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wake.set()
        with self._changed:
            while self._events or self._exposures:
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not self._thread.is_alive():
                    return False
                self._changed.wait(left if left is not None else 0.5)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Flush for up to ``timeout`` seconds (default ``close_timeout``), then stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        atexit.unregister(self.close)
        self._wake.set()
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 1.0)
        with self._lock:
            self._counts["dropped"] += len(self._events)
            self._counts["exposures_dropped"] += len(self._exposures)
            self._events.clear()
            self._exposures.clear()
        self._http.close_all()

    def stats(self) -> ClientStats:
        """A snapshot of the counters."""
        with self._lock:
            return ClientStats(**self._counts, pending=len(self._events),
                               last_error=self._last_error)  # fmt: skip

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the background thread -------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self._http.call(method, path, body)

    def _note(self, exc: Exception) -> None:
        with self._lock:
            self._last_error = f"{type(exc).__name__}: {exc}"

    def _run(self) -> None:
        failures = 0
        while True:
            delay = self.flush_interval
            if failures:  # "full jitter": AWS Architecture Blog, "Exponential Backoff and Jitter"
                delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2**failures))
            with self._lock:
                if self._deadline is not None:
                    delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            self._wake.wait(delay)  # track(), flush() and close() wake it early
            self._wake.clear()
            with self._lock:
                closing, deadline = self._closed, self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                return
            if self.local_evaluation and time.monotonic() >= self._next_refresh and not closing:
                self._refresh()
            try:
                self._send_exposures()
                self._send_events()
                failures = 0
            except ServiceUnavailable as exc:
                self._note(exc)
                failures += 1
                with self._lock:
                    self._counts["retries"] += 1
            with self._changed:
                self._changed.notify_all()
                done = closing and not self._events and not self._exposures
            if done:
                return

    def _send_events(self) -> None:
        while True:
            with self._lock:
                batch = [self._events[i] for i in range(min(self.batch_size, len(self._events)))]
            if not batch:
                return
            sent = deliver(batch, lambda part: self._call("POST", "/v1/events", {"events": part}))
            with self._lock:
                for _, answer in sent.delivered:
                    self._counts["sent"] += int(answer["accepted"]) + int(answer["duplicates"])
                    self._counts["duplicates"] += int(answer["duplicates"])
                self._counts["rejected"] += len(sent.dropped)
            self._settle(self._events, batch, sent)

    def _send_exposures(self) -> None:
        while True:
            with self._lock:
                count = min(MAX_BATCH_ASSIGNMENTS, len(self._exposures))
                batch = [self._exposures[i] for i in range(count)]
            if not batch:
                return
            sent = deliver(batch, self._assign_remote_many)
            configs = self._configs or {}
            # A unit assigned under older weights keeps its stored variant on the server.
            differs = sum(
                answer.variant != assign_locally(configs[key][0], unit_id, attributes).variant
                for indices, answers in sent.delivered
                for (key, unit_id, attributes, _), answer in zip(
                    [batch[i] for i in indices], answers, strict=True
                )
                if key in configs
            )
            with self._lock:
                self._counts["exposures_sent"] += sum(len(i) for i, _ in sent.delivered)
                self._counts["exposures_dropped"] += len(sent.dropped)
                self._counts["mismatches"] += differs
            self._settle(self._exposures, batch, sent)

    def _settle(self, queue: deque[Any], batch: list[Any], sent: Delivery[Any, Any]) -> None:
        """Take ``batch`` off the front of ``queue``, putting back what was not sent; raise
        `ServiceUnavailable` if the service went away (the thread then backs off)."""
        for refusal in sent.refusals:
            self._note(refusal)
        with self._lock:
            for _ in batch:  # only this thread removes, so these are the batch's items
                queue.popleft()
            queue.extendleft(batch[i] for i in reversed(sent.unsettled))
            self._changed.notify_all()
        if sent.unavailable is not None:
            raise sent.unavailable  # the rest stays queued; sent again after a backoff

    def _assign_remote_many(self, batch: list[_Exposure]) -> list[ClientAssignment]:
        requests = [
            {"experiment": key, "unit_id": unit_id, "attributes": dict(attributes),
             "assigned_at": assigned_at}
            for key, unit_id, attributes, assigned_at in batch
        ]  # fmt: skip
        answer = self._call("POST", "/v1/assign/batch", {"requests": requests})
        return [ClientAssignment.from_dict(item) for item in answer["assignments"]]

    def assign_remote(
        self, experiment: str, unit_id: str, attributes: Mapping[str, Any] | None = None
    ) -> ClientAssignment:
        """``POST /v1/assign`` whatever the mode (it records the unit's first exposure)."""
        check_assign_request(experiment, unit_id, attributes)
        body: dict[str, Any] = {"experiment": experiment, "unit_id": unit_id}
        if attributes:
            body["attributes"] = dict(attributes)
        return ClientAssignment.from_dict(self._call("POST", "/v1/assign", body))


def _check_unit(unit_id: object, attributes: Mapping[str, Any] | None) -> None:
    """The cheap checks of local evaluation: what would poison the exposure queue."""
    problem = validate_unit_id(unit_id) or (unsafe_value(attributes, "attributes")
                                            if attributes else None)  # fmt: skip
    if problem:
        raise errors.InvalidInput(problem.message, problem.field)
    segment_attributes(attributes)  # what the service keeps with the exposure, bounded
