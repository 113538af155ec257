"""The per-unit join and per-variant aggregation: every rule by a hand-computed case."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from abtest.errors import InvalidInput
from abtest.experiment import MetricType
from analysis.data.join import join_and_aggregate, parse_metric, quantile_level, source_metrics
from analysis.statistics.aggregates import PairedStats, SampleStats

T0 = pd.Timestamp("2024-05-01 10:00")


def exposures(*rows: tuple[str, str, float]) -> pd.DataFrame:
    """Exposures ``(unit, variant, hours after T0)`` of experiment ``exp``."""
    return pd.DataFrame({
        "unit_id": [r[0] for r in rows],
        "experiment": "exp",
        "variant": [r[1] for r in rows],
        "timestamp": [T0 + pd.Timedelta(hours=r[2]) for r in rows],
    })  # fmt: skip


def outcomes(*rows: tuple[str, str, str, float, float]) -> pd.DataFrame:
    """Outcomes ``(event_id, unit, metric, value, hours after T0)``."""
    return pd.DataFrame({
        "event_id": [r[0] for r in rows],
        "unit_id": [r[1] for r in rows],
        "metric": [r[2] for r in rows],
        "value": [float(r[3]) for r in rows],
        "timestamp": [T0 + pd.Timedelta(hours=r[4]) for r in rows],
    })  # fmt: skip


BASE = exposures(("a", "c", 0), ("b", "c", 1), ("c", "c", 2), ("x", "t", 0), ("y", "t", 0))


def agg_of(exp, out, spec, **kwargs):
    """The aggregates of one metric spec, without covariates unless asked."""
    kwargs.setdefault("covariate_window", None)
    return join_and_aggregate(exp, out, metrics=[parse_metric(spec)], **kwargs)


def test_zero_fill_keeps_units_without_outcomes():
    """Units with no events count as zero: n is every assigned unit."""
    agg = agg_of(BASE, outcomes(("1", "a", "buy", 1, 5)), "buy:binomial")
    assert agg.units == {"c": 3, "t": 2}
    assert agg.metrics["buy"].stats == {"c": SampleStats(3, 1.0, 1.0), "t": SampleStats(2, 0, 0)}


def test_pre_exposure_outcomes_are_ignored():
    """An event before the unit's first exposure does not count."""
    out = outcomes(("1", "b", "buy", 1, 0.5), ("2", "b", "buy", 1, 1.0), ("3", "c", "buy", 1, 1))
    agg = agg_of(BASE, out, "buy:count")
    # b: exposed at 1h, events at 0.5h (ignored) and 1h (counts: "at or after"); c: before.
    assert agg.metrics["buy"].stats["c"] == SampleStats(3, 1.0, 1.0)


def test_first_exposure_defines_variant_and_start():
    """Repeat exposures in the same variant keep the first one's start."""
    exp = exposures(("a", "c", 0), ("a", "c", 10), ("x", "t", 0), ("x", "t", 1))
    out = outcomes(("1", "a", "buy", 1, 5))
    agg = agg_of(exp, out, "buy:count")
    assert agg.units == {"c": 1, "t": 1}
    assert agg.metrics["buy"].stats["c"].sum == 1.0


def test_crossover_units_are_excluded_and_counted():
    """A unit seen in two variants leaves the analysis, with its events, and is counted."""
    exp = pd.concat([BASE, exposures(("a", "t", 3), ("z", "t", 0), ("z", "c", 1))])
    out = outcomes(("1", "a", "buy", 1, 5), ("2", "x", "buy", 1, 5))
    agg = agg_of(exp, out, "buy:binomial")
    assert agg.excluded_units == 2
    assert agg.units == {"c": 2, "t": 2}
    assert agg.total_units == 6
    assert agg.metrics["buy"].stats["c"] == SampleStats(2, 0.0, 0.0)
    assert agg.metrics["buy"].stats["t"] == SampleStats(2, 1.0, 1.0)


def test_duplicate_event_ids_count_once():
    """A retried event with the same id (even a later timestamp) counts once."""
    out = outcomes(("1", "a", "rev", 5, 1), ("1", "a", "rev", 5, 2), ("2", "a", "rev", 3, 1))
    agg = agg_of(BASE, out, "rev:sum")
    assert agg.metrics["rev"].stats["c"] == SampleStats(3, 8.0, 64.0)


def test_rows_of_one_event_id_at_one_time_keep_one_defined_row():
    """One id, one time, different contents (a client reusing ids): the smallest (unit,
    metric, value) is kept whatever order the rows arrive in, so runs and engines agree."""
    rows = [("1", "a", "rev", 5, 1), ("1", "a", "rev", 2, 1)]
    for order in (rows, rows[::-1]):
        agg = agg_of(BASE, outcomes(*order), "rev:sum")
        assert agg.metrics["rev"].stats["c"] == SampleStats(3, 2.0, 4.0)


def test_attribution_window():
    """Only events within the window after the first exposure count."""
    out = outcomes(("1", "a", "buy", 1, 23), ("2", "a", "buy", 1, 25), ("3", "b", "buy", 1, 24))
    agg = agg_of(BASE, out, "buy:count", attribution_window=timedelta(hours=24))
    # a: 23h counts, 25h does not; b (start 1h): 24h is 23h after its start and counts.
    assert agg.metrics["buy"].stats["c"] == SampleStats(3, 2.0, 2.0)


@pytest.mark.parametrize(
    ("spec", "control", "treatment"),
    [
        ("buy:binomial", SampleStats(3, 2, 2), SampleStats(2, 1, 1)),
        ("buy:count", SampleStats(3, 4, 10), SampleStats(2, 1, 1)),
        ("buy:sum", SampleStats(3, 11, 2**2 + 9**2 + 0), SampleStats(2, 7, 49)),
    ],
)
def test_mean_metric_types(spec, control, treatment):
    """binomial = had an event, count = events, sum = sum of values, per unit."""
    out = outcomes(
        ("1", "a", "buy", 1, 1), ("2", "a", "buy", 1, 2), ("3", "a", "buy", 1, 3),
        ("4", "b", "buy", 2, 4), ("5", "x", "buy", 7, 1), ("6", "a", "other", 100, 1),
    )  # fmt: skip
    out.loc[out["event_id"] == "3", "value"] = 7.0  # a: values 1, 1, 7 -> sum 9; b: 2
    agg = agg_of(BASE, out, spec)
    stats = agg.metrics["buy"].stats
    assert stats["c"] == control
    assert stats["t"] == treatment


def test_ratio_metric_pairs_numerator_and_denominator():
    """A ratio metric keeps per-unit (Σ num, Σ den), zero-filled on either side."""
    out = outcomes(
        ("1", "a", "clicks", 1, 1), ("2", "a", "clicks", 1, 1), ("3", "a", "searches", 1, 1),
        ("4", "b", "searches", 1, 2), ("5", "c", "clicks", 1, 3),
    )  # fmt: skip
    agg = agg_of(BASE, out, "clicks/searches:ratio")
    # (y, x) per control unit: a (2, 1), b (0, 1), c (1, 0).
    assert agg.metrics["clicks/searches"].stats["c"] == PairedStats(3, 3, 2, 5, 2, 2)
    assert agg.metrics["clicks/searches"].stats["t"] == PairedStats(2, 0, 0, 0, 0, 0)


def test_quantile_metric_keeps_event_values_with_their_units():
    """A quantile metric passes every counted event value and its unit's code."""
    out = outcomes(
        ("1", "a", "lat", 10, 1), ("2", "a", "lat", 30, 1), ("3", "b", "lat", 20, 2),
        ("4", "b", "lat", 99, 0),  # before b's exposure: ignored
        ("5", "x", "lat", 5, 1),
    )  # fmt: skip
    agg = agg_of(BASE, out, "lat:p90:quantile")
    sample = agg.metrics["lat:p90"].samples["c"]
    assert sorted(sample.values) == [10, 20, 30]
    assert sample.n_units == 2
    codes = dict(zip(sample.values, sample.units, strict=True))
    assert codes[10] == codes[30] != codes[20]
    assert list(agg.metrics["lat:p90"].samples["t"].values) == [5]


def test_cuped_covariate_from_pre_exposure_window():
    """The covariate is the same metric in the window before each unit's first exposure."""
    out = outcomes(
        ("1", "a", "buy", 1, -5), ("2", "a", "buy", 1, -30 * 24), ("3", "a", "buy", 1, 1),
        ("4", "b", "buy", 1, -1),
    )  # fmt: skip
    agg = agg_of(BASE, out, "buy:count", covariate_window=timedelta(days=14))
    # (y, x): a (1, 1) (the -30 day event is outside the window), b (0, 1), c (0, 0).
    assert agg.metrics["buy"].covariate["c"] == PairedStats(3, 1, 2, 1, 2, 1)
    assert agg.metrics["buy"].stats["c"] == SampleStats(3, 1, 1)


def test_supplied_covariate_table():
    """A covariate table replaces the pre-exposure window; missing units get 0."""
    out = outcomes(("1", "a", "buy", 1, 1))
    table = pd.DataFrame({"unit_id": ["a", "b", "zz"], "metric": "buy", "value": [3.0, 2.0, 9.0]})
    agg = agg_of(BASE, out, "buy:count", covariates=table)
    assert agg.metrics["buy"].covariate["c"] == PairedStats(3, 1, 5, 1, 13, 3)
    assert agg.metrics["buy"].covariate["t"] == PairedStats(2, 0, 0, 0, 0, 0)


def test_daily_looks_hold_units_whose_observation_window_closed():
    """Without an attribution window each look holds the units observed for 24 h, each with
    its first 24 h of events, entering on the day that window closed (if the data reach it)."""
    exp = exposures(("a", "c", 0), ("b", "c", 30), ("x", "t", 0), ("y", "t", 0))
    out = outcomes(("1", "a", "n", 2, 1), ("2", "a", "n", 3, 25), ("3", "b", "n", 4, 31),
                   ("4", "x", "n", 7, 80))  # fmt: skip
    agg = join_and_aggregate(exp, out, metrics=[parse_metric("n:sum")], covariate_window=None)
    assert agg.observation_window == timedelta(hours=24)
    days = agg.daily_stats("n")
    assert sorted(str(d) for d in days) == ["2024-05-02", "2024-05-03", "2024-05-04"]
    by_day = [days[d] for d in sorted(days)]
    assert by_day[0]["c"] == PairedStats(1, 2, 0, 4, 0, 0)  # a's event at 25 h is outside
    assert by_day[1]["c"] == PairedStats(2, 6, 0, 20, 0, 0)  # b = 4 joins when 54 h pass
    assert by_day[2]["c"] == by_day[1]["c"]
    assert by_day[2]["t"] == PairedStats(2, 0, 0, 0, 0, 0)  # x's event at 80 h is outside
    # The fixed-horizon aggregates still hold every unit with every event.
    assert agg.metrics["n"].stats["c"] == SampleStats(2, 9.0, 25.0 + 16.0)
    shorter = join_and_aggregate(
        exp, out[out["event_id"] != "4"], metrics=[parse_metric("n:sum")], covariate_window=None
    )
    # Data ending at 31 h: only a, x and y have been observed for a whole day.
    assert [arms["c"].n for _, arms in sorted(shorter.daily_stats("n").items())] == [1]
    per_day = agg.exposures_per_day
    assert per_day["units"].sum() == 4


def test_experiment_selection():
    """Several experiments need a choice; an unknown one is an error naming it."""
    exp = pd.concat([BASE, exposures(("q", "c", 0)).assign(experiment="other")])
    out = outcomes(("1", "a", "buy", 1, 1))
    with pytest.raises(InvalidInput, match="several experiments") as info:
        agg_of(exp, out, "buy:count")
    assert info.value.field == "experiment"
    assert agg_of(exp, out, "buy:count", experiment="other").units == {"c": 1}
    with pytest.raises(InvalidInput, match="'nope' has no exposures"):
        agg_of(exp, out, "buy:count", experiment="nope")


def test_a_metric_without_events_is_named_not_refused():
    """A metric with no events yet gives zero aggregates and is named; an event name that
    no metric reads is listed with its count."""
    out = outcomes(("1", "a", "clicks", 1, 1), ("2", "a", "serches", 1, 1),
                   ("3", "nobody", "other", 1, 1))  # fmt: skip
    spec = parse_metric("clicks/searches:ratio")
    agg = agg_of(BASE, out, "clicks/searches:ratio")
    assert agg.events_missing(spec) == ["searches"]
    assert agg.metric_events == {"clicks": 1}
    assert agg.metrics["clicks/searches"].stats["t"] == PairedStats(2, 0, 0, 0, 0, 0)
    assert agg.undefined_metrics == {"serches": 1}  # "other" is not from an exposed unit


def test_dropped_events_are_counted_by_reason():
    """Every deduplicated event is counted, a covariate, or dropped for one named reason."""
    exp = pd.concat([BASE, exposures(("a", "t", 3))])  # a becomes a crossover
    out = outcomes(
        ("1", "b", "buy", 1, 2),  # counted (b exposed at 1 h)
        ("1", "b", "buy", 1, 2.5),  # the same event again: a duplicate
        ("2", "b", "buy", 1, 0.5),  # 30 min before exposure: covariate
        ("3", "c", "buy", 1, -400),  # 402 h before exposure: before the 14-day pre-period
        ("4", "c", "buy", 1, 30),  # after the 24 h attribution window
        ("5", "zz", "buy", 1, 5),  # unit never exposed
        ("6", "a", "buy", 1, 5),  # crossover unit
        ("7", "x", "other", 1, 5),  # not an analysed metric: not counted here
    )
    agg = join_and_aggregate(exp, out, metrics=[parse_metric("buy:count")],
                             attribution_window=timedelta(hours=24))  # fmt: skip
    assert agg.events.to_dict() == {
        "total": 6, "counted": 1, "covariate": 1, "duplicates": 1,
        "dropped": {"unknown_unit": 1, "crossover_unit": 1, "before_exposure": 1,
                    "outside_window": 1},
        "dropped_share": 4 / 6,
    }  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["purchase", ":binomial", "purchase:mean", "a/b/c:ratio", "latency:quantile",
     "latency:p100:quantile", "bad name:sum"],
)  # fmt: skip
def test_parse_metric_rejects(text):
    """Malformed metric specs raise InvalidInput quoting the spec."""
    with pytest.raises(InvalidInput, match="metric"):
        parse_metric(text)


def test_parse_metric_accepts_each_type():
    """Each type parses; ratio and quantile names split into their source events."""
    assert parse_metric("clicks/searches:ratio").type is MetricType.RATIO
    assert source_metrics(parse_metric("clicks/searches:ratio")) == ("clicks", "searches")
    q = parse_metric("latency_ms:p95:quantile")
    assert source_metrics(q) == ("latency_ms",)
    assert quantile_level(q) == pytest.approx(0.95)


def pandas_reference(
    exp: pd.DataFrame,
    out: pd.DataFrame,
    window_h: float | None,
    *,
    matured_by: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
):
    """Straightforward pandas implementation of the join rules (the independent check).

    ``matured_by``: keep only units whose window closed by the end of that day and by
    ``end``, the end of the data.
    """
    first = (
        exp.sort_values("timestamp")
        .groupby("unit_id")
        .agg(
            variant=("variant", "first"), start=("timestamp", "first"), arms=("variant", "nunique")
        )
    )
    assigned = first[first["arms"] == 1]
    if matured_by is not None:
        assert window_h is not None
        closes = assigned["start"] + pd.Timedelta(hours=window_h)
        assigned = assigned[(closes.dt.normalize() <= matured_by) & (closes <= end)]
    events = out.sort_values("timestamp").drop_duplicates("event_id")
    joined = events.merge(assigned, left_on="unit_id", right_index=True)
    keep = joined["timestamp"] >= joined["start"]
    if window_h is not None:
        keep &= joined["timestamp"] < joined["start"] + pd.Timedelta(hours=window_h)
    joined = joined[keep]
    per_unit = joined.pivot_table(index="unit_id", columns="metric", values="value",
                                  aggfunc=["count", "sum"], fill_value=0)  # fmt: skip
    per_unit = per_unit.reindex(assigned.index, fill_value=0)
    values = {
        "buy:binomial": (per_unit[("count", "buy")] > 0).astype(float),
        "buy:count": per_unit[("count", "buy")].astype(float),
        "rev:sum": per_unit[("sum", "rev")].astype(float),
    }
    result = {}
    for spec, y in values.items():
        result[spec] = {v: SampleStats.from_values(y[assigned["variant"] == v].to_numpy())
                        for v in sorted(assigned["variant"].unique())}  # fmt: skip
    y = per_unit[("sum", "rev")].astype(float)
    x = per_unit[("sum", "buy")].astype(float)
    result["rev/buy:ratio"] = {
        v: PairedStats.from_values(y[m].to_numpy(), x[m].to_numpy())
        for v in sorted(assigned["variant"].unique())
        for m in [assigned["variant"] == v]
    }
    return result, int((first["arms"] > 1).sum())


def random_join_data(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exposures and outcomes with every trap: duplicates, crossovers, early events."""
    rng = np.random.default_rng(seed)
    n_units, n_exp, n_out = 300, 500, 1500
    unit = rng.integers(0, n_units, n_exp)
    arm = np.where(rng.random(n_units) < 0.5, "c", "t")[unit]
    arm = np.where(rng.random(n_exp) < 0.02, "u", arm)  # a few crossovers into a third arm
    exp = pd.DataFrame({
        "unit_id": [f"u{i}" for i in unit], "experiment": "exp", "variant": arm,
        "timestamp": T0 + pd.to_timedelta(rng.integers(0, 96 * 3600, n_exp), unit="s"),
    })  # fmt: skip
    event = rng.integers(0, n_out - 100, n_out)  # about 100 ids repeated
    out = pd.DataFrame({
        "event_id": [f"e{i}" for i in event],
        "unit_id": [f"u{i}" for i in rng.integers(0, n_units + 20, n_out)],
        "metric": rng.choice(["buy", "rev"], n_out),
        "value": rng.exponential(5, n_out).round(2),
        "timestamp": T0 + pd.to_timedelta(rng.integers(-24 * 3600, 120 * 3600, n_out), unit="s"),
    })  # fmt: skip
    # A repeated id is the same event (unit, metric, value), resent at another time.
    first = out.drop_duplicates("event_id").set_index("event_id")
    for column in ("unit_id", "metric", "value"):
        out[column] = first.loc[out["event_id"], column].to_numpy()
    return exp, out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("window_h", [None, 30.0])
def test_duckdb_agrees_with_pandas_reference(seed, window_h):
    """On random data with every trap (dups, crossovers, early events) both agree."""
    exp, out = random_join_data(seed)
    window = None if window_h is None else timedelta(hours=window_h)
    expected, crossed = pandas_reference(exp, out, window_h)
    # One name, one type per analysis: "buy" as a count needs a second run.
    for specs in (["buy:binomial", "rev:sum", "rev/buy:ratio"], ["buy:count"]):
        agg = join_and_aggregate(exp, out, metrics=[parse_metric(s) for s in specs],
                                 attribution_window=window, covariate_window=None)  # fmt: skip
        assert agg.excluded_units == crossed
        for spec in specs:
            _check_against(agg.metrics[spec.rpartition(":")[0]].stats, expected[spec])
    # The last look holds the units observed for their whole window (24 h without one).
    last, end = agg_daily_last(exp, out, window)
    matured, _ = pandas_reference(exp, out, window_h or 24.0, matured_by=end.normalize(), end=end)
    _check_against({v: p.y for v, p in last.items() if p.n}, matured["rev:sum"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_with_a_window_each_look_holds_the_units_whose_window_closed(seed):
    """Each day's look equals the reference over units whose window closed by that day's end."""
    exp, out = random_join_data(seed)
    window_h = 48.0  # units exposed in the last ~10 hours of exposures have not matured
    agg = join_and_aggregate(exp, out, metrics=[parse_metric("rev:sum")],
                             attribution_window=timedelta(hours=window_h),
                             covariate_window=None)  # fmt: skip
    looks = agg.daily_stats("rev")
    last_data_day = pd.Timestamp(agg.end).normalize()  # last exposure or counted outcome
    starts = exp.groupby("unit_id")["timestamp"].min() + pd.Timedelta(hours=window_h)
    first_look = starts.min().normalize()
    assert sorted(pd.Timestamp(d) for d in looks) == list(
        pd.date_range(first_look, last_data_day, freq="D")
    )
    grew = []
    for day, arms in looks.items():
        expected, _ = pandas_reference(exp, out, window_h, matured_by=pd.Timestamp(day),
                                       end=pd.Timestamp(agg.end))  # fmt: skip
        _check_against({v: p.y for v, p in arms.items() if p.n}, expected["rev:sum"])
        grew.append(sum(p.n for p in arms.values()))
    assert grew == sorted(grew) and grew[0] < grew[-1] < sum(agg.units.values())


def test_looks_do_not_drift_when_outcomes_arrive_late():
    """Conversions up to 3 days after exposure: every look estimates one fixed quantity, the
    30% of a 3-day attribution window or, without one, the 10% of the 24 h observation
    window (a look over each unit's events so far would start low and drift upwards)."""
    rng = np.random.default_rng(7)
    n = 20_000
    start = T0 + pd.to_timedelta(rng.uniform(0, 14 * 86400, n), unit="s")
    exp = pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "experiment": "exp",
                        "variant": rng.choice(["c", "t"], n), "timestamp": start})  # fmt: skip
    buyers = np.flatnonzero(rng.random(n) < 0.3)
    out = pd.DataFrame({
        "event_id": [f"e{i}" for i in buyers], "unit_id": [f"u{i}" for i in buyers],
        "metric": "buy", "value": 1.0,
        "timestamp": start[buyers] + pd.to_timedelta(rng.uniform(0, 3 * 86400, buyers.size),
                                                     unit="s"),
    })  # fmt: skip
    for window, rate in ((None, 0.1), (timedelta(days=3), 0.3)):
        agg = join_and_aggregate(exp, out, metrics=[parse_metric("buy:binomial")],
                                 attribution_window=window, covariate_window=None)  # fmt: skip
        looks = [(p.y.n, p.y.sum / p.y.n) for _, arms in sorted(agg.daily_stats("buy").items())
                 for p in [arms["c"]] if p.y.n >= 500]  # fmt: skip
        assert len(looks) >= 12
        for units, observed in looks:
            assert abs(observed - rate) < 4 * np.sqrt(rate * (1 - rate) / units)


def agg_daily_last(exp, out, window):
    """The last day's cumulative aggregates of rev:sum, and the end of the data."""
    agg = join_and_aggregate(exp, out, metrics=[parse_metric("rev:sum")],
                             attribution_window=window, covariate_window=None)  # fmt: skip
    days = agg.daily_stats("rev")
    return days[max(days)], pd.Timestamp(agg.end)


def _check_against(stats, expected):
    """Every moment equal to the reference's, per variant."""
    assert set(stats) == set(expected)
    for variant, reference in expected.items():
        got = stats[variant]
        assert got.n == reference.n
        for a, b in zip(vars(got).values(), vars(reference).values(), strict=True):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9)
