"""One way to open Redis from a URL: a single server, or Redis Cluster through redis-py's
cluster client.

``redis://``, ``rediss://`` and ``unix://`` URLs are redis-py's own.  ``redis+cluster://``
(``rediss+cluster://`` for TLS) opens a `redis.cluster.RedisCluster`; its host part may
list several startup nodes, ``redis+cluster://:PASSWORD@host1:7000,host2:7000``, so the
client can start while one node is down.  redis-py then discovers every node and keeps the
slot map current.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

if TYPE_CHECKING:
    from redis.commands.core import Script

    RedisClient: TypeAlias = redis.Redis[str] | RedisCluster[str]
    AnyRedis: TypeAlias = redis.Redis[Any] | RedisCluster[Any]

CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SCHEMES: Final = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)
MAX_CONNECTIONS: Final = 10_000  # per pool (per node on a cluster)


def is_cluster_url(url: str) -> bool:
    """True for a ``redis+cluster://`` or ``rediss+cluster://`` URL."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def connect(url: str, **options: Any) -> Any:
    """A client for ``url`` (``redis.Redis`` or ``RedisCluster``); ``options`` go to redis-py.

    Typed ``Any`` because the two clients share no declared base; callers annotate the
    result as `RedisClient`.
    """
    # redis-py 8 caps a pool at 100 connections (before: unlimited); a service holds one
    # per thread and node (`abtest.thread_connections`), and the cap is no place to find out.
    options.setdefault("max_connections", MAX_CONNECTIONS)
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        return redis.Redis.from_url(url, **options)
    hosts = parts.netloc.rpartition("@")[2]
    nodes = []
    for host_port in hosts.split(","):
        host, _, port = host_port.rpartition(":")
        nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
    if parts.password is not None:
        options.setdefault("password", unquote(parts.password))
    if parts.username:
        options.setdefault("username", unquote(parts.username))
    if parts.scheme == "rediss+cluster":
        options.setdefault("ssl", True)
    return RedisCluster(startup_nodes=nodes, **options)


def register_script(client: AnyRedis, text: str) -> Script:
    """``client.register_script(text)`` for either kind of client."""
    # types-redis's RedisCluster stub lacks register_script; redis-py has it (ScriptCommands).
    script: Script = client.register_script(text)  # type: ignore[union-attr]
    return script
