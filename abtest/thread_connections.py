"""One Redis connection per thread (and per cluster node) for the per-request scripts, leased
from the client's pool.

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

On Redis Cluster (a ``RedisCluster`` client) each call goes to the primary that owns its
first key's slot, from redis-py's slot map, on a connection leased from that node's pool;
calls for several nodes are sent to all of them before any reply is read.  A ``MOVED``
reply or a lost node refreshes the slot map and sends the call again, ``ASK`` (a slot being
migrated) sends it to the importing node after ``ASKING``, ``TRYAGAIN`` and
``CLUSTERDOWN`` wait a little; what still fails after `_ATTEMPTS` is raised or returned as
the error it is (a `redis.RedisError`: the service answers 503).

``wait_replicas`` adds ``WAIT n timeout`` after a node's calls on the same connection, so a
write is reported only once that many replicas hold it (`ReplicationUnconfirmed` if not):
Redis replicates asynchronously, and a failover loses what the replica had not received.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import hiredis
import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import ConnectionPool

if TYPE_CHECKING:
    from abtest.redis_client import RedisClient

_forks = [0]  # bumped in every forked child: a lease taken before the fork is the parent's
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))

_ATTEMPTS: Final = 3  # a cluster call: the first try plus two after a redirect or refresh
_REFRESH_SECONDS: Final = 0.1
_CONNECTION_ERRORS: Final = (redis.ConnectionError, redis.TimeoutError)
_RETRIED_REPLIES: Final = (
    redis.exceptions.MovedError,  # a subclass of AskError: checked first below
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.NoScriptError,
)


class ReplicationUnconfirmed(redis.exceptions.ConnectionError):
    """Fewer replicas than asked acknowledged a write within the timeout.

    The write may have been applied: callers answer 503, and a retry (every script is
    idempotent) is safe.
    """


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

    def __init__(
        self,
        client: RedisClient,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
    ) -> None:
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._single = None if isinstance(client, RedisCluster) else client
        self._local = threading.local()
        self._wait = ("WAIT", wait_replicas, wait_timeout_ms) if wait_replicas > 0 else None
        self._refresh_lock = threading.Lock()
        self._refreshed_at = 0.0

    def _connection(self, name: str, pool: ConnectionPool) -> Any:
        lease: _Lease | None = getattr(self._local, "leases", {}).get(name)
        if lease is not None and lease.fork == _forks[0] and lease.pool is pool:
            return lease.connection
        # First use, a forked child or a new pool.  Nothing of this thread's leases is held
        # in this frame while the pool may raise: a traceback kept by the caller would keep
        # them (and their connections) from going back when the thread ends.
        del lease
        fresh = _Lease(pool)
        if not hasattr(self._local, "leases"):
            self._local.leases = {}
        self._local.leases[name] = fresh
        return fresh.connection

    def evalsha(
        self, script: Script, keys: Sequence[str], args: Sequence[Any], *, write: bool = False
    ) -> Any:
        """``script(keys, args)`` in one round trip, retried as the client's commands are.

        A server that lost its scripts (restart, ``SCRIPT FLUSH``) gets the script loaded
        again.  ``write``: the call may write, so it waits for replicas if configured.
        """
        reply = self.evalsha_many(script, ((keys, args),), write=write)[0]
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
        return reply

    def evalsha_many(
        self,
        script: Script,
        calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        *,
        write: bool = False,
    ) -> list[Any]:
        """Every ``script(keys, args)`` of ``calls``, pipelined in one round trip, in order.

        An error reply comes back as its `redis.exceptions.ResponseError` in the list (read
        whole, so the connection stays in step).  After a connection error, or when the
        server lost the script, calls are sent again: ``script`` must be idempotent.
        """
        wait = self._wait if write else None
        if self._single is None:
            assert self._cluster is not None
            return self._cluster_calls(self._cluster, script, calls, wait)
        pool = self._single.connection_pool
        conn = self._connection("", pool)
        replies: list[Any] = []

        def call() -> list[Any]:
            _send(conn, script, calls, wait, asking=False)
            replies[:] = _read(conn, len(calls), wait, asking=False)
            return replies

        try:
            conn.retry.call_with_retry(call, lambda _error: conn.disconnect())
        except BaseException:
            conn.disconnect()  # a reply may still be in flight: never read it as another's
            raise
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            self._single.script_load(script.script)  # type: ignore[attr-defined,no-untyped-call]
            call()
        _raise_unconfirmed(replies)
        return replies

    def _cluster_calls(
        self,
        cluster: RedisCluster[str],
        script: Script,
        calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        wait: tuple[str, int, int] | None,
    ) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        asking: dict[int, tuple[str, int]] = {}
        for attempt in range(_ATTEMPTS):
            groups: dict[tuple[str, bool], list[int]] = {}
            nodes: dict[str, Any] = {}
            for index in pending:
                if index in asking:
                    node = cluster.nodes_manager.get_node(*asking[index])
                    if node is None:  # a node the map does not know yet
                        self._refresh(cluster)
                        node = cluster.nodes_manager.get_node(*asking[index])
                else:
                    names = calls[index][0]
                    slot = cluster.keyslot(names[0]) if names else 0  # keyless: any node
                    node = cluster.nodes_manager.get_node_from_slot(slot)  # type: ignore[arg-type]
                if node is None:
                    raise redis.exceptions.ClusterDownError("no node serves a call's slot")
                nodes[node.name] = node
                groups.setdefault((node.name, index in asking), []).append(index)
            failed = self._run_groups(cluster, script=script, calls=calls, wait=wait, groups=groups,
                                      nodes=nodes, replies=replies)  # fmt: skip
            retry = [i for i in pending if i in failed or isinstance(replies[i], _RETRIED_REPLIES)]
            if not retry or attempt == _ATTEMPTS - 1:
                if failed:
                    raise next(iter(failed.values()))
                break
            asking = {i: target for i in retry if (target := _ask_target(i, replies, asking))}
            if any(isinstance(replies[i], redis.exceptions.NoScriptError) for i in retry):
                # every primary; the stubs lack both names
                cluster.script_load(script.script)  # type: ignore[attr-defined]
            if failed or any(type(replies[i]) is redis.exceptions.MovedError for i in retry):
                self._refresh(cluster)  # a failover or a resharding: a new slot map
            elif len(asking) < len(retry):  # TRYAGAIN or CLUSTERDOWN: give it a moment
                time.sleep(0.05 * (attempt + 1))
            pending = retry
        _raise_unconfirmed(replies)
        return replies

    def _refresh(self, cluster: RedisCluster[str]) -> None:
        """Reload the slot map, once per `_REFRESH_SECONDS` for all threads: during a
        failover every request fails at once, and a reload per request would only pile up
        connections (redis-py 8 caps a node's pool at 100)."""
        if not self._refresh_lock.acquire(blocking=False):
            return  # another thread is reloading it right now
        try:
            if time.monotonic() - self._refreshed_at >= _REFRESH_SECONDS:
                cluster.nodes_manager.initialize()
                self._refreshed_at = time.monotonic()
        finally:
            self._refresh_lock.release()

    def _run_groups(
        self,
        cluster: RedisCluster[str],
        *,
        script: Script,
        calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        wait: tuple[str, int, int] | None,
        groups: dict[tuple[str, bool], list[int]],
        nodes: dict[str, Any],
        replies: list[Any],
    ) -> dict[int, Exception]:
        """Send each group's calls to its node, then read every group's replies."""
        failed: dict[int, Exception] = {}
        sent: list[tuple[Any, list[int], bool]] = []
        for (name, asking), indices in groups.items():
            conn = None
            try:
                pool = cluster.get_redis_connection(nodes[name]).connection_pool
                # ASKING applies to the next command only: one connection per ASK'd group
                conn = self._connection(f"{name}:ask" if asking else name, pool)
                _send(conn, script, [calls[i] for i in indices], wait, asking=asking)
            except _CONNECTION_ERRORS as error:  # a dead node: the caller refreshes the map
                if conn is not None:
                    conn.disconnect()
                failed.update(dict.fromkeys(indices, error))
                continue
            except BaseException:
                for unread in [conn, *(c for c, _, _ in sent)]:
                    if unread is not None:
                        unread.disconnect()
                raise
            sent.append((conn, indices, asking))
        for done, (conn, indices, asking) in enumerate(sent):
            try:
                for index, reply in zip(indices, _read(conn, len(indices), wait, asking),
                                        strict=True):  # fmt: skip
                    replies[index] = reply
            except _CONNECTION_ERRORS as error:
                conn.disconnect()
                failed.update(dict.fromkeys(indices, error))
            except BaseException:
                # Replies may still be in flight here and on every node not read yet: never
                # let a later call read them as its own.
                for unread, _, _ in sent[done:]:
                    unread.disconnect()
                raise
        return failed


def _ask_target(
    index: int, replies: list[Any], asking: dict[int, tuple[str, int]]
) -> tuple[str, int] | None:
    """Where call ``index`` goes next: the node an ``ASK`` named, still the node it was asked
    to (say, after that node lacked the script), or None (the slot map's owner)."""
    reply = replies[index]
    if isinstance(reply, redis.exceptions.MovedError):
        return None
    if isinstance(reply, redis.exceptions.AskError):
        return reply.node_addr
    return asking.get(index) if isinstance(reply, redis.exceptions.ResponseError) else None


def _send(
    conn: Any,
    script: Script,
    calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
    wait: tuple[str, int, int] | None,
    *,
    asking: bool,
) -> None:
    sha = script.sha  # type: ignore[attr-defined]  # missing from the stubs
    # hiredis packs directly: redis-py's packer type-checks every argument first.
    packed = []
    for keys, args in calls:
        if asking:
            packed.append(hiredis.pack_command(("ASKING",)))
        packed.append(hiredis.pack_command(("EVALSHA", sha, len(keys), *keys, *args)))
    if wait is not None:
        packed.append(hiredis.pack_command(wait))  # type: ignore[arg-type]  # stub too narrow
    conn.send_packed_command(packed)


def _read(conn: Any, count: int, wait: tuple[str, int, int] | None, asking: bool) -> list[Any]:
    replies: list[Any] = []
    for _ in range(count):
        if asking:
            conn.read_response()  # +OK of ASKING
        try:
            replies.append(conn.read_response())
        except redis.exceptions.ResponseError as error:
            replies.append(error)
    if wait is not None:
        try:
            acknowledged = conn.read_response()
        except redis.exceptions.ResponseError as error:  # e.g. the node became a replica
            acknowledged = error
        if not isinstance(acknowledged, int) or acknowledged < wait[1]:
            unconfirmed = ReplicationUnconfirmed(
                f"{acknowledged} of {wait[1]} replicas acknowledged the write in {wait[2]} ms"
            )
            replies = [unconfirmed if not isinstance(r, Exception) else r for r in replies]
    return replies


def _raise_unconfirmed(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, ReplicationUnconfirmed):
            raise reply
