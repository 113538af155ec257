"""The Redis store against a real redis-server: stickiness, exposures, events, lifecycle, keys."""

from __future__ import annotations

import threading

import pytest
import redis

from abtest import keys
from abtest.assignment import Reason
from abtest.assignment import assign as assign_pure
from abtest.auth import Role
from abtest.embedded import EmbeddedRedis
from abtest.errors import (
    Conflict,
    InvalidConfig,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from abtest.events import Event, parse_events
from abtest.experiment import Experiment, Status
from abtest.redis_client import connect
from abtest.store import MAX_BATCH_ASSIGNMENTS, AssignRequest, Store
from tests.conftest import simple_config
from tests.stored import exposure_rows, outcome_entries, sticky_variant

REDIS_TOPOLOGIES = ("single", "cluster")


def running(store: Store, key: str = "exp", **changes: object) -> Experiment:
    """Create and start an experiment; return its stored definition."""
    store.create_experiment(simple_config(key, **changes), key_id="test")
    return store.start_experiment(key, key_id="test").experiment


def exposures(client: redis.Redis, key: str = "exp") -> list[dict[str, object]]:
    """Every buffered exposure of the experiment (all partitions), as export rows."""
    return exposure_rows(client, key)


def test_first_assignment_is_stored_and_exposed_once(store, redis_client):
    """The first assign writes the sticky variant and one exposure; repeats add nothing."""
    experiment = running(store)
    first, version = store.assign("exp", "u1", None)
    for _ in range(3):
        assert store.assign("exp", "u1", None) == (first, version)
    assert first == assign_pure(experiment, "u1")
    assert sticky_variant(redis_client, "exp", "u1") == first.variant
    [entry] = exposures(redis_client)
    assert entry["unit_id"] == "u1"
    assert entry["experiment"] == "exp"
    assert entry["variant"] == first.variant
    assert entry["config_version"] == version == 2
    assert entry["timestamp"] > 1_700_000_000_000_000  # epoch microseconds


@pytest.mark.slow
def test_sixteen_threads_one_exposure_per_unit(redis_url, redis_client, partitions):
    """16 threads (each its own store, like workers) assigning 1,000 units: one exposure each."""
    Store(redis_client, **partitions).create_experiment(simple_config(), key_id="t")
    Store(redis_client, **partitions).start_experiment("exp", key_id="t")
    units = [f"unit-{i}" for i in range(1000)]
    results: list[dict[str, str]] = [{} for _ in range(16)]
    barrier = threading.Barrier(16)

    def work(slot: int) -> None:
        store = Store(connect(redis_url, decode_responses=True), **partitions)
        barrier.wait()
        order = units if slot % 2 else units[::-1]
        for unit in order:
            results[slot][unit] = store.assign("exp", unit, None)[0].variant or ""

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == results[0] for result in results)
    stream = exposures(redis_client)
    assert len(stream) == 1000
    assert sorted(e["unit_id"] for e in stream) == sorted(units)
    counts = Store(redis_client, **partitions).exposure_counts("exp")
    assert counts.total == 1000
    assert counts.variants == {
        v: sum(1 for r in results[0].values() if r == v) for v in counts.variants
    }


def test_weight_change_does_not_move_assigned_units(store, redis_client):
    """After a weight change, assigned units keep their variant; new units follow new weights."""
    running(store)
    before = {f"u{i}": store.assign("exp", f"u{i}", None)[0].variant for i in range(200)}
    heavy = simple_config(
        variants=[{"key": "control", "weight": 1}, {"key": "treatment", "weight": 99}]
    )
    updated = store.update_experiment("exp", heavy, key_id="t")
    assert updated.version == 3
    after = {unit: store.assign("exp", unit, None) for unit in before}
    assert {u: a[0].variant for u, a in after.items()} == before
    assert {a[1] for a in after.values()} == {3}
    moved_by_pure = sum(assign_pure(updated.experiment, u).variant != v for u, v in before.items())
    assert moved_by_pure > 20  # the recomputed variants would have moved many units
    new = [store.assign("exp", f"new{i}", None)[0].variant for i in range(200)]
    assert new.count("treatment") > 180
    assert len(exposures(redis_client)) == 400


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"variants": [{"key": "control", "weight": 1}, {"key": "other", "weight": 1}]},
            "variants",
        ),
        ({"seed": "another-seed"}, "seed"),
        ({"traffic": 0.5}, "traffic"),
        ({"layer": {"name": "l", "range": [0.0, 0.5]}}, "layer.range"),
    ],
)
def test_update_that_moves_assigned_units_needs_force(store, change, field):
    """A change that would move assigned units is a Conflict unless forced."""
    running(store)
    store.assign("exp", "u1", None)
    with pytest.raises(Conflict) as info:
        store.update_experiment("exp", simple_config(**change), key_id="t")
    assert info.value.field == field
    assert store.get_experiment("exp").version == 2
    assert (
        store.update_experiment("exp", simple_config(**change), key_id="t", force=True).version == 3
    )


def test_removed_variant_falls_back_without_second_exposure(store, redis_client):
    """A unit whose sticky variant was force-removed is recomputed, without a new exposure."""
    running(store)
    units = [f"u{i}" for i in range(20)]
    sticky = {u: store.assign("exp", u, None)[0].variant for u in units}
    victims = [u for u, v in sticky.items() if v == "treatment"]
    two = simple_config(variants=[{"key": "control", "weight": 1}, {"key": "new", "weight": 1}])
    store.update_experiment("exp", two, key_id="t", force=True)
    for unit in victims:
        assert store.assign("exp", unit, None)[0].variant in {"control", "new"}
    assert len(exposures(redis_client)) == 20


def test_forced_shipped_and_stopped_units_are_not_exposures(store, redis_client):
    """Overrides, shipped and stopped experiments return variants (or none) without exposures."""
    running(store, overrides={"qa": "treatment"})
    forced, _ = store.assign("exp", "qa", None)
    assert (forced.variant, forced.reason) == ("treatment", Reason.FORCED)
    store.stop_experiment("exp", key_id="t")
    assert store.assign("exp", "u1", None)[0].reason is Reason.NOT_RUNNING
    store.ship_experiment("exp", "treatment", key_id="t")
    shipped, version = store.assign("exp", "u2", None)
    assert (shipped.variant, shipped.reason, version) == ("treatment", Reason.SHIPPED, 4)
    assert exposures(redis_client) == []


def test_not_targeted_units_are_not_stored(store, redis_client):
    """A unit that fails targeting is not stored or exposed."""
    running(store, targeting=[{"attribute": "country", "op": "eq", "value": "DE"}])
    result, _ = store.assign("exp", "u1", {"country": "FR"})
    assert result.reason is Reason.NOT_TARGETED
    assert sticky_variant(redis_client, "exp", "u1") is None
    assert exposures(redis_client) == []
    assert store.assign("exp", "u1", {"country": "DE"})[0].reason is Reason.ASSIGNED


def test_cached_config_is_refreshed_after_another_store_changes_it(redis_client, partitions):
    """A worker's cached config is never used once another worker stored a newer version."""
    worker, admin = Store(redis_client, **partitions), Store(redis_client, **partitions)
    running(admin)
    assert worker.assign("exp", "u1", None)[1] == 2
    admin.stop_experiment("exp", key_id="t")
    result, version = worker.assign("exp", "u2", None)
    assert (result.reason, version) == (Reason.NOT_RUNNING, 3)


def test_assign_many_matches_one_by_one_and_exposes_each_unit_once(store, redis_client):
    """A batch answers as single calls would, in order; a unit listed twice is exposed once."""
    running(store)
    running(store, "other", overrides={"qa": "treatment"})
    batch = [AssignRequest("exp", f"u{i}") for i in range(40)]
    batch += [
        AssignRequest("other", "qa"),
        AssignRequest("exp", "u3"),
        AssignRequest("other", "u1"),
    ]
    answers = store.assign_many(batch)
    assert [r.experiment for r, _ in answers] == [request.experiment for request in batch]
    assert answers[40][0].reason is Reason.FORCED
    assert answers[41] == answers[3]
    assert answers == [store.assign(*request) for request in batch]  # sticky: same again
    assert sorted(e["unit_id"] for e in exposures(redis_client)) == sorted(
        f"u{i}" for i in range(40)
    )
    assert [e["unit_id"] for e in exposures(redis_client, "other")] == ["u1"]


def test_assign_many_with_an_unknown_experiment_assigns_nobody(store, redis_client):
    """All or nothing: the missing experiment is named by its index and no unit is stored."""
    running(store)
    with pytest.raises(NotFound) as caught:
        store.assign_many([AssignRequest("exp", "u1"), AssignRequest("nope", "u2")])
    assert caught.value.field == "requests[1].experiment"
    assert sticky_variant(redis_client, "exp", "u1") is None
    assert exposures(redis_client) == []
    with pytest.raises(PayloadTooLarge):
        store.assign_many([AssignRequest("exp", f"u{i}") for i in range(MAX_BATCH_ASSIGNMENTS + 1)])
    assert exposures(redis_client) == []
    store.assign("exp", "u0")  # cached by this store, then removed from Redis directly
    for partition in range(store.unit_partitions):
        redis_client.delete(keys.unit_state("exp", partition, store.unit_partitions))
    redis_client.delete(keys.experiment_meta("exp"))
    with pytest.raises(NotFound) as caught:
        store.assign_many([AssignRequest("exp", "u1")])
    assert caught.value.field == "requests[0].experiment"


def test_assign_many_reassigns_requests_made_with_a_stale_config(redis_client, partitions):
    """Calls built from a config another worker has since replaced are made again, current."""
    worker, admin = Store(redis_client, **partitions), Store(redis_client, **partitions)
    running(admin)
    worker.assign("exp", "u0")
    admin.stop_experiment("exp", key_id="t")
    answers = worker.assign_many([AssignRequest("exp", "u1"), AssignRequest("exp", "u2")])
    assert [(r.reason, version) for r, version in answers] == [(Reason.NOT_RUNNING, 3)] * 2
    assert len(exposures(redis_client)) == 1


def test_unknown_experiment_is_not_found(store):
    """Assigning in a missing experiment raises NotFound."""
    with pytest.raises(NotFound):
        store.assign("nope", "u1", None)


def test_lifecycle_transitions_and_history(store):
    """create/start/update/stop/ship each write a version with time, key id and a diff."""
    created = store.create_experiment(simple_config(status="running"), key_id="k-admin")
    assert (created.version, created.experiment.status) == (1, Status.DRAFT)
    store.start_experiment("exp", key_id="k-admin")
    store.update_experiment("exp", simple_config(description="d"), key_id="k2")
    store.stop_experiment("exp", key_id="k2")
    store.ship_experiment("exp", "control", key_id="k3")
    history = store.history("exp")
    assert [h["action"] for h in history] == ["create", "start", "update", "stop", "ship"]
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["key_id"] for h in history] == ["k-admin", "k-admin", "k2", "k2", "k3"]
    assert history[2]["diff"] == [{"field": "description", "old": "", "new": "d"}]
    assert {"field": "winner", "old": None, "new": "control"} in history[4]["diff"]
    assert Experiment.from_dict(history[4]["config"]).winner == "control"
    assert all(h["time"].endswith("Z") for h in history)


def test_ship_reason_is_kept_in_the_audit_entry(store):
    """A ship reason is stored (stripped) in the ship entry; none leaves the entry without one."""
    store.create_experiment(simple_config(), key_id="t")
    store.start_experiment("exp", key_id="t")
    store.ship_experiment("exp", "treatment", key_id="k", reason="  legal asked for v2 \n")
    assert store.history("exp")[-1]["reason"] == "legal asked for v2"
    store.create_experiment(simple_config("other"), key_id="t")
    store.start_experiment("other", key_id="t")
    store.ship_experiment("other", "control", key_id="k", reason="   ")
    assert "reason" not in store.history("other")[-1]


@pytest.mark.parametrize("reason", [7, "x" * 2001])
def test_bad_ship_reason_is_refused_and_changes_nothing(store, reason):
    """A reason that is not a string, or too long, is InvalidInput naming 'reason'."""
    store.create_experiment(simple_config(), key_id="t")
    store.start_experiment("exp", key_id="t")
    with pytest.raises(InvalidInput) as info:
        store.ship_experiment("exp", "treatment", key_id="k", reason=reason)
    assert info.value.field == "reason"
    assert store.get_experiment("exp").experiment.status is Status.RUNNING
    assert len(store.history("exp")) == 2


@pytest.mark.parametrize(
    ("action", "status"),
    [("stop", "draft"), ("ship", "draft"), ("start", "running"), ("start", "shipped")],
)
def test_invalid_transitions_conflict(store, action, status):
    """Transitions not allowed from the current status raise Conflict and write nothing."""
    store.create_experiment(simple_config(), key_id="t")
    if status in ("running", "shipped"):
        store.start_experiment("exp", key_id="t")
    if status == "shipped":
        store.ship_experiment("exp", "control", key_id="t")
    version = store.get_experiment("exp").version
    calls = {
        "start": lambda: store.start_experiment("exp", key_id="t"),
        "stop": lambda: store.stop_experiment("exp", key_id="t"),
        "ship": lambda: store.ship_experiment("exp", "control", key_id="t"),
    }
    with pytest.raises(Conflict):
        calls[action]()
    assert store.get_experiment("exp").version == version


def test_create_twice_and_bad_configs(store):
    """A duplicate key conflicts; an invalid config is rejected and nothing is stored."""
    store.create_experiment(simple_config(), key_id="t")
    with pytest.raises(Conflict):
        store.create_experiment(simple_config(), key_id="t")
    with pytest.raises(InvalidConfig):
        store.create_experiment({"key": "bad", "variants": []}, key_id="t")
    assert [s.experiment.key for s in store.list_experiments()] == ["exp"]


def test_update_may_not_change_status_or_key(store):
    """PUT cannot change lifecycle fields or the key."""
    store.create_experiment(simple_config(), key_id="t")
    with pytest.raises(Conflict):
        store.update_experiment("exp", simple_config(status="running"), key_id="t")
    with pytest.raises(InvalidInput):
        store.update_experiment("exp", simple_config("other"), key_id="t")


def test_overlapping_layers_cannot_run_together(store):
    """Starting an experiment whose layer range overlaps a running one is a Conflict."""
    layer = {"name": "search", "range": [0.0, 0.6]}
    running(store, "a", layer=layer)
    store.create_experiment(
        simple_config("b", layer={"name": "search", "range": [0.5, 1.0]}), key_id="t"
    )
    with pytest.raises(Conflict) as info:
        store.start_experiment("b", key_id="t")
    assert info.value.field == "layer.range"
    store.update_experiment(
        "b", simple_config("b", layer={"name": "search", "range": [0.6, 1.0]}), key_id="t"
    )
    assert store.start_experiment("b", key_id="t").experiment.status is Status.RUNNING


def test_events_are_idempotent_by_event_id(store, redis_client):
    """A retried batch is counted once; duplicates inside one batch are dropped too."""
    batch = parse_events([
        {"event_id": "e1", "unit_id": "u1", "metric": "purchase"},
        {"event_id": "e2", "unit_id": "u1", "metric": "revenue", "value": 12.5,
         "timestamp": "2024-05-01T12:00:00Z"},
        {"event_id": "e1", "unit_id": "u1", "metric": "purchase"},
    ])  # fmt: skip
    assert store.record_events(batch) == (2, 1)
    assert store.record_events(batch) == (0, 3)
    entries = sorted(outcome_entries(redis_client), key=lambda e: e["event_id"])
    assert [e["event_id"] for e in entries] == ["e1", "e2"]
    assert entries[1] == {"event_id": "e2", "unit_id": "u1", "metric": "revenue", "value": "12.5",
                          "timestamp": "1714564800000000"}  # fmt: skip
    assert float(entries[0]["value"]) == 1.0


def test_event_ids_are_remembered_for_the_window_only(store, redis_client):
    """Seen ids live in per-day tables that expire after the documented window."""
    store.record_events([Event("e1", "u1", "m", 1.0, 1_714_564_800_000_000)])
    seen = list(redis_client.scan_iter(match="abtest:{events*}:ids:*"))
    assert len(seen) == 2  # the day's table position and its one bucket
    for name in seen:
        assert 7 * 86_400 < redis_client.ttl(name) <= 8 * 86_400
        redis_client.delete(name)  # what expiry does after the window
    assert store.record_events([Event("e1", "u1", "m", 1.0, 1_714_564_800_000_000)]) == (1, 0)


def test_exposure_counts_per_variant_and_day(store):
    """Counts per variant and per UTC day add up to the number of exposed units."""
    running(store)
    variants = [store.assign("exp", f"u{i}", None)[0].variant for i in range(50)]
    counts = store.exposure_counts("exp")
    assert counts.variants == {
        "control": variants.count("control"),
        "treatment": variants.count("treatment"),
    }
    [day] = counts.daily
    assert counts.daily[day] == counts.variants
    assert counts.to_dict()["total"] == 50


def test_api_keys_create_verify_revoke(store, redis_client):
    """Keys verify until revoked; only their hashes are stored."""
    token, record = store.create_api_key(Role.SDK, name="app")
    assert store.verify_api_key(token) == record
    assert token not in str(redis_client.hgetall(keys.api_keys_by_hash()))
    assert store.revoke_api_key(record.id).revoked
    with pytest.raises(Unauthorized):
        store.verify_api_key(token)
    with pytest.raises(Unauthorized):
        store.verify_api_key("abt_not-a-key")
    with pytest.raises(NotFound):
        store.revoke_api_key("k-missing")
    assert [k.id for k in store.list_api_keys()] == [record.id]


def test_first_admin_key_only_on_an_empty_store(store):
    """The first admin key is created once; later calls return None."""
    token = store.create_first_admin_key()
    assert token is not None
    assert store.verify_api_key(token).role is Role.ADMIN
    assert store.create_first_admin_key() is None


def test_embedded_restart_keeps_experiments_keys_and_events(tmp_path):
    """Stopping and restarting the embedded server keeps experiments, keys and stream entries."""
    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = Store(client)
        running(store)
        token, _ = store.create_api_key(Role.ADMIN)
        variant = store.assign("exp", "u1", None)[0].variant
        store.record_events([Event("e1", "u1", "m", 2.0, 1_714_564_800_000_000)])
        client.close()
    with EmbeddedRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        store = Store(client)
        assert store.get_experiment("exp").experiment.status is Status.RUNNING
        assert store.verify_api_key(token).role is Role.ADMIN
        assert store.assign("exp", "u1", None)[0].variant == variant
        assert client.xlen(keys.outcomes_stream()) == 1
        assert client.xlen(keys.exposures_stream("exp")) == 1
        assert store.record_events([Event("e1", "u1", "m", 2.0, 1_714_564_800_000_000)]) == (0, 1)
        client.close()


def test_one_data_dir_serves_one_server(tmp_path):
    """A second embedded server on the same data dir is refused."""
    with EmbeddedRedis(tmp_path), pytest.raises(Exception, match="in use"):
        EmbeddedRedis(tmp_path).start()
