"""HTTP transport of `abtest.client`: JSON over keep-alive ``http.client`` connections.

Standard library only.  Error bodies ``{"error": {"code", "message", "field"}}`` become the
matching `abtest.errors` class; no answer, a 5xx, 408 or 429 becomes `ServiceUnavailable`.

A kept-alive connection that the server has closed meanwhile (an idle timeout) is noticed
before a request goes out and replaced, as urllib3 does (``is_connection_dropped``).  A
connection that breaks after the request went out leaves its outcome unknown: the request
is sent again only when the caller says it is idempotent (every call of `abtest.client`
is: sticky assignment, event ids); otherwise `ServiceUnavailable` says so.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
from typing import Any, Final
from urllib.parse import urlsplit

from abtest import errors

_ERRORS: Final[dict[str, type[errors.AbtestError]]] = {
    cls.code: cls
    for cls in (errors.InvalidInput, errors.NotFound, errors.Conflict, errors.Unauthorized,
                errors.Forbidden, errors.PayloadTooLarge, errors.StoreUnavailable)
}  # fmt: skip
_RETRYABLE: Final = frozenset({408, 429, 500, 502, 503, 504})


class ServiceUnavailable(errors.StoreUnavailable):
    """The service could not be reached or answered 5xx; nothing is known to be written."""

    code = "service_unavailable"


class HttpTransport:
    """JSON over HTTP/1.1 keep-alive: one connection per thread, reopened when it drops."""

    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.InvalidInput(f"not an http(s) URL: {url!r}", "url")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.base = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": "abtest-python",
        }
        self._local = threading.local()
        self._all: set[http.client.HTTPConnection] = set()  # every thread's, for close_all
        self._all_lock = threading.Lock()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            if conn.sock is None or not _peer_closed(conn.sock):
                return conn, True
            self.close()
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        self._local.conn = conn
        with self._all_lock:
            self._all.add(conn)
        return conn, False

    def close(self) -> None:
        """Close this thread's connection (the next request opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._all_lock:
                self._all.discard(conn)

    def close_all(self) -> None:
        """Close every thread's connection."""
        with self._all_lock:
            conns, self._all = self._all, set()
        for conn in conns:
            conn.close()

    def call(self, method: str, path: str, body: Any = None, *, idempotent: bool = True) -> Any:
        """`request`, then the service's JSON error as the typed `abtest` error."""
        status, answer = self.request(method, path, body, idempotent=idempotent)
        raise_for(status, answer)
        return answer

    def request(
        self, method: str, path: str, body: Any = None, *, idempotent: bool = True
    ) -> tuple[int, Any]:
        """``(status, parsed JSON body)``; `ServiceUnavailable` when the service is unreachable.

        When a reused keep-alive connection breaks after sending, an ``idempotent`` request
        is sent once more on a new connection; any other raises `ServiceUnavailable`, since
        the server may have applied it.
        """
        payload = None if body is None else json.dumps(body).encode()
        for _ in range(2):
            conn, reused = self._connection()
            try:
                conn.request(method, self.base + path, body=payload, headers=self.headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and idempotent:
                    continue
                if reused:
                    raise ServiceUnavailable(
                        f"the connection broke after {method} {path} was sent ({exc!r}): it "
                        "may have been applied; check before sending it again"
                    ) from None
                raise ServiceUnavailable(f"cannot reach the service: {exc!r}") from None
            if response.will_close:
                self.close()
            try:
                return response.status, json.loads(raw) if raw else None
            except ValueError:
                return response.status, None
        raise ServiceUnavailable("the service closed the connection twice")  # pragma: no cover


def _peer_closed(sock: socket.socket) -> bool:
    """True when an idle kept-alive socket is readable: the peer closed it (or sent bytes no
    request asked for), so it must not carry the next request (urllib3's check)."""
    try:
        if hasattr(select, "poll"):  # no descriptor limit, unlike select()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def raise_for(status: int, body: Any) -> None:
    if status < 300:
        return
    error = body.get("error") if isinstance(body, dict) else None
    if status >= 500 or status in _RETRYABLE or not isinstance(error, dict):
        message = error.get("message") if isinstance(error, dict) else None
        raise ServiceUnavailable(f"the service answered {status}: {message or 'no detail'}")
    cls = _ERRORS.get(str(error.get("code")), errors.InvalidInput)
    raise cls(str(error.get("message", f"HTTP {status}")), error.get("field"))
