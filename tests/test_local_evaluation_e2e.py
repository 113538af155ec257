"""Local evaluation end to end: an outcome tracked right after an in-process assignment
counts in the analysis, because the exposure carries the client's assignment time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from abtest.assign_calls import MAX_EXPOSURE_DELAY_US
from abtest.client import Client
from abtest.export import export
from abtest.store import AssignRequest, Store
from analysis import analyze
from tests.conftest import Api, simple_config
from tests.stored import exposure_rows

REDIS_TOPOLOGIES = ("single", "cluster")  # the cluster's partitioned, compact layout too
UNITS = 600


def test_outcomes_tracked_at_once_after_a_local_assignment_all_count(
    api: Api, url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Assign in process, track at once, flush, export, analyse: every event is counted,
    and every unit is exposed exactly once."""
    api.create_experiment(simple_config("checkout", primary_metric="purchase:count"))
    with Client(url, api.sdk_key, local_evaluation=True, flush_interval=30) as client:
        for i in range(UNITS):
            unit = f"user-{i}"
            assert client.assign("checkout", unit).in_experiment
            client.track(unit, "purchase")
            client.assign("checkout", unit)  # seen before: no second exposure
        # The exposures reach the service only now, well after every event was stamped.
        time.sleep(0.05)
        assert client.flush(timeout=30)
        stats = client.stats()
    assert (stats.exposures_sent, stats.sent, stats.rejected) == (UNITS, UNITS, 0)
    assert len(exposure_rows(redis_client, "checkout")) == UNITS

    export(redis_client, out_dir=tmp_path)
    result = analyze(tmp_path / "exposures", tmp_path / "outcomes",
                     metrics=["purchase:count"], experiment="checkout")  # fmt: skip
    [row] = result.rows
    counted = row.control_mean * row.n_control + row.variant_mean * row.n_variant
    assert row.n_control + row.n_variant == UNITS
    assert counted == pytest.approx(UNITS)  # none dropped by the join


def _exposure_times(store: Store) -> dict[str, int]:
    return {row["unit_id"]: row["timestamp"] for row in exposure_rows(store.redis, "exp")}


def test_the_exposure_is_dated_by_the_callers_assignment_time_within_bounds(store: Store) -> None:
    """The earlier of the caller's time and arrival, but never more than the documented
    delay before arrival; a time in the future is arrival; a later call keeps the first."""
    store.create_experiment(simple_config(), key_id="t")
    store.start_experiment("exp", key_id="t")
    now = time.time_ns() // 1000
    store.assign_many([
        AssignRequest("exp", "recent", None, now - 10_000_000),
        AssignRequest("exp", "ancient", None, now - 5 * MAX_EXPOSURE_DELAY_US),
        AssignRequest("exp", "future", None, now + 60_000_000),
        AssignRequest("exp", "unstated"),
    ])  # fmt: skip
    after = time.time_ns() // 1000
    times = _exposure_times(store)
    assert times["recent"] == now - 10_000_000
    assert now - MAX_EXPOSURE_DELAY_US <= times["ancient"] <= after - MAX_EXPOSURE_DELAY_US
    assert now <= times["future"] <= after
    assert now <= times["unstated"] <= after
    store.assign_many([AssignRequest("exp", "recent", None, now - 20_000_000)])
    assert _exposure_times(store)["recent"] == now - 10_000_000  # exactly once: the first


def test_the_batch_endpoint_takes_assigned_at(api: Api, redis_client: redis.Redis) -> None:
    """``assigned_at`` (epoch µs) in ``POST /v1/assign/batch`` dates the first exposure."""
    api.create_experiment()
    then = time.time_ns() // 1000 - 3_000_000
    body = {"requests": [{"experiment": "exp", "unit_id": "u1", "assigned_at": then}]}
    assert api.call("POST", "/v1/assign/batch", body, role="sdk").status_code == 200
    [row] = exposure_rows(redis_client, "exp")
    assert row["timestamp"] == then
