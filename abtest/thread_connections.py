"""One Redis connection per thread for the per-request scripts, leased from the client's pool.

redis-py checks a connection out of its pool and back in around every command: a lock, a
liveness probe of the socket (``can_read``: a non-blocking peek, three system calls) and,
since redis-py 8, its observability hooks.  For `Store.assign`, one EVALSHA, that made a
call cost about 120 µs of CPU instead of about 50 µs (in-process loop, 2-core machine).  A
thread here checks a connection out once and keeps it until the thread ends.

The pool's probe is there so that a connection never carries the unread reply of an
interrupted command into the next one.  redis-py's connection already disconnects itself
when a send or a read fails (its guarantee for command/response pairs, redis-py #1128);
`ThreadConnections.evalsha` also disconnects on an interruption between the two, so the
next command reconnects clean.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

import hiredis
import redis
from redis.commands.core import Script
from redis.connection import ConnectionPool

_forks = [0]  # bumped in every forked child: a lease taken before the fork is the parent's
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


class _Lease:
    """A connection checked out of ``pool``; given back when the owning thread ends."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.fork = _forks[0]
        self.connection = pool.get_connection()  # type: ignore[call-arg]  # stubs predate 6.0

    def __del__(self) -> None:
        # Runs when the thread's locals go away; the pool ignores a connection it no longer
        # owns (after a fork, or once the client was closed).
        with contextlib.suppress(Exception):
            self.pool.release(self.connection)


class ThreadConnections:
    """Runs registered Lua scripts on the calling thread's own connection of ``client``."""

    def __init__(self, client: redis.Redis[str]) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()

    def _connection(self) -> Any:
        lease: _Lease | None = getattr(self._local, "lease", None)
        if lease is None or lease.fork != _forks[0]:  # first use, or in a forked child
            lease = self._local.lease = _Lease(self._pool)
        return lease.connection

    def evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``script(keys, args)`` in one round trip, retried as the client's commands are.

        A server that lost its scripts (restart, ``SCRIPT FLUSH``) gets the script loaded
        again through redis-py's `Script`, which is what it is for.
        """
        reply = self.evalsha_many(script, ((keys, args),))[0]
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
        return reply

    def evalsha_many(
        self, script: Script, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Every ``script(keys, args)`` of ``calls``, pipelined in one round trip, in order.

        An error reply comes back as its `redis.exceptions.ResponseError` in the list (read
        whole, so the connection stays in step).  After a connection error, or when the
        server lost the script, calls are sent again: ``script`` must be idempotent.
        """
        conn = self._connection()

        def call() -> list[Any]:
            sha = script.sha  # type: ignore[attr-defined]  # missing from the stubs
            # hiredis packs directly: redis-py's packer type-checks every argument first.
            conn.send_packed_command(
                [hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args))
                 for keys, args in calls]
            )  # fmt: skip
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(conn.read_response())
                except redis.exceptions.ResponseError as error:
                    replies.append(error)
            return replies

        try:
            replies: list[Any] = conn.retry.call_with_retry(call, lambda _error: conn.disconnect())
        except BaseException:
            conn.disconnect()  # a reply may still be in flight: never read it as another's
            raise
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            return [_reply_or_error(script, keys, args) for keys, args in calls]
        return replies


def _reply_or_error(script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
    try:
        return script(keys=keys, args=args)
    except redis.exceptions.ResponseError as error:
        return error
