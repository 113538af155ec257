"""``abtest monitor`` (one pass and its errors), the monitor beside ``abtest serve``, and the
monitor's health in ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, datetime

import pytest

from abtest.cli import main
from abtest.rollout_store import Rollouts
from abtest.store import Store
from service.monitor.clock import SettableClock
from service.monitor.runner import Monitor, MonitorSettings
from tests.monitor_traffic import Traffic, rollout_experiment
from tests.test_serve_e2e import Server

KEY = "ranker-v3"


def started(store: Store) -> None:
    store.create_experiment(rollout_experiment(), key_id="rm")
    store.start_experiment(KEY, key_id="rm")


def test_monitor_once_checks_and_says_so(store, redis_url, capsys, tmp_path):
    """One cycle: each due experiment checked once; a second pass finds nothing due."""
    started(store)
    argv = ["monitor", "--once", "--redis-url", redis_url, "--export-dir", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("checked 1 experiment(s) in ")
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checked"] == [] and report["errors"] == []
    assert len(Rollouts(store).checks(KEY)) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "0"], "--interval must be > 0"),
        (["--poll", "-1"], "--poll must be > 0"),
        (["--observation-hours", "0"], "--observation-hours must be > 0"),
        (["--clock", "sundial"], "invalid choice"),
    ],
)
def test_monitor_bad_options_are_one_line_and_exit_2(argv, message, capsys, redis_url):
    """Bad input: exit code 2 and one line naming the option."""
    assert main(["monitor", "--once", "--redis-url", redis_url, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_health_and_metrics_show_the_monitor_and_each_rollout(api, redis_client):
    """/healthz says whether a monitor runs; /metrics has its last success and each
    rollout's step and share."""
    store = api.store
    started(store)
    health = api.call("GET", "/healthz").get_json()
    assert health["status"] == "ok" and health["monitor"]["status"] == "stale"
    assert health["monitor"]["instances"] == []
    clock = SettableClock(datetime.now(UTC))  # the service's clock is the system's
    monitor = Monitor(redis_client, clock, MonitorSettings(instance="m-test"))
    Traffic(monitor.store, clock).hour(40)
    monitor.run_once()
    health = api.call("GET", "/healthz").get_json()["monitor"]
    assert health["status"] == "ok" and [i["id"] for i in health["instances"]] == ["m-test"]
    text = api.client.get("/metrics").get_data(as_text=True)
    assert 'abtest_rollout_step{experiment="ranker-v3"} 1' in text
    assert 'abtest_rollout_share{experiment="ranker-v3",variant="v2"} 0.1' in text
    assert "abtest_monitor_up 1" in text
    assert 'abtest_monitor_last_success_timestamp_seconds{monitor="m-test"}' in text
    assert 'abtest_rollout_last_check_timestamp_seconds{experiment="ranker-v3"}' in text


def _monitor_pids(server: Server, deadline: float = 30.0) -> list[int]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        monitor = server.request("GET", "/healthz")[1]["monitor"]
        if monitor["status"] == "ok":
            return [int(i["pid"]) for i in monitor["instances"] if not i["stale"]]
        time.sleep(0.2)
    raise AssertionError("no monitor became healthy")


@pytest.mark.slow
def test_serve_runs_a_monitor_and_restarts_it_when_it_dies(tmp_path):
    """The embedded setup starts a monitor (healthz: ok); killed, it comes back; with
    --no-monitor there is none."""
    server = Server(tmp_path / "data")
    try:
        assert any(line.startswith("abtest: monitor running beside") for line in server.lines)
        first = _monitor_pids(server)
        instances = {i["id"] for i in server.request("GET", "/healthz")[1]["monitor"]["instances"]}
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            again = _monitor_pids(server)
            if again and again != first:
                break
            time.sleep(0.3)
        assert again and again != first
    finally:
        assert server.stop() == 0
    quiet = Server(tmp_path / "data", "--no-monitor")
    try:
        assert not any(line.startswith("abtest: monitor") for line in quiet.lines)
        time.sleep(2)
        health = quiet.request("GET", "/healthz")[1]["monitor"]
        assert {i["id"] for i in health["instances"]} <= instances  # the killed one's, if any
    finally:
        assert quiet.stop() == 0
