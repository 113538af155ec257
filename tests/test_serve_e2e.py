"""`abtest serve` as a real process over HTTP, and the `abtest keys` commands."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from abtest.cli import main
from abtest.cli.serve_commands import load_worker_app, memory_dir
from abtest.embedded import EmbeddedRedis, free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ranker-v2.json"
CLI = [sys.executable, "-c", "from abtest.cli import run; run()"]


class Server:
    """A running `abtest serve` child process."""

    def __init__(self, data_dir: Path, *options: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--port",
                str(self.port),
                "--workers",
                "2",
                "--data-dir",
                str(data_dir),
                *options,
            ],
            cwd=data_dir.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            # no ABTEST_REDIS_URL
            env={"PATH": "/usr/bin:/bin", "HOME": str(data_dir.parent), **(env or {})},
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("abtest: serving on"):
                break
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.1)

    @property
    def admin_key(self) -> str | None:
        """The key printed on the `admin key:` line, if any."""
        found = [line.split(": ", 1)[1] for line in self.lines if line.startswith("admin key: ")]
        return found[0] if found else None

    def request(
        self, method: str, path: str, body: Any = None, key: str | None = None
    ) -> tuple[int, Any]:
        """One HTTP request; returns (status, parsed JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw, kind = (
                    response.status,
                    response.read(),
                    response.headers.get_content_type(),
                )
        except urllib.error.HTTPError as exc:
            status, raw, kind = exc.code, exc.read(), exc.headers.get_content_type()
        return status, json.loads(raw) if kind == "application/json" else raw.decode()

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _open_files(pids: list[int]) -> list[str]:
    """What the file descriptors of ``pids`` point to."""
    targets = []
    for pid in pids:
        try:
            targets.extend(str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue  # the process or one of its files went away while we looked
    return targets


@pytest.mark.slow
def test_serve_end_to_end_and_restart(tmp_path):
    """A real server: first start prints an admin key; data and keys survive a restart."""
    data_dir = tmp_path / "data"
    server = Server(data_dir)
    try:
        admin = server.admin_key
        assert admin is not None and admin.startswith("abt_")
        assert server.request("GET", "/v1/experiments")[0] == 401
        config = json.loads(EXAMPLE.read_text())
        assert server.request("POST", "/v1/experiments", config, admin)[0] == 201
        assert server.request("POST", "/v1/experiments/ranker-v2/start", None, admin)[0] == 200
        created = subprocess.run(
            [*CLI, "keys", "create", "--role", "sdk", "--data-dir", str(data_dir)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        sdk = created.stdout.strip()
        assert sdk.startswith("abt_") and "\n" not in sdk
        attributes = {"country": "DE", "app_version": 500}
        answers = {}
        for i in range(40):
            status, body = server.request(
                "POST",
                "/v1/assign",
                {"experiment": "ranker-v2", "unit_id": f"u{i}", "attributes": attributes},
                sdk,
            )
            assert status == 200
            answers[f"u{i}"] = body
        assert {a["reason"] for a in answers.values()} >= {"assigned"}
        events = {"events": [{"event_id": "e1", "unit_id": "u1", "metric": "purchase"}]}
        assert server.request("POST", "/v1/events", events, sdk) == (
            202,
            {"accepted": 1, "duplicates": 0},
        )
        assert server.request("POST", "/v1/assign", {"experiment": "ranker-v2"}, sdk)[0] == 400
        assert server.request("POST", "/v1/experiments/ranker-v2/stop", None, sdk)[0] == 403
        metrics = server.request("GET", "/metrics")[1]
        assigned = sum(a["reason"] == "assigned" for a in answers.values())
        assert (
            'abtest_http_requests_total{endpoint="/v1/assign",method="POST",status="200"} 40.0'
            in metrics
        )
        exposures = server.request("GET", "/v1/experiments/ranker-v2/exposures", None, admin)[1]
        assert exposures["total"] == assigned
        if memory_dir() == "/dev/shm" and Path("/proc").is_dir():
            # The files every worker writes per request live in memory: gunicorn's heartbeat
            # and prometheus_client's metric files.
            files = _open_files(_children(server.process.pid))
            assert sum(f.startswith("/dev/shm/wgunicorn-") for f in files) == 2
            assert any(f.startswith("/dev/shm/abtest-metrics-") for f in files)
    finally:
        assert server.stop() == 0
    assert not (data_dir / "redis.url").exists()

    access_log = tmp_path / "access.log"
    again = Server(data_dir, "--access-log", str(access_log))
    try:
        assert again.admin_key is None  # printed on the first start only
        status, stored = again.request("GET", "/v1/experiments/ranker-v2", None, admin)
        assert (status, stored["status"]) == (200, "running")
        for unit in ("u1", "u2", "u3"):
            body = {"experiment": "ranker-v2", "unit_id": unit, "attributes": attributes}
            assert again.request("POST", "/v1/assign", body, sdk) == (200, answers[unit])
        assert again.request("POST", "/v1/events", events, sdk)[1] == {
            "accepted": 0,
            "duplicates": 1,
        }
    finally:
        assert again.stop() == 0
    # One line per request with status and time in µs; the keys are in no line.
    lines = access_log.read_text().splitlines()
    assigns = [line for line in lines if '"POST /v1/assign HTTP/1.1" 200 ' in line]
    assert len(assigns) == 3
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in assigns)
    assert not any(admin in line or sdk in line for line in lines)


def test_keys_commands(tmp_path, capsys):
    """keys create prints only the key; list shows ids, not keys; revoke marks it."""
    data_dir = str(tmp_path / "d")
    EmbeddedRedis(data_dir).start().stop()  # a store, as the first `abtest serve` leaves it
    assert main(["keys", "create", "--role", "sdk", "--name", "app", "--data-dir", data_dir]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("abt_")
    assert main(["keys", "list", "--json", "--data-dir", data_dir]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert (record["role"], record["name"], record["revoked_at"]) == ("sdk", "app", None)
    assert token not in json.dumps(record)
    assert main(["keys", "revoke", record["id"], "--data-dir", data_dir]) == 0
    assert f"revoked {record['id']}" in capsys.readouterr().out
    assert main(["keys", "list", "--data-dir", data_dir]) == 0
    assert record["id"] in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["keys", "create", "--role", "root"],
        ["keys", "revoke", "k-missing"],
        ["serve", "--port", "0"],
        ["serve", "--workers", "0"],
        ["serve", "--access-log", "no/such/dir/access.log"],
        ["keys", "list", "--redis-url", "redis://127.0.0.1:1/0"],
    ],
)
def test_bad_cli_input_exits_2(tmp_path, capsys, argv):
    """Bad arguments, unknown ids and an unreachable Redis are one-line errors, exit code 2."""
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("abtest: error: ")
    assert "\n" not in err


def test_serve_refuses_a_bad_setting_before_any_worker_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad ``ABTEST_*`` value: one line naming it, exit code 2, the embedded Redis stopped."""
    monkeypatch.setenv("ABTEST_KEY_CACHE_SECONDS", "soon")
    data_dir = tmp_path / "data"
    assert main(["serve", "--port", str(free_port()), "--data-dir", str(data_dir)]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert "\n" not in error and "KEY_CACHE_SECONDS" in error and "soon" in error
    assert "admin key" not in captured.out  # refused before a first key was made
    assert not (data_dir / "redis.url").exists()


def _wrapped(app: Any) -> tuple[str, Any]:
    return ("wrapped", app)


def test_a_worker_freezes_its_loaded_heap_and_applies_the_wrapper(redis_url):
    """The app a worker loads is frozen out of the collector's walks, then wrapped."""
    gc.unfreeze()
    try:
        served = load_worker_app({"REDIS_URL": redis_url}, wrap=f"{__name__}:_wrapped")
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # leave the test process's collector as it was
    assert served[0] == "wrapped" and "abtest" in served[1].extensions


def test_memory_dir_falls_back_to_the_system_default(monkeypatch):
    """Where /dev/shm cannot be written, the files go to the system's temporary directory."""
    monkeypatch.setattr(os, "access", lambda *_args: False)
    assert memory_dir() is None


@pytest.mark.slow
def test_serve_and_export_on_a_redis_cluster(redis_cluster, tmp_path):
    """``abtest serve --redis-url redis+cluster://...`` with partitioned events and units, then
    ``abtest export`` from the cluster: every exposure and event arrives once."""
    from abtest.export import read_exposures, read_outcomes
    from abtest.redis_client import connect

    client = connect(redis_cluster.url)
    client.flushall()
    partitions = {"ABTEST_EVENT_PARTITIONS": "4", "ABTEST_UNIT_PARTITIONS": "4"}
    server = Server(tmp_path / "data", "--redis-url", redis_cluster.url, env=partitions)
    try:
        admin = server.admin_key
        assert admin is not None
        config = json.loads(EXAMPLE.read_text())
        assert server.request("POST", "/v1/experiments", config, admin)[0] == 201
        assert server.request("POST", "/v1/experiments/ranker-v2/start", None, admin)[0] == 200
        units = [
            {
                "experiment": "ranker-v2",
                "unit_id": f"user-{i}",
                "attributes": {"country": "DE", "app_version": 500},
            }
            for i in range(100)
        ]
        status, body = server.request("POST", "/v1/assign/batch", {"requests": units}, admin)
        assert status == 200
        exposed = {a["unit_id"]: a["variant"] for a in body["assignments"] if a["in_experiment"]}
        events = [{"event_id": f"e{i}", "unit_id": f"user-{i}", "metric": "purchase"}
                  for i in range(100)]  # fmt: skip
        assert server.request("POST", "/v1/events", {"events": events}, admin)[1] == {
            "accepted": 100, "duplicates": 0}  # fmt: skip
        assert server.request("POST", "/v1/events", {"events": events}, admin)[1] == {
            "accepted": 0, "duplicates": 100}  # fmt: skip
    finally:
        assert server.stop() == 0
    out = tmp_path / "export"
    assert main(["export", "--redis-url", redis_cluster.url, "--out", str(out)]) == 0
    rows = read_exposures(out).to_pylist()
    assert {r["unit_id"]: r["variant"] for r in rows} == exposed
    assert len(rows) == len(exposed) > 0
    assert sorted(read_outcomes(out).column("event_id").to_pylist()) == sorted(
        e["event_id"] for e in events
    )
    client.flushall()
    client.close()
