"""A real local HTTP receiver for webhook tests: records every POST and answers with the
statuses it is told to, in order (then 200)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from abtest.demo_rollout import local_http_server


@dataclass
class Received:
    """One POST as it arrived: the path, the headers (lower-case names) and the raw body."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """The receiver's state: what arrived, and what to answer next."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0  # seconds to wait before answering
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` POSTs have arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.received)} of {count} deliveries arrived")


@contextmanager
def receiver(statuses: list[int] | None = None, delay: float = 0.0) -> Iterator[Receiver]:
    """Serve a `Receiver` on a free loopback port for the ``with`` block."""
    state = Receiver(statuses=list(statuses or []), delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = state.statuses.pop(0) if state.statuses else 200
            time.sleep(state.delay)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"receiver says no")

        def log_message(self, *_args: object) -> None:  # keep the test output quiet
            return

    with local_http_server(Handler) as server:
        state.url = f"http://127.0.0.1:{server.server_port}/hook"
        yield state
