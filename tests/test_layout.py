"""The compact, partitioned layout: tables that split and stay packed, version copies that
catch up, and stores written by the previous layout that keep working."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from abtest import keys, layout
from abtest.events import Event
from abtest.export import export, read_exposures, read_outcomes
from abtest.store import AssignRequest, Store
from tests.conftest import simple_config
from tests.stored import exposure_rows, sticky_variant

REDIS_TOPOLOGIES = ("single", "cluster")
DAY = 1_714_564_800_000_000


def running(store: Store, key: str = "exp") -> None:
    store.create_experiment(simple_config(key), key_id="t")
    store.start_experiment(key, key_id="t")


def buckets(client: redis.Redis, pattern: str) -> list[str]:
    """Every bucket key matching ``pattern`` (all nodes of a cluster)."""
    return [k for k in client.scan_iter(match=pattern) if k.rsplit(":", 1)[1].isdigit()]


def test_the_sticky_table_splits_keeps_every_unit_and_stays_packed(store, redis_client):
    """3,000 units: the buckets split as they fill, every unit keeps its one exposure and
    variant, and every bucket is still a packed small hash."""
    running(store)
    units = [f"user-{i:08d}" for i in range(3000)]
    first = {}
    for start in range(0, len(units), 100):
        chunk = units[start : start + 100]
        answers = store.assign_many([AssignRequest("exp", u) for u in chunk])
        first.update({u: a.variant for u, (a, _) in zip(chunk, answers, strict=True)})
    again = store.assign_many([AssignRequest("exp", u) for u in units[::30]])
    assert [a.variant for a, _ in again] == [first[u] for u in units[::30]]
    assert all(sticky_variant(redis_client, "exp", u) == first[u] for u in units[::7])
    assert len(exposure_rows(redis_client)) == 3000
    found = buckets(redis_client, "abtest:{exp*}:units:*")
    assert len(found) > 3000 / keys.LINEAR_HASH_LOAD / 2  # it did split
    assert sum(redis_client.hlen(b) for b in found) == 3000
    assert {redis_client.object("encoding", b) for b in found} == {"ziplist"}


def test_event_ids_stay_deduplicated_across_table_splits(store, redis_client):
    """5,000 events fill and split a day's id table; sent again, every one is a duplicate."""
    events = [Event(f"{i:032x}", f"u{i % 50}", "m", 1.0, DAY) for i in range(5000)]
    for start in range(0, 5000, 1000):
        assert store.record_events(events[start : start + 1000]) == (1000, 0)
    for start in range(0, 5000, 1000):
        assert store.record_events(events[start : start + 1000]) == (0, 1000)
    found = buckets(redis_client, "abtest:{events*}:ids:*")
    assert len(found) > 5000 / keys.LINEAR_HASH_LOAD / 2
    assert {redis_client.object("encoding", b) for b in found} == {"ziplist"}
    # Every bucket, created or rewritten by a split, expires after the window.
    assert all(7 * 86_400 < redis_client.ttl(b) <= 8 * 86_400 for b in found)


@pytest.mark.parametrize("redis_topology", ["single"], indirect=True)
def test_a_partition_left_behind_by_a_dead_writer_is_caught_up(redis_client):
    """A config version committed in meta but not copied to a partition (the writer died) is
    copied by the first assign that meets it; assign never runs on the old config."""
    admin, worker = Store(redis_client, unit_partitions=4), Store(redis_client, unit_partitions=4)
    running(admin)
    assert worker.assign("exp", "u1")[1] == 2
    partition = keys.unit_partition("u2", 4)
    redis_client.hset(keys.unit_state("exp", partition, 4), "version", 1)  # as if never copied
    assert worker.assign("exp", "u2")[1] == 2
    assert redis_client.hget(keys.unit_state("exp", partition, 4), "version") == "2"
    admin.stop_experiment("exp", key_id="t")  # copies 3 everywhere; the worker's cache is 2
    result, version = worker.assign("exp", "u3")
    assert (result.reason.value, version) == ("not_running", 3)


@pytest.mark.parametrize("redis_topology", ["single"], indirect=True)
def test_a_store_written_by_the_previous_layout_keeps_working(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Sticky units, buffered exposures and seen event ids of the previous layout: units
    keep their variant without a second exposure (and move to the new table), old event ids
    stay duplicates, and export reads old and new stream entries alike."""
    store = Store(redis_client)
    running(store)
    old = {f"old-{i}": "treatment" if i % 2 else "control" for i in range(10)}
    redis_client.hset(keys.legacy_assignments("exp"), mapping=old)
    for unit, variant in old.items():
        redis_client.xadd(keys.exposures_stream("exp"), {
            "unit_id": unit, "experiment": "exp", "variant": variant,
            "timestamp": DAY, "config_version": 2})  # fmt: skip
    redis_client.delete(keys.variant_codes("exp"))  # a store from before variant codes
    today = layout.days()[0]
    redis_client.sadd(keys.legacy_seen_events(today), "e-old")
    fresh = Store(redis_client)  # a new process after the upgrade
    for unit, variant in old.items():
        assert fresh.assign("exp", unit)[0].variant == variant
    assert redis_client.hlen(keys.legacy_assignments("exp")) == 0  # moved on first touch
    assert all(sticky_variant(redis_client, "exp", u) == v for u, v in old.items())
    fresh.assign("exp", "new-1")
    assert fresh.record_events([Event("e-old", "old-1", "m", 1.0, DAY)]) == (0, 1)
    assert fresh.record_events([Event("e-new", "new-1", "m", 1.0, DAY)]) == (1, 0)
    export(redis_client, out_dir=tmp_path)
    rows = read_exposures(tmp_path).to_pylist()
    assert sorted(r["unit_id"] for r in rows) == sorted([*old, "new-1"])
    assert {r["unit_id"]: r["variant"] for r in rows if r["unit_id"] in old} == old
    assert read_outcomes(tmp_path).column("event_id").to_pylist() == ["e-new"]
