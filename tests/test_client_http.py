"""The HTTP transport's keep-alive rules against a scripted peer on a real socket.

The service itself cannot be made to drop a connection at a chosen moment, so a small
HTTP/1.1 server here answers or hangs up as each test scripts it, and counts the requests
that reached it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from abtest.admin_client import AdminClient
from abtest.client_http import HttpTransport, ServiceUnavailable


class ScriptedPeer:
    """Per request, in order: "answer" (stay open), "answer-close" (answer, then hang up as
    an idle timeout would) or "hang-up" (read the request, close without answering)."""

    def __init__(self, script: list[str], body: bytes = b"{}") -> None:
        self.script = list(script)
        self.body = body
        self.requests: list[str] = []
        self.closed = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)  # so that close() ends the thread promptly
        while self.script and not self.closed:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with conn:
                while self.script:
                    request = _read_request(conn)
                    if request is None:
                        break  # the client closed or replaced this connection
                    self.requests.append(request)
                    step = self.script.pop(0)
                    if step == "hang-up":
                        break
                    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            f"Content-Length: {len(self.body)}\r\n\r\n").encode()  # fmt: skip
                    conn.sendall(head + self.body)
                    if step == "answer-close":
                        break

    def close(self) -> None:
        self.closed = True
        self._thread.join(5)
        self.listener.close()


def _read_request(conn: socket.socket) -> str | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
    while len(rest) < length:
        rest += conn.recv(65536)
    return head.split(b"\r\n")[0].decode()


@pytest.fixture
def peer_factory() -> Iterator[type[ScriptedPeer]]:
    peers: list[ScriptedPeer] = []

    class Tracked(ScriptedPeer):
        def __init__(self, script: list[str], body: bytes = b"{}") -> None:
            super().__init__(script, body)
            peers.append(self)

    yield Tracked
    for peer in peers:
        peer.close()


@pytest.fixture
def transport() -> Iterator[Callable[[str], HttpTransport]]:
    opened: list[HttpTransport] = []

    def make(url: str) -> HttpTransport:
        opened.append(HttpTransport(url, "key", timeout=5))
        return opened[-1]

    yield make
    for http in opened:
        http.close_all()


def test_a_connection_closed_by_the_server_while_idle_is_replaced_before_sending(
    peer_factory: type[ScriptedPeer], transport: Callable[[str], HttpTransport]
) -> None:
    """The peer hung up after its answer: a write goes out once, on a new connection."""
    peer = peer_factory(["answer-close", "answer"])
    http = transport(peer.url)
    assert http.call("GET", "/first") == {}
    threading.Event().wait(0.1)  # the peer's FIN arrives
    assert http.call("POST", "/write", {"x": 1}, idempotent=False) == {}
    assert peer.requests == ["GET /first HTTP/1.1", "POST /write HTTP/1.1"]


def test_a_write_whose_answer_is_lost_is_not_sent_again(
    peer_factory: type[ScriptedPeer], transport: Callable[[str], HttpTransport]
) -> None:
    """The peer took the write and hung up: its outcome is unknown, so it is not resent."""
    peer = peer_factory(["answer", "hang-up"])
    http = transport(peer.url)
    assert http.call("GET", "/first") == {}
    with pytest.raises(ServiceUnavailable, match="may have been applied"):
        http.call("POST", "/write", {"x": 1}, idempotent=False)
    assert peer.requests == ["GET /first HTTP/1.1", "POST /write HTTP/1.1"]


def test_an_idempotent_call_whose_answer_is_lost_is_sent_once_more(
    peer_factory: type[ScriptedPeer], transport: Callable[[str], HttpTransport]
) -> None:
    """Assignments and events are idempotent on the server, so the transport resends them."""
    peer = peer_factory(["answer", "hang-up", "answer"])
    http = transport(peer.url)
    assert http.call("GET", "/first") == {}
    assert http.call("POST", "/v1/events", {"events": []}) == {}
    assert peer.requests == ["GET /first HTTP/1.1", "POST /v1/events HTTP/1.1",
                             "POST /v1/events HTTP/1.1"]  # fmt: skip


def test_the_admin_client_never_sends_a_write_twice_but_resends_a_revocation(
    peer_factory: type[ScriptedPeer],
) -> None:
    """Creating a key twice would leave a second live key nobody knows about; revoking twice
    changes nothing, so that call is sent again."""
    body = b'{"key": "abt_x", "id": "k1", "role": "sdk", "name": "", "created_at": "2026"}'
    peer = peer_factory(["answer", "hang-up", "answer", "hang-up", "answer"], body)
    with AdminClient(peer.url, "key") as admin:
        assert admin.create_api_key("sdk")[0] == "abt_x"
        with pytest.raises(ServiceUnavailable, match="may have been applied"):
            admin.create_api_key("sdk")
        assert admin.revoke_api_key("k1").id == "k1"  # a new connection after the hang-up
        assert admin.revoke_api_key("k1").id == "k1"  # lost once, sent again
    assert [r.split()[0] for r in peer.requests] == ["POST", "POST", "DELETE", "DELETE", "DELETE"]
