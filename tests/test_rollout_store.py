"""A guarded rollout's state and actions in the real Redis store: start at a step, advance,
ship, roll back, pause and resume, each audited; the lease that fences the monitor."""

from __future__ import annotations

import pytest

from abtest import keys
from abtest.assignment import Reason
from abtest.errors import Conflict
from abtest.experiment import Status
from abtest.rollout_store import Rollouts
from abtest.store import LeaseLost, Store
from tests.test_rollout_plan import rollout_config

KEY = "ranker-v3"


class Clock:
    """A settable clock in epoch µs for the store."""

    def __init__(self, now: int = 1_700_000_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def rollouts(redis_client, clock) -> Rollouts:
    store = Store(redis_client, now_us=clock)
    store.create_experiment(rollout_config(steps=[0.01, 0.1, 0.5, 1]), key_id="k1")
    return Rollouts(store)


def actions(store: Store) -> list[str]:
    return [entry["action"] for entry in store.history(KEY)]


def test_start_sets_the_first_step_and_its_state(rollouts, clock):
    """Starting a draft puts the rollout at its first step: traffic = step / share."""
    stored = rollouts.store.start_experiment(KEY, key_id="k1")
    assert stored.experiment.traffic == pytest.approx(0.02)
    state = rollouts.state(KEY)
    assert (state.step, state.step_started_at, state.step_units, state.paused) == (
        0, clock.now, 0, False)  # fmt: skip
    diff = {c["field"]: c["new"] for c in rollouts.store.history(KEY)[-1]["diff"]}
    assert diff == {"status": "running", "traffic": pytest.approx(0.02)}


def test_advance_raises_traffic_without_moving_a_unit_then_ships(rollouts, clock):
    """Each advance is a version with the decision's numbers; the last one ships."""
    store = rollouts.store
    store.start_experiment(KEY, key_id="k1")
    units = [f"u{i}" for i in range(3000)]
    before = {u: store.assign(KEY, u)[0] for u in units}
    clock.now += 3_600_000_000
    stored = rollouts.advance(KEY, expected_version=2, fence=None, numbers={"p": 0.4})
    assert stored.experiment.traffic == pytest.approx(0.2)
    exposed = store.exposure_counts(KEY).variants["v2"]
    after = {u: store.assign(KEY, u)[0] for u in units}
    moved = [u for u in units if before[u].in_experiment and after[u] != before[u]]
    assert moved == []
    assert sum(a.in_experiment for a in after.values()) > sum(
        b.in_experiment for b in before.values())  # fmt: skip
    state = rollouts.state(KEY)
    assert (state.step, state.step_started_at) == (1, clock.now)
    assert state.step_units == exposed > 0
    entry = store.history(KEY)[-1]
    assert (entry["action"], entry["key_id"], entry["decision"]) == (
        "rollout_advance", "monitor", {"p": 0.4})  # fmt: skip
    rollouts.advance(KEY, expected_version=3, fence=None, numbers={})
    shipped = rollouts.advance(KEY, expected_version=4, fence=None, numbers={})
    assert (shipped.experiment.status, shipped.experiment.winner) == (Status.SHIPPED, "v2")
    assert actions(store)[-1] == "ship"
    assert store.assign(KEY, "u1")[0].variant == "v2"
    with pytest.raises(Conflict):
        rollouts.advance(KEY, expected_version=5, fence=None, numbers={})


def test_an_advance_from_a_stale_version_is_refused(rollouts):
    """The decision read version 2; a change since then makes its action a Conflict."""
    rollouts.store.start_experiment(KEY, key_id="k1")
    rollouts.pause(KEY, key_id="k2")
    with pytest.raises(Conflict, match="changed since"):
        rollouts.advance(KEY, expected_version=2, fence=None, numbers={})


def test_rollback_serves_control_to_everyone_without_exposures(rollouts, redis_client):
    """rolled_back: every unit, sticky ones included, gets control; nothing is logged."""
    store = rollouts.store
    store.start_experiment(KEY, key_id="k1")
    treated = next(u for u in (f"u{i}" for i in range(5000))
                   if store.assign(KEY, u)[0].variant == "v2")  # fmt: skip
    stream = redis_client.xlen(keys.exposures_stream(KEY))
    stored = rollouts.rollback(KEY, key_id="k2", reason="p99 doubled", numbers={"p": 0.001})
    assert stored.experiment.status is Status.ROLLED_BACK
    answer, _ = store.assign(KEY, treated)
    assert (answer.variant, answer.reason, answer.payload) == ("v1", Reason.ROLLED_BACK, "old")
    assert store.assign(KEY, "fresh-unit")[0].variant == "v1"
    assert redis_client.xlen(keys.exposures_stream(KEY)) == stream
    entry = store.history(KEY)[-1]
    assert (entry["action"], entry["key_id"], entry["reason"], entry["decision"]) == (
        "rollback", "k2", "p99 doubled", {"p": 0.001})  # fmt: skip
    assert KEY in store.live_experiment_keys()
    with pytest.raises(Conflict):
        rollouts.rollback(KEY, key_id="k2")
    with pytest.raises(Conflict):
        store.start_experiment(KEY, key_id="k2")


def test_pause_and_resume_are_audited_with_who_and_why(rollouts, clock):
    """Each is a version with an empty diff; the state says who paused when and why."""
    rollouts.store.start_experiment(KEY, key_id="k1")
    rollouts.pause(KEY, key_id="k2", reason="waiting for the on-call")
    state = rollouts.state(KEY)
    assert (state.paused, state.paused_by, state.paused_at, state.paused_reason) == (
        True, "k2", clock.now, "waiting for the on-call")  # fmt: skip
    with pytest.raises(Conflict, match="already paused"):
        rollouts.pause(KEY, key_id="k2")
    rollouts.resume(KEY, key_id="k3")
    assert not rollouts.state(KEY).paused
    with pytest.raises(Conflict, match="not paused"):
        rollouts.resume(KEY, key_id="k3")
    history = rollouts.store.history(KEY)
    assert [(h["action"], h["key_id"], h["diff"]) for h in history[-2:]] == [
        ("rollout_pause", "k2", []), ("rollout_resume", "k3", [])]  # fmt: skip
    assert history[-2]["reason"] == "waiting for the on-call"


def test_a_running_rollout_owns_its_traffic_and_plan(rollouts):
    """A new version may not move traffic or change the plan while the rollout runs."""
    store = rollouts.store
    stored = store.start_experiment(KEY, key_id="k1")
    config = stored.experiment.to_dict()
    assert store.update_experiment(KEY, {**config, "description": "x"}, key_id="k1")
    with pytest.raises(Conflict, match="sets traffic") as caught:
        store.update_experiment(KEY, {**config, "traffic": 1.0}, key_id="k1")
    assert caught.value.field == "traffic"
    without_traffic = {k: v for k, v in config.items() if k != "traffic"}
    assert store.update_experiment(KEY, without_traffic, key_id="k1").experiment.traffic == (
        pytest.approx(0.02))  # fmt: skip
    changed = {**config, "rollout": {**config["rollout"], "alpha": 0.2}}
    with pytest.raises(Conflict, match="plan cannot change") as caught:
        store.update_experiment(KEY, changed, key_id="k1")
    assert caught.value.field == "rollout"
    with pytest.raises(Conflict, match="plan cannot change"):
        store.update_experiment(KEY, {**config, "rollout": None}, key_id="k1")


def test_a_stopped_rollout_resumes_at_its_step(rollouts):
    """stop then start keeps the step the traffic realises."""
    store = rollouts.store
    store.start_experiment(KEY, key_id="k1")
    rollouts.advance(KEY, expected_version=2, fence=None, numbers={})
    store.stop_experiment(KEY, key_id="k1")
    restarted = store.start_experiment(KEY, key_id="k1")
    assert restarted.experiment.traffic == pytest.approx(0.2)
    assert rollouts.state(KEY).step == 1


def test_the_lease_fences_a_monitor_that_lost_it(rollouts, redis_client):
    """One holder at a time; a new holder gets a new epoch; the old fence cannot write."""
    store = rollouts.store
    store.start_experiment(KEY, key_id="k1")
    first = rollouts.acquire_lease(KEY, "monitor-a", 60_000)
    assert first == "monitor-a:1"
    assert rollouts.acquire_lease(KEY, "monitor-b", 60_000) is None
    assert rollouts.acquire_lease(KEY, "monitor-a", 60_000) == first  # a renewal
    redis_client.delete(keys.monitor_lease(KEY))  # the lease expired (a stalled monitor)
    second = rollouts.acquire_lease(KEY, "monitor-b", 60_000)
    assert second == "monitor-b:2"
    with pytest.raises(LeaseLost):
        rollouts.advance(KEY, expected_version=2, fence=first, numbers={})
    with pytest.raises(LeaseLost):
        rollouts.rollback(KEY, key_id="monitor", fence=first)
    assert not rollouts.record_check(KEY, {"action": "hold"}, fence=first)
    assert store.get_experiment(KEY).version == 2
    assert rollouts.record_check(KEY, {"action": "hold"}, fence=second, state={"last_check_at": 5})
    assert rollouts.advance(KEY, expected_version=2, fence=second, numbers={}).version == 3
    assert rollouts.checks(KEY) == [{"action": "hold"}]
    assert rollouts.state(KEY).last_check_at == 5
    rollouts.release_lease(KEY, first)  # not the holder: nothing happens
    assert redis_client.get(keys.monitor_lease(KEY)) == second
    rollouts.release_lease(KEY, second)
    assert redis_client.get(keys.monitor_lease(KEY)) is None


def test_the_check_timeline_is_bounded(rollouts, monkeypatch):
    """Only the newest MAX_CHECKS records are kept."""
    import abtest.rollout_store as module

    monkeypatch.setattr(module, "MAX_CHECKS", 3)
    rollouts.store.start_experiment(KEY, key_id="k1")
    fence = rollouts.acquire_lease(KEY, "m", 60_000)
    assert fence is not None
    for i in range(5):
        rollouts.record_check(KEY, {"i": i}, fence=fence)
    assert rollouts.checks(KEY) == [{"i": 2}, {"i": 3}, {"i": 4}]
