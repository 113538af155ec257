"""The monitor end to end on a real Redis with a controllable clock: it advances a healthy
rollout to the ship, rolls a regression back, keeps its schedule, shares work through
leases, tells the registered checks and hooks, and reports its own health."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from abtest import keys
from abtest.assignment import Reason
from abtest.experiment import Status
from abtest.export import export
from abtest.rollout_store import Rollouts
from abtest.store import Store
from analysis.decision.rollout import Action, RolloutDecision
from service.monitor import checks
from service.monitor.data import MonitorData
from service.monitor.heartbeat import heartbeats, monitor_health
from service.monitor.rollout import check_rollout
from service.monitor.runner import Monitor, MonitorSettings
from tests.monitor_traffic import Traffic, clocked_store, rollout_experiment

KEY = "ranker-v3"


@pytest.fixture
def store(redis_client, clock) -> Store:
    """A store dated by the test's clock."""
    return clocked_store(redis_client, clock)


@pytest.fixture(autouse=True)
def no_plugins(monkeypatch):
    """Each test registers its own checks and hooks."""
    monkeypatch.setattr(checks, "_checks", [])
    monkeypatch.setattr(checks, "_hooks", [])
    monkeypatch.setattr(checks, "PLUGINS", ())


def start(store: Store, key: str = KEY, *, latency_margin: float = 0.05, **plan) -> None:
    store.create_experiment(rollout_experiment(key, latency_margin=latency_margin, **plan),
                            key_id="rm")  # fmt: skip
    store.start_experiment(key, key_id="rm")


def monitor(redis_client, clock, name: str = "m1", **settings) -> Monitor:
    return Monitor(redis_client, clock, MonitorSettings(instance=name, **settings))


def run_hours(traffic: Traffic, mon: Monitor, hours: int, units: int = 200) -> list[dict]:
    """Traffic for an hour, then a monitor cycle, ``hours`` times or until it ends."""
    reports = []
    for _ in range(hours):
        traffic.hour(units)
        reports.append(mon.run_once().to_dict())
        if traffic.store.get_experiment(traffic.experiment).experiment.status is not (
            Status.RUNNING
        ):
            break
    return reports


def test_a_healthy_rollout_advances_step_by_step_and_ships(store, redis_client, clock):
    """No regression: each step waits its minimum, advances with its numbers, and the last
    advance ships the new variant, every check in the timeline."""
    start(store, guardrails=["latency_ms"], min_hours_per_step=3)
    mon = monitor(redis_client, clock)
    run_hours(Traffic(store, clock, seed=1), mon, 24)
    stored = store.get_experiment(KEY)
    assert (stored.experiment.status, stored.experiment.winner) == (Status.SHIPPED, "v2")
    history = store.history(KEY)
    assert [h["action"] for h in history] == ["create", "start", "rollout_advance", "ship"]
    advance = history[2]
    assert advance["key_id"] == "monitor:m1"
    assert {c["field"]: c["new"] for c in advance["diff"]} == {"traffic": 1.0}
    numbers = advance["decision"]
    assert numbers["step"] == 0 and numbers["step_hours"] >= 3
    assert numbers["guardrails"][0]["metric"] == "latency_ms"
    assert numbers["guardrails"][0]["p_harm"] > 0.05
    timeline = Rollouts(store).checks(KEY)
    assert [c["action"] for c in timeline].count("advance") == 2
    assert timeline[-1]["ship"] and timeline[-1]["acted"]
    assert all(c["action"] == "hold" for c in timeline[:2])  # the first step's minimum 3 h
    assert store.assign(KEY, "someone-new")[0].reason is Reason.SHIPPED


def test_a_regression_is_rolled_back_and_the_hooks_hear_of_it(store, redis_client, clock):
    """Latency +30% on the new variant: rolled back within hours, everyone is served
    control, the decision hooks hear of every action and every check gets the data."""
    start(store)
    seen: list[tuple[str, MonitorData]] = []
    decided: list[RolloutDecision] = []

    def check(_store, _redis, experiment, data, _clock) -> None:
        seen.append((experiment.key, data))

    def hook(_store, _redis, _experiment, decision, _clock) -> None:
        decided.append(decision)

    checks.register(check)
    checks.register_decision_hook(hook)
    mon = monitor(redis_client, clock)
    reports = run_hours(Traffic(store, clock, latency={"v1": 200.0, "v2": 260.0}), mon, 10)
    stored = store.get_experiment(KEY)
    assert stored.experiment.status is Status.ROLLED_BACK
    assert reports[-1]["actions"] == {KEY: "roll_back"}
    entry = store.history(KEY)[-1]
    assert entry["action"] == "rollback" and entry["key_id"] == "monitor:m1"
    assert entry["reason"].startswith("guarded rollout: guardrail latency_ms is higher")
    assert entry["decision"]["guardrails"][0]["p_harm_adjusted"] <= 0.05
    assert decided[-1].action is Action.ROLL_BACK
    assert len(decided) == len(store.history(KEY)) - 2  # one per action after create, start
    assert len(seen) == len(reports) and all(k == KEY for k, _ in seen)
    assert seen[-1][1].aggregates is not None and seen[-1][1].complete
    answer, _ = store.assign(KEY, f"{KEY}-user-3")
    assert (answer.variant, answer.reason) == ("v1", Reason.ROLLED_BACK)


def test_a_check_waits_for_its_interval(store, redis_client, clock):
    """Two cycles at one time check once; an hour later the rollout is due again."""
    start(store)
    mon = monitor(redis_client, clock)
    Traffic(store, clock).hour(50)
    assert mon.run_once().checked == (KEY,)
    assert mon.run_once().checked == ()
    clock.advance(timedelta(minutes=59))
    assert mon.run_once().checked == ()
    clock.advance(timedelta(minutes=1))
    assert mon.run_once().checked == (KEY,)
    assert len(Rollouts(store).checks(KEY)) == 2


def test_one_of_two_monitors_acts_and_a_dead_ones_experiments_pass_on(store, redis_client, clock):
    """Monitor A holds the lease, B skips; A dies without a word; once its lease expires B
    checks, and A's fencing value can no longer write."""
    start(store)
    a = monitor(redis_client, clock, "a", lease_seconds=0.5)
    b = monitor(redis_client, clock, "b", lease_seconds=0.5)
    Traffic(store, clock).hour(50)
    assert a.run_once().checked == (KEY,)
    clock.advance(timedelta(hours=1))
    assert b.run_once().held_elsewhere == (KEY,)
    fence_a = redis_client.get(keys.monitor_lease(KEY))
    time.sleep(0.6)  # A is gone: its lease runs out
    assert b.run_once().checked == (KEY,)
    assert redis_client.get(keys.monitor_lease(KEY)).startswith("b:")
    data = b.reader.read(
        [store.get_experiment(KEY)], counts={KEY: store.exposure_counts(KEY)}, now=clock.now()
    )[KEY]
    assert check_rollout(Rollouts(store), data, clock, fence=fence_a) is None
    assert [c["monitor"] for c in (r["numbers"] for r in Rollouts(store).checks(KEY))] == [
        "monitor:a", "monitor:b"]  # fmt: skip


def test_a_paused_rollout_holds_until_resumed(store, redis_client, clock):
    """A person's pause holds the advance (and says who); resume lets it go on."""
    start(store, guardrails=["latency_ms"])
    rollouts = Rollouts(store)
    mon = monitor(redis_client, clock)
    traffic = Traffic(store, clock, seed=2)
    run_hours(traffic, mon, 1)
    rollouts.pause(KEY, key_id="k-oncall", reason="incident elsewhere")
    run_hours(traffic, mon, 4)
    assert store.get_experiment(KEY).experiment.traffic == pytest.approx(0.2)
    last = rollouts.checks(KEY)[-1]
    assert last["action"] == "hold"
    assert "paused by k-oncall: no advance until resumed" in last["reasons"]
    rollouts.resume(KEY, key_id="k-oncall")
    run_hours(traffic, mon, 1)
    assert store.get_experiment(KEY).experiment.traffic == pytest.approx(1.0)


def test_a_failing_check_is_reported_and_the_rollout_still_decides(store, redis_client, clock):
    """A registered check that raises is an error line; the rollout check still ran."""
    start(store)

    def broken(*_args) -> None:
        raise ValueError("boom")

    checks.register(broken)
    report = monitor(redis_client, clock).run_once()
    assert report.errors == (f"{KEY}: broken: boom",)
    assert len(Rollouts(store).checks(KEY)) == 1
    beat = heartbeats(redis_client)["m1"]
    assert beat["last_error"] == f"{KEY}: broken: boom" and beat["last_success"] is None


def test_data_the_monitor_cannot_see_hold_the_rollout(store, redis_client, clock, tmp_path):
    """An export into a directory the monitor does not read: incomplete, so no action."""
    start(store, guardrails=["latency_ms"], min_hours_per_step=0, min_units_per_step=0)
    Traffic(store, clock, latency={"v1": 200.0, "v2": 300.0}).hour(200)
    export(redis_client, out_dir=tmp_path / "elsewhere")
    monitor(redis_client, clock, export_dir=tmp_path / "mine").run_once()
    last = Rollouts(store).checks(KEY)[-1]
    assert last["action"] == "hold"
    assert last["reasons"][0].startswith("incomplete data, so no action")
    assert store.get_experiment(KEY).experiment.status is Status.RUNNING


def test_the_monitors_health_shows_in_its_heartbeat(store, redis_client, clock):
    """A cycle leaves a heartbeat; a rollout not checked for three intervals is overdue."""
    start(store)
    rollouts = Rollouts(store)
    experiments = store.list_experiments()
    assert monitor_health(redis_client, rollouts, experiments, clock.now())["status"] == "stale"
    mon = monitor(redis_client, clock)
    mon.run_once()
    health = monitor_health(redis_client, rollouts, experiments, clock.now())
    assert health["status"] == "ok"
    assert health["instances"][0]["id"] == "m1" and not health["instances"][0]["stale"]
    assert health["rollouts"][0] | {"last_check_at": None} == {
        "experiment": KEY, "step": 1, "share": 0.1, "paused": False, "last_check_at": None,
        "overdue": False}  # fmt: skip
    clock.advance(timedelta(hours=3, minutes=1))
    assert monitor_health(redis_client, rollouts, experiments, clock.now())["status"] == "stale"
    mon.close()
    assert "m1" not in heartbeats(redis_client)


@pytest.mark.slow
def test_rollouts_end_to_end_aa_and_regressions(store, redis_client, clock):
    """Ten A/A rollouts and three with latency +20%, side by side through Redis and one
    monitor: at most one A/A rollout rolls back; every regression is rolled back."""
    aa = [f"aa-{i}" for i in range(10)]
    bad = [f"bad-{i}" for i in range(3)]
    for key in aa + bad:
        start(store, key, guardrails=["latency_ms"], min_hours_per_step=2, latency_margin=0.1)
    traffic = [Traffic(store, clock, experiment=k, seed=i) for i, k in enumerate(aa)]
    traffic += [Traffic(store, clock, experiment=k, seed=100 + i,
                        latency={"v1": 200.0, "v2": 240.0}) for i, k in enumerate(bad)]  # fmt: skip
    mon = monitor(redis_client, clock)
    for _ in range(12):
        begin = clock.now()
        for t in traffic:
            clock.set(begin)
            t.hour(100)
        mon.run_once()
    status = {k: store.get_experiment(k).experiment.status for k in aa + bad}
    assert sum(status[k] is Status.ROLLED_BACK for k in aa) <= 1
    assert sum(status[k] is Status.SHIPPED for k in aa) >= 8
    assert all(status[k] is Status.ROLLED_BACK for k in bad)


def test_an_action_on_a_version_a_person_changed_is_not_taken(store, redis_client, clock):
    """The check read version 2; a person paused meanwhile (version 3): its rollback is
    refused, recorded as not taken, and the next check decides again."""
    start(store)
    mon = monitor(redis_client, clock)
    Traffic(store, clock, latency={"v1": 200.0, "v2": 320.0}).hour(1000)
    clock.advance(timedelta(hours=1))  # every unit observed for its window
    fence = Rollouts(store).acquire_lease(KEY, "m1", 60_000)
    data = mon.reader.read(
        [store.get_experiment(KEY)], counts={KEY: store.exposure_counts(KEY)}, now=clock.now()
    )[KEY]
    Rollouts(store).pause(KEY, key_id="k-person")
    result = check_rollout(Rollouts(store), data, clock, fence=fence)
    assert result is not None
    assert result.decision.action is Action.ROLL_BACK and not result.acted
    assert "changed since the check read it (version 2, now 3)" in result.error
    record = Rollouts(store).checks(KEY)[-1]
    assert (record["acted"], record["read_version"], record["version"]) == (False, 2, 2)
    clock.advance(timedelta(hours=1))
    assert mon.run_once().actions == {KEY: "roll_back"}  # paused, and still rolled back
