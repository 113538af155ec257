"""The Redis key layout, pinned: these strings are the storage format's documentation."""

from pathlib import Path

import pytest
from redis.crc import key_slot

from abtest import keys


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [
        (keys.experiments_index(), "abtest:experiments"),
        (keys.experiment_meta("ranker-v2"), "abtest:{ranker-v2}:meta"),
        (keys.experiment_history("ranker-v2"), "abtest:{ranker-v2}:history"),
        (keys.assignments("ranker-v2"), "abtest:{ranker-v2}:assignments"),
        (keys.exposures_stream("ranker-v2"), "abtest:{ranker-v2}:exposures"),
        (keys.exposure_counts("ranker-v2"), "abtest:{ranker-v2}:counts"),
        (keys.outcomes_stream(), "abtest:{events}:outcomes"),
        (keys.seen_events("20240501"), "abtest:{events}:seen:20240501"),
        (keys.api_keys_by_hash(), "abtest:{apikeys}:by-hash"),
        (keys.api_keys_by_id(), "abtest:{apikeys}:by-id"),
        (keys.lifecycle_lock(), "abtest:lock:lifecycle"),
        (keys.export_lock(keys.outcomes_stream()), "abtest:{events}:outcomes:export-lock"),
        (keys.export_lock(keys.exposures_stream("r")), "abtest:{r}:exposures:export-lock"),
        (keys.console_secret(), "abtest:console:secret"),
        (keys.console_session("ab12"), "abtest:console:session:ab12"),
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
        keys.assignments,
        keys.exposures_stream,
        keys.exposure_counts,
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
        [
            build("ranker-v2")
            for build in (
                keys.experiment_meta,
                keys.experiment_history,
                keys.assignments,
                keys.exposures_stream,
                keys.exposure_counts,
            )
        ],
        [keys.outcomes_stream(), keys.seen_events("20240501"), keys.seen_events("20240502")],
        [keys.api_keys_by_hash(), keys.api_keys_by_id()],
    ]
    for group in groups:
        assert len({key_slot(k.encode()) for k in group}) == 1, group
    assert key_slot(keys.assignments("a").encode()) != key_slot(keys.assignments("b").encode())


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
