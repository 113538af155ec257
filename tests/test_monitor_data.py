"""What a monitor check reads: every row once, from the streams and the export files
together, whatever step an ``abtest export`` is at, and without disturbing it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from abtest import keys
from abtest.export import GROUP, Step, export
from abtest.store import Store
from service.monitor.clock import SettableClock
from service.monitor.data import MonitorData, MonitorReader
from tests.monitor_traffic import Traffic, clocked_store, rollout_experiment

KEY = "ranker-v3"


@pytest.fixture
def store(redis_client, clock) -> Store:
    store = clocked_store(redis_client, clock)
    store.create_experiment(rollout_experiment(steps=[0.5, 1]), key_id="t")
    store.start_experiment(KEY, key_id="t")
    return store


def truth(
    store: Store, redis_client, skip: frozenset[str] | set[str] = frozenset()
) -> tuple[dict[str, int], dict[str, float]]:
    """Units per variant (the counters) and the latency sum per variant (from the streams,
    read before any export), leaving out the events whose id is in ``skip``."""
    units = dict(store.exposure_counts(KEY).variants)
    codes = {code: v for v, code in redis_client.hgetall(keys.variant_codes(KEY)).items()}
    variant_of = {f["u"]: codes[f["v"]] for _, f in redis_client.xrange(keys.exposures_stream(KEY))}
    sums: Counter[str] = Counter()
    for _, event in redis_client.xrange(keys.outcomes_stream()):
        if event["event_id"] not in skip and event["metric"] == "latency_ms":
            sums[variant_of[event["unit_id"]]] += float(event["value"])
    return units, dict(sums)


def read(reader: MonitorReader, store: Store, clock: SettableClock) -> MonitorData:
    stored = store.get_experiment(KEY)
    counts = {KEY: store.exposure_counts(KEY)}
    return reader.read([stored], counts=counts, now=clock.now() + timedelta(days=1))[KEY]


def seen(data: MonitorData) -> tuple[dict[str, int], dict[str, float]]:
    assert data.aggregates is not None
    latency = data.aggregates.metrics["latency_ms"].stats
    return dict(data.aggregates.units), {v: s.sum for v, s in latency.items()}


@pytest.mark.slow
def test_a_check_between_every_step_of_an_export_sees_every_row_once(
    store, redis_client, clock, tmp_path
):
    """At each step of each batch (read, written, renamed, synced, acknowledged), a fresh
    reader and a long-lived one find exactly the rows there are: none missed, none twice."""
    Traffic(store, clock, experiment=KEY, seed=1).hour(70)
    units, sums = truth(store, redis_client)
    long_lived = MonitorReader(redis_client, tmp_path)
    steps: Counter[Step] = Counter()
    duplicates = 0

    def check(step: Step) -> None:
        nonlocal duplicates
        steps[step] += 1
        for reader in (MonitorReader(redis_client, tmp_path), long_lived):
            data = read(reader, store, clock)
            assert data.complete, data.incomplete_reason
            got_units, got_sums = seen(data)
            assert got_units == units, step
            assert got_sums == pytest.approx(sums, rel=1e-12), step
            duplicates = max(duplicates, data.stats.duplicate_rows)

    check(Step.READ)  # before the export
    export(redis_client, out_dir=tmp_path, batch_size=30, hook=check)
    check(Step.ACKED)  # after it
    assert min(steps[s] for s in Step) >= 2  # several batches passed every step
    assert duplicates > 0  # rows were in both places at some point, and counted once
    assert redis_client.xlen(keys.outcomes_stream()) == 0


@pytest.mark.parametrize("step", list(Step))
def test_a_check_after_an_export_crashed_at_a_step_sees_every_row_once(
    store, redis_client, clock, tmp_path, step
):
    """An export that died at any step (its batch half written), then a check, then the
    re-run: the check counts each row once."""
    traffic = Traffic(store, clock, experiment=KEY, seed=2)
    traffic.hour(150)
    units, sums = truth(store, redis_client)

    def crash(reached: Step) -> None:
        if reached is step:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        export(redis_client, out_dir=tmp_path, batch_size=40, hook=crash)
    for rerun in (False, True):
        if rerun:
            redis_client.delete(
                keys.export_lock(keys.exposures_stream(KEY)),
                keys.export_lock(keys.outcomes_stream()),
            )  # it expired
            export(redis_client, out_dir=tmp_path, batch_size=40)
        got_units, got_sums = seen(read(MonitorReader(redis_client, tmp_path), store, clock))
        assert got_units == units
        assert got_sums == pytest.approx(sums, rel=1e-12)


def test_reading_never_touches_what_export_has_not_written(store, redis_client, clock, tmp_path):
    """A check reads with XRANGE only: stream lengths and the export group stay as they
    were, and the export afterwards still writes every row."""
    Traffic(store, clock, experiment=KEY, seed=3).hour(100)
    export(redis_client, out_dir=tmp_path / "first", batch_size=10_000)  # creates the groups
    Traffic(store, clock, experiment=KEY, seed=4).hour(100)
    streams = (keys.exposures_stream(KEY), keys.outcomes_stream())
    before = [(redis_client.xlen(s), redis_client.xinfo_groups(s)) for s in streams]
    reader = MonitorReader(redis_client, tmp_path / "first")
    data = read(reader, store, clock)
    read(reader, store, clock)
    assert data.complete
    assert [(redis_client.xlen(s), redis_client.xinfo_groups(s)) for s in streams] == before
    assert [g["name"] for g in redis_client.xinfo_groups(streams[1])] == [GROUP]
    result = export(redis_client, out_dir=tmp_path / "second")
    assert result.rows["exposures"] == before[0][0] and result.rows["outcomes"] == before[1][0]


def test_a_check_that_cannot_read_the_export_says_its_data_are_incomplete(
    store, redis_client, clock, tmp_path
):
    """Exported rows in a directory the monitor does not read: fewer exposures than
    counted, so the data are incomplete and say what to fix."""
    Traffic(store, clock, experiment=KEY, seed=5).hour(80)
    assert read(MonitorReader(redis_client, None), store, clock).complete
    export(redis_client, out_dir=tmp_path / "elsewhere")
    data = read(MonitorReader(redis_client, tmp_path / "mine"), store, clock)
    assert not data.complete
    assert data.missing_units == store.exposure_counts(KEY).total
    assert "ABTEST_EXPORT_DIR" in data.incomplete_reason


def test_the_hourly_series_count_exposures_and_events(store, redis_client, clock):
    """Per hour and variant: new units; per hour, variant and metric: events and sums."""
    traffic = Traffic(store, clock, experiment=KEY, seed=6, error_rate=0.0)
    served = [traffic.hour(60), traffic.hour(90)]
    data = read(MonitorReader(redis_client, None), store, clock)
    by_hour = data.exposures_by_hour.groupby("hour")["units"].sum().tolist()
    assert by_hour == [sum(n for v, n in s.items() if v != "-") for s in served]
    events = data.events_by_hour
    assert set(events["metric"]) == {"latency_ms"}
    assert events["events"].sum() == sum(by_hour)
    assert (events["units"] == events["events"]).all()  # one latency event per unit


def test_a_malformed_entry_is_skipped_and_counted_the_others_read(store, redis_client, clock):
    """One entry the store would never write (no time): counted as malformed, as export
    quarantines it; every other row of its page is still read."""
    Traffic(store, clock, experiment=KEY, seed=7).hour(30)
    redis_client.xadd(keys.outcomes_stream(), {"event_id": "bad", "unit_id": "x", "metric": "m",
                                               "value": "1"})  # fmt: skip
    redis_client.xadd(keys.outcomes_stream(), {"event_id": "nan", "unit_id": "x", "metric": "m",
                                               "value": "nan", "timestamp": "1"})  # fmt: skip
    units, sums = truth(store, redis_client, skip={"bad", "nan"})
    data = read(MonitorReader(redis_client, None), store, clock)
    assert data.stats.malformed == 2
    got_units, got_sums = seen(data)
    assert got_units == units
    assert got_sums == pytest.approx(sums, rel=1e-12)
