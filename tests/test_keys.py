"""The Redis key layout, pinned: these strings are the storage format's documentation."""

from pathlib import Path

import pytest
from redis.crc import key_slot

from abtest import keys, layout
from abtest.events import Event

EVENTS = [Event(f"e{i}", "u", "m", 1.0, 1_714_564_800_000_000) for i in range(40)]


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        (keys.experiments_index(), "abtest:experiments"),
        (keys.experiment_meta("ranker-v2"), "abtest:{ranker-v2}:meta"),
        (keys.experiment_history("ranker-v2"), "abtest:{ranker-v2}:history"),
        (keys.variant_codes("ranker-v2"), "abtest:{ranker-v2}:variants"),
        (keys.unit_state("ranker-v2"), "abtest:{ranker-v2}:meta"),
        (keys.unit_state("ranker-v2", 7, 16), "abtest:{ranker-v2:p7.62}:state"),
        (keys.sticky_buckets("ranker-v2"), "abtest:{ranker-v2}:units"),
        (keys.sticky_buckets("ranker-v2", 7, 16), "abtest:{ranker-v2:p7.62}:units"),
        (keys.exposures_stream("ranker-v2"), "abtest:{ranker-v2}:exposures"),
        (keys.exposures_stream("ranker-v2", 0, 16), "abtest:{ranker-v2:p0.22}:exposures"),
        (keys.exposure_counts("ranker-v2"), "abtest:{ranker-v2}:counts"),
        (keys.exposure_counts("ranker-v2", 15, 16), "abtest:{ranker-v2:p15.10}:counts"),
        (keys.legacy_assignments("ranker-v2"), "abtest:{ranker-v2}:assignments"),
        (keys.outcomes_stream(), "abtest:{events}:outcomes"),
        (keys.outcomes_stream(3, 8), "abtest:{events:3.12}:outcomes"),
        (keys.seen_events("20240501"), "abtest:{events}:ids:20240501"),
        (keys.seen_events("20240501", 3, 8), "abtest:{events:3.12}:ids:20240501"),
        (keys.legacy_seen_events("20240501"), "abtest:{events}:seen:20240501"),
        (keys.event_partition_counts(), "abtest:event-partitions"),
        (keys.metric_catalogue(), "abtest:{catalogue}:metrics"),
        (keys.metric_versions("clicks/searches"), "abtest:{catalogue}:versions:clicks/searches"),
        (keys.unknown_metrics(), "abtest:{events}:unknown-metrics"),
        (keys.unknown_metrics(3, 8), "abtest:{events:3.12}:unknown-metrics"),
        (keys.api_keys_by_hash(), "abtest:{apikeys}:by-hash"),
        (keys.api_keys_by_id(), "abtest:{apikeys}:by-id"),
        (keys.lifecycle_lock(), "abtest:lock:lifecycle"),
        (keys.export_lock(keys.outcomes_stream()), "abtest:{events}:outcomes:export-lock"),
        (keys.export_lock(keys.exposures_stream("r")), "abtest:{r}:exposures:export-lock"),
        (keys.rollout_state("ranker-v2"), "abtest:{ranker-v2}:rollout"),
        (keys.rollout_checks("ranker-v2"), "abtest:{ranker-v2}:rollout:checks"),
        (keys.monitor_lease("ranker-v2"), "abtest:{ranker-v2}:monitor-lease"),
        (keys.monitor_instances(), "abtest:monitor:instances"),
        (keys.controlled_clock(), "abtest:clock"),
        (keys.console_secret(), "abtest:console:secret"),
        (keys.console_session("ab12"), "abtest:console:session:ab12"),
        (keys.alerts("ranker-v2"), "abtest:{ranker-v2}:alerts"),
        (keys.alerts_revision("ranker-v2"), "abtest:{ranker-v2}:alerts:rev"),
        (keys.alerts_history("ranker-v2"), "abtest:{ranker-v2}:alerts:history"),
        (keys.webhooks(), "abtest:{webhooks}:hooks"),
        (keys.webhook_outbox(), "abtest:{webhooks}:outbox"),
        (keys.webhook_pending(), "abtest:{webhooks}:pending"),
        (keys.webhook_log("w1a2b3c4d5e6"), "abtest:{webhooks}:log:w1a2b3c4d5e6"),
    ],
)
def test_rendered_key_names(rendered, expected):
    """Each key function renders exactly the documented name."""
    assert rendered == expected


@pytest.mark.parametrize(
    "build",
    [
        keys.experiment_meta,
        keys.experiment_history,
        keys.variant_codes,
        keys.legacy_assignments,
        keys.unit_state,
        keys.sticky_buckets,
        keys.exposures_stream,
        keys.exposure_counts,
        keys.rollout_state,
        keys.rollout_checks,
        keys.monitor_lease,
    ],
)
def test_experiment_keys_share_one_hash_tag(build):
    """Every per-experiment key carries the hash tag {experiment-key} (one cluster slot)."""
    rendered = build("a.b_c-1")
    assert rendered.split(":")[1] == "{a.b_c-1}"
    assert rendered.count("{") == 1


def test_keys_of_one_script_map_to_one_cluster_slot():
    """Keys used together in one Lua script hash to the same Redis Cluster slot."""
    groups = [
        [*layout.unit_script_keys("ranker-v2", 0, 1), keys.experiment_history("ranker-v2")],
        *(layout.unit_script_keys("ranker-v2", p, 4) for p in range(4)),
        *(call_keys for call_keys, _ in layout.event_calls(EVENTS, 1, legacy_days=["20240501"])),
        *(call_keys for call_keys, _ in layout.event_calls(EVENTS, 4)),
        [keys.api_keys_by_hash(), keys.api_keys_by_id()],
        # the fenced version write and the monitor's lease and check scripts
        [
            keys.experiment_meta("r"),
            keys.experiment_history("r"),
            keys.rollout_state("r"),
            keys.monitor_lease("r"),
            keys.rollout_checks("r"),
        ],
        [
            keys.alerts("ranker-v2"),
            keys.alerts_revision("ranker-v2"),
            keys.alerts_history("ranker-v2"),
            keys.experiment_meta("ranker-v2"),
        ],
        [keys.webhooks(), keys.webhook_outbox(), keys.webhook_pending(), keys.webhook_log("w1")],
        [keys.metric_catalogue(), keys.metric_versions("latency_ms:p95")],
    ]
    for group in groups:
        assert len({key_slot(k.encode()) for k in group}) == 1, group
    slots = {key_slot(keys.exposures_stream("a", p, 4).encode()) for p in range(4)}
    assert len(slots) == 4  # partitions can land on different shards
    assert key_slot(keys.experiment_meta("a").encode()) != key_slot(
        keys.experiment_meta("b").encode()
    )
    assert len(layout.event_calls(EVENTS, 4)) == 4  # 40 events reach every partition


def test_every_lua_script_lives_in_the_keys_module():
    """No other module of the packages holds a script that calls Redis."""
    root = Path(keys.__file__).resolve().parents[1]
    holders = [
        path.relative_to(root).as_posix()
        for package in ("abtest", "service", "analysis")
        for path in sorted((root / package).rglob("*.py"))
        if "redis.call(" in path.read_text(encoding="utf-8")
    ]
    assert holders == ["abtest/keys.py"]


@pytest.mark.parametrize(
    ("function", "argument", "expected"),
    [
        # Pinned: changing any of these moves stored units or events to other keys.
        (keys.unit_bucket_hash, "user-7", 0x7EFCF445),
        (lambda unit: keys.unit_partition(unit, 16), "user-7", 1),
        (lambda unit: keys.unit_partition(unit, 1), "user-7", 0),
        (lambda event_id: keys.event_digest(event_id).hex(), "9f1c", "bef82b395a9ae00e63ab3351"),
        (lambda event_id: keys.event_partition(keys.event_digest(event_id), 8), "9f1c", 1),
        (lambda name: keys.name_partition(name, 8), "revenu", 5),
    ],
)
def test_partition_and_bucket_functions_are_pinned(function, argument, expected):
    """The partition and bucket functions give these exact values (a storage format)."""
    assert function(argument) == expected


def test_bucket_of_follows_the_linear_hashing_rule():
    """A hash below the split pointer goes to the next level's bucket; the others stay."""
    assert keys.bucket_of(13, 0, 0) == 0
    assert keys.bucket_of(13, 2, 0) == 1  # 13 mod 4
    assert keys.bucket_of(13, 2, 2) == 5  # 1 < split 2: 13 mod 8
    assert keys.bucket_of(14, 2, 2) == 2  # 2 is not below split 2


@pytest.mark.parametrize("partitions", [3, 12, 16, 64])
def test_partitions_spread_evenly_over_the_slot_space(partitions):
    """Partition n's tag lies in the n-th of P equal slot ranges, so P partitions over M
    masters with contiguous slot ranges put about P/M on each."""
    for build in (lambda p: keys.exposures_stream("ranker-v2", p, partitions),
                  lambda p: keys.outcomes_stream(p, partitions)):  # fmt: skip
        slots = [key_slot(build(p).encode()) for p in range(partitions)]
        assert [slot * partitions // 16_384 for slot in slots] == list(range(partitions))


def test_partitioned_tags_cannot_collide_with_an_experiment_key():
    """A slug has no colon, so the partition tag {K:p3} is never another experiment's {K}."""
    from abtest.experiment import SLUG

    assert not SLUG.fullmatch("a:p3")
    with pytest.raises(ValueError, match="partition"):
        keys.exposures_stream("a", 4, 4)
