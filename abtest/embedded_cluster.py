"""A throwaway Redis Cluster on loopback, from the same ``redis-server`` binary as
`abtest.embedded`: for the test suite and the capacity benchmark.

One machine is no cluster, so this is never the way to run abtest in production; it is
the real cluster protocol (slots, redirections, replication, failover) for the code to be
tested against.  The cluster is built as ``redis-cli --cluster create`` builds one, with
plain commands (``CLUSTER ADDSLOTS``, ``MEET``, ``REPLICATE``), which also allows a single
master.  ``cluster-require-full-coverage no``: while one shard fails over, the others keep
answering.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import redis

from abtest.embedded import free_port, spawn
from abtest.errors import StoreUnavailable

SLOTS: Final = 16_384
_BUS_OFFSET: Final = 10_000  # Redis listens for cluster gossip on port + 10000
_TIMEOUT: Final = 30.0


@dataclass
class _Node:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None


def _wait(condition: Callable[[], bool], what: str, timeout: float = _TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"local cluster: {what} did not happen in {timeout:.0f} s")
        time.sleep(0.05)


class LocalCluster:
    """``masters`` primaries with ``replicas`` replicas each, on free loopback ports."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        appendonly: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.appendonly = appendonly
        self.password = secrets.token_urlsafe(24)
        self.nodes: list[_Node] = []

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL (password, every node as a startup node)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"redis+cluster://:{self.password}@{hosts}"

    def client(self, port: int) -> redis.Redis[str]:
        """A plain client of one node (for cluster commands and inspection)."""
        return redis.Redis(port=port, password=self.password, decode_responses=True,
                           socket_timeout=2)  # fmt: skip

    def start(self) -> LocalCluster:
        """Start every node, build the cluster and wait until it serves every slot."""
        total = self.masters * (1 + self.replicas)
        try:
            for index in range(total):
                node = _Node(self._free_port(), self.data_dir / f"node-{index}")
                self.nodes.append(node)
                self._spawn(node)
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _free_port(self) -> int:
        """A free port whose cluster bus port (port + 10000) is valid and free too."""
        taken = {node.port for node in self.nodes}
        while True:
            port = free_port()
            if port + _BUS_OFFSET < 65_536 and port not in taken:
                with contextlib.suppress(OSError), socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + _BUS_OFFSET))
                    return port

    def _spawn(self, node: _Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        config = node.directory / "redis.conf"
        config.touch(mode=0o600)
        config.write_text(
            "\n".join([
                "bind 127.0.0.1", f"port {node.port}", "protected-mode yes",
                f"requirepass {self.password}", f"masterauth {self.password}",
                f'dir "{node.directory.resolve()}"', "cluster-enabled yes",
                "cluster-config-file nodes.conf",
                f"cluster-node-timeout {self.node_timeout_ms}",
                "cluster-require-full-coverage no",
                f"appendonly {'yes' if self.appendonly else 'no'}", "appendfsync everysec",
                'save ""', "daemonize no", 'logfile "redis.log"', "",
            ]),
            encoding="utf-8",
        )  # fmt: skip
        node.process = spawn(config)
        _wait(lambda: bool(self.client(node.port).ping()), f"node {node.port} start")

    def _build(self) -> None:
        clients = [self.client(node.port) for node in self.nodes]
        ids = [c.execute_command("CLUSTER", "MYID") for c in clients]
        for epoch, c in enumerate(clients, start=1):
            c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        share = SLOTS // self.masters
        for m in range(self.masters):
            last = SLOTS if m == self.masters - 1 else (m + 1) * share
            clients[m].execute_command("CLUSTER", "ADDSLOTS", *range(m * share, last))
        for node in self.nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        total = len(self.nodes)
        _wait(lambda: all(len(_node_lines(c)) == total for c in clients), "every node meeting")
        for r in range(self.masters, total):
            replica, master = clients[r], ids[(r - self.masters) % self.masters]

            def replicate(replica: redis.Redis[str] = replica, master: str = master) -> bool:
                return bool(replica.execute_command("CLUSTER", "REPLICATE", master))

            _wait(replicate, "replica set-up")  # the master must be known to the replica first
        self.wait_until_healthy()

    def wait_until_healthy(self, timeout: float = _TIMEOUT) -> None:
        """Every live node says ``cluster_state:ok`` and every live replica is in sync."""

        def healthy() -> bool:
            for node in self.live_nodes():
                client = self.client(node.port)
                if "cluster_state:ok" not in str(client.execute_command("CLUSTER", "INFO")):
                    return False
                info = client.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            masters = [line for line in _node_lines(self.client(self.live_nodes()[0].port))
                       if "master" in line[2] and "fail" not in line[2]]  # fmt: skip
            return len(masters) == self.masters

        _wait(healthy, "cluster_state:ok on every node", timeout)

    def live_nodes(self) -> list[_Node]:
        """Nodes whose process runs."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def master_ports(self) -> list[int]:
        """Ports of the live primaries, as the cluster sees them now."""
        lines = _node_lines(self.client(self.live_nodes()[0].port))
        return sorted(int(line[1].split(":")[1].split("@")[0]) for line in lines
                      if "master" in line[2] and "fail" not in line[2])  # fmt: skip

    def kill(self, port: int) -> None:
        """``kill -9`` the node on ``port`` (no clean shutdown, no final replication)."""
        for node in self.nodes:
            if node.port == port and node.process is not None:
                node.process.send_signal(signal.SIGKILL)
                node.process.wait()
                return
        raise ValueError(f"no node on port {port}")

    def restart(self, port: int) -> None:
        """Start the killed node on ``port`` again: it rejoins (as a replica, once replaced)."""
        for node in self.nodes:
            if node.port == port:
                self._spawn(node)
                return
        raise ValueError(f"no node on port {port}")

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on ``port``."""
        return str(self.client(port).execute_command("CLUSTER", "MYID"))

    def memory(self) -> int:
        """``used_memory`` summed over the live primaries."""
        return sum(int(self.client(p).info("memory")["used_memory"]) for p in self.master_ports())

    def stop(self) -> None:
        """Stop every node: SIGTERM to all at once, SIGKILL to any still up after 10 s."""
        running = [n.process for n in self.nodes if n.process is not None]
        for node in self.nodes:
            node.process = None
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _node_lines(client: redis.Redis[Any]) -> list[list[str]]:
    raw = client.execute_command("CLUSTER", "NODES")
    text = raw if isinstance(raw, str) else str(raw)
    return [line.split() for line in text.splitlines() if line.strip()]
