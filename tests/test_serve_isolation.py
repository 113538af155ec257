"""`abtest serve` keeps its secrets and files to itself: real processes, real files.

A password given with --redis-url reaches no process's argv; the data dir is 0700 and every
file in it (append-only file, logs, access log, exports) 0600; two instances side by side
share no gunicorn control socket; the appendfsync setting reaches the embedded redis-server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from abtest.cli import main
from abtest.embedded import EmbeddedRedis, free_port, running_url
from abtest.store import Store
from tests.conftest import simple_config

pytestmark = pytest.mark.slow


class Serve:
    """`abtest serve` started as a user starts it, in its own working directory."""

    def __init__(self, cwd: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd),
                "XDG_RUNTIME_DIR": str(cwd / "run"),
                "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # fmt: skip
        (cwd / "run").mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "abtest", "serve", "--port", str(self.port), *options],
            cwd=cwd, env={**base, **(env or {})}, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"abtest serve did not start: {self.stop_and_read()}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        """True when /healthz answers 200."""
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop_and_read(self) -> str:
        """Stop (SIGTERM) and return what it wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        return err


@pytest.fixture
def serving() -> Iterator[list[Serve]]:
    """Servers a test starts; each is stopped at its end."""
    started: list[Serve] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.stop_and_read()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_a_password_on_the_command_line_reaches_no_argv(tmp_path, serving):
    """serve --redis-url redis://:secret@... : no process of the service shows the password,
    the service uses that Redis, and the user is told to use ABTEST_REDIS_URL."""
    with EmbeddedRedis(tmp_path / "external") as external:
        server = Serve(tmp_path, "--redis-url", external.url)
        serving.append(server)
        tree = _process_tree(server.process.pid)
        assert len(tree) >= 3  # the master and its two workers
        for pid in tree:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert external.password.encode() not in cmdline, cmdline
        client = redis.Redis.from_url(external.url, decode_responses=True)
        try:
            assert client.keys("*")  # the service wrote its first admin key there
        finally:
            client.close()
        err = server.stop_and_read()
    assert "ABTEST_REDIS_URL" in err and "warning" in err
    assert external.password not in err


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_default_appendfsync_is_everysec_and_a_bad_one_is_refused(tmp_path):
    """everysec unless asked; an unknown policy stops serve in one line, before Redis starts."""
    with EmbeddedRedis(tmp_path / "d") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        client.close()
    data = tmp_path / "e"
    refused = subprocess.run(
        [sys.executable, "-m", "abtest", "serve", "--port", str(free_port()),
         "--data-dir", str(data)],
        env={**os.environ, "ABTEST_APPENDFSYNC": "sometimes"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    err = refused.stderr.strip()
    assert refused.returncode == 2
    assert "\n" not in err and "ABTEST_APPENDFSYNC" in err and "sometimes" in err
    assert not data.exists()


def test_two_instances_side_by_side_private_files_and_no_control_socket(tmp_path, serving):
    """Two `abtest serve` of one user, with the usual umask 022, side by side.

    Neither makes gunicorn's per-user control socket (the second would take it over and
    the first one's exit delete it), and stopping one leaves the other serving.  The first
    runs with ABTEST_APPENDFSYNC=always, which its redis-server reports; its data dir is
    0700, and the append-only file, logs, access log and exports are 0600.
    """
    old_umask = os.umask(0o022)
    try:
        data, access_log = tmp_path / "data", tmp_path / "logs" / "access.log"
        access_log.parent.mkdir()
        first = Serve(tmp_path, "--data-dir", str(data), "--access-log", str(access_log),
                      env={"ABTEST_APPENDFSYNC": "always"})  # fmt: skip
        serving.append(first)
        second = Serve(tmp_path, "--data-dir", str(tmp_path / "b"))
        serving.append(second)
        assert first.healthy() and second.healthy()
        url = running_url(data)
        assert url is not None
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
            store = Store(client)
            store.create_experiment(simple_config(), key_id="test")
            store.start_experiment("exp", key_id="test")
            store.assign("exp", "u1")  # one exposure to export
        finally:
            client.close()
        assert main(["export", "--out", str(data / "export"), "--data-dir", str(data)]) == 0
    finally:
        os.umask(old_umask)
    sockets = [p for p in tmp_path.rglob("*") if p.is_socket() or p.name.endswith(".ctl")]
    assert sockets == []
    first.stop_and_read()
    assert first.process.returncode == 0
    assert second.healthy()

    assert _mode(data) == 0o700
    assert access_log.read_text().count("GET /healthz") >= 2 and _mode(access_log) == 0o600
    files = [p for p in data.rglob("*") if p.is_file()]
    assert {"appendonly.aof", "redis.log", "redis.conf"} <= {p.name for p in files}
    assert any(p.suffix == ".parquet" for p in files)
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    folders = [p for p in data.rglob("*") if p.is_dir()]
    assert {p.name: _mode(p) for p in folders} == {p.name: 0o700 for p in folders}
