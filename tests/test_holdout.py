"""The holdout's definition and its pure assignment rules; its analysis against a reference."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency
from statsmodels.stats.proportion import test_proportions_2indep as two_proportions

from abtest import Experiment, assign, assign_batch, hashing
from abtest.changes import moved_unit_problems
from abtest.errors import InvalidInput
from abtest.holdout import Holdout, HoldoutRef
from abtest.holdout_requests import HoldoutBody
from abtest.schemas import validate
from analysis.holdout import analyze_holdout

REF = {"name": "h1", "share": 0.1}


def _experiment(**changes: object) -> Experiment:
    config = {
        "key": "exp",
        "status": "running",
        "holdout": REF,
        "variants": [{"key": "control", "payload": 1}, {"key": "treatment", "payload": 2}],
    }
    return Experiment.from_dict({**config, **changes})  # fmt: skip


def test_definition_round_trips_and_a_bad_one_names_its_field():
    """The request body gives the definition; to_dict/from_dict (the stored form) is
    lossless; a bad body is refused naming the field, as every request body is."""
    body = {"name": "h", "share": 0.03, "covers": {"experiments": ["a", "a"], "layers": ["l"]}}
    holdout = validate(HoldoutBody, body).holdout()
    assert holdout == Holdout("h", 0.03, False, ("a",), ("l",))
    assert Holdout.from_dict(holdout.to_dict()) == holdout
    assert validate(HoldoutBody, {"name": "h", "share": 0.5}).holdout() == Holdout("h", 0.5)
    assert holdout.covers("a", None) and holdout.covers("z", "l") and not holdout.covers("z", "m")
    for bad, field in (({"name": "", "share": 0.1}, "name"), ({"name": "h", "share": 2}, "share"),
                       ({"name": "h", "share": 0.1, "covers": 7}, "covers"),
                       ({"name": "h", "share": 0.1, "extra": 1}, "extra")):  # fmt: skip
        with pytest.raises(InvalidInput) as raised:
            validate(HoldoutBody, bad)
        assert raised.value.field == field


def test_membership_is_its_own_draw_at_the_configured_share():
    """Members are the units whose holdout bucket is below floor(share * 2^32), about
    share of all, and independent of the variant draw (chi-square on the 2x2 table)."""
    ref = HoldoutRef("h1", 0.1)
    ids = [f"u{i}" for i in range(20_000)]
    members = hashing.buckets("holdout", "h1", ids) < hashing.threshold(0.1)
    assert [ref.contains(u) for u in ids[:500]] == members[:500].tolist()
    assert abs(members.mean() - 0.1) < 0.01
    experiment = _experiment(holdout=None)
    treated = np.array(assign_batch(experiment, ids).variants()) == "treatment"
    table = [[np.sum(members & treated), np.sum(members & ~treated)],
             [np.sum(~members & treated), np.sum(~members & ~treated)]]  # fmt: skip
    assert chi2_contingency(table).pvalue > 0.001


@pytest.mark.parametrize("status", ["running", "shipped"])
def test_members_get_control_and_the_rest_is_untouched(status):
    """Running: members get control (reason holdout), everyone else the variant they had
    without a holdout.  Shipped: members get control, everyone else the winner."""
    changes = {"status": status, "winner": "treatment" if status == "shipped" else None}
    held, free = _experiment(**changes), _experiment(holdout=None, **changes)
    ids = [f"u{i}" for i in range(3000)]
    batch = assign_batch(held, ids)
    for unit, variant, reason in zip(ids, batch.variants(), batch.reasons(), strict=True):
        single = assign(held, unit)
        assert (single.variant, single.reason) == (variant, reason)
        if HoldoutRef("h1", 0.1).contains(unit):
            assert (variant, reason.value, single.payload) == ("control", "holdout", 1)
        else:
            assert (variant, reason) == (assign(free, unit).variant, assign(free, unit).reason)


def test_eligibility_comes_before_the_holdout_while_running():
    """A member outside the targeting or the traffic keeps that reason, so members are the
    same kind of units as the others; a draft ignores the holdout."""
    rule = [{"attribute": "country", "op": "eq", "value": "DE"}]
    experiment = _experiment(targeting=rule, traffic=0.5)
    members = [u for u in (f"u{i}" for i in range(2000)) if HoldoutRef("h1", 0.1).contains(u)]
    reasons = {assign(experiment, u, {"country": "FR"}).reason.value for u in members}
    assert reasons == {"not_targeted"}
    reasons = {assign(experiment, u, {"country": "DE"}).reason.value for u in members}
    assert reasons == {"holdout", "not_in_traffic"}
    assert assign(_experiment(status="draft"), members[0]).reason.value == "not_running"


def test_new_members_of_assigned_units_are_a_moved_unit_problem():
    """A new holdout, another name or a larger share moves assigned units; a smaller share
    or a release does not."""
    none, small = _experiment(holdout=None), _experiment()
    assert [p.field for p in moved_unit_problems(none, small)] == ["holdout"]
    larger = _experiment(holdout={"name": "h1", "share": 0.2})
    renamed = _experiment(holdout={"name": "h2", "share": 0.1})
    assert moved_unit_problems(small, larger) and moved_unit_problems(small, renamed)
    assert not moved_unit_problems(larger, small) and not moved_unit_problems(small, none)


def _log_and_events(seed: int = 5, n: int = 6000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    units = np.array([f"u{i}" for i in range(n)])
    member = rng.random(n) < 0.1
    start = pd.Timestamp("2025-01-01", tz="UTC")
    first = start + pd.to_timedelta(rng.uniform(0, 10 * 86400, n), unit="s")
    again = min(n, 1000)  # these units met a second experiment a day later
    log = pd.DataFrame({
        "unit_id": np.concatenate([units, units[:again]]),
        "experiment": ["a"] * n + ["b"] * again, "holdout": "h1",
        "in_holdout": np.concatenate([member, member[:again]]),
        "timestamp": np.concatenate([first, first[:again] + pd.Timedelta(days=1)]),
    })  # fmt: skip
    converted = rng.random(n) < np.where(member, 0.2, 0.25)
    before = rng.random(n) < 0.5  # an event long before the first contact, never counted
    events = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(2 * n)], "unit_id": np.concatenate([units, units]),
        "metric": np.where(np.concatenate([converted, before]), "buy", "other"),
        "value": 1.0,
        "timestamp": np.concatenate([first + pd.Timedelta(hours=2), first - pd.Timedelta(days=20)]),
    })  # fmt: skip
    return log, events


def test_the_effect_matches_a_hand_computed_reference():
    """Means, effect and p-value equal a pandas computation and statsmodels' Wald test over
    units first met in the period, counting only events from their first contact on."""
    log, events = _log_and_events()
    start, end = datetime(2025, 1, 3), datetime(2025, 1, 9)
    result = analyze_holdout(log, events, metrics=["buy:binomial"], share=0.1, start=start,
                             end=end)  # fmt: skip
    first = log.groupby("unit_id").agg(t=("timestamp", "min"), m=("in_holdout", "first"))
    first["t"] = first["t"].dt.tz_localize(None)
    first = first[(first["t"] >= start) & (first["t"] < end)]
    ev = events[events["metric"] == "buy"].copy()
    ev["timestamp"] = ev["timestamp"].dt.tz_localize(None)
    ev = ev.join(first, on="unit_id", how="inner")
    ev = ev[(ev["timestamp"] >= ev["t"]) & (ev["timestamp"] < end)]
    first["buy"] = first.index.isin(ev["unit_id"])
    groups = first.groupby("m")["buy"].agg(["sum", "count"])
    (row,) = result.rows
    assert result.units == {
        "holdout": groups.loc[True, "count"],
        "rest": groups.loc[False, "count"],
    }
    assert row.control_mean == pytest.approx(groups.loc[True, "sum"] / groups.loc[True, "count"])
    assert row.variant_mean == pytest.approx(groups.loc[False, "sum"] / groups.loc[False, "count"])
    reference = two_proportions(
        groups.loc[False, "sum"], groups.loc[False, "count"], groups.loc[True, "sum"],
        groups.loc[True, "count"], method="wald", compare="diff", correction=False,
    )  # fmt: skip
    assert row.cuped is None  # no event in the 14 days before a first contact
    assert row.p_value == pytest.approx(reference.pvalue, rel=1e-6)
    assert result.srm.ok and row.role == "metric"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"share": 0}, "share"),
        ({"share": 0.1, "holdout": "other"}, "holdout"),
        ({"share": 0.1, "start": datetime(2030, 1, 1)}, "start"),
        ({"share": 0.1, "start": datetime(2025, 2, 1), "end": datetime(2025, 1, 1)}, "end"),
    ],
)
def test_bad_analysis_settings_name_their_field(kwargs, field):
    """A bad share, an unknown holdout, an empty period or a reversed one."""
    log, events = _log_and_events(n=500)
    with pytest.raises(InvalidInput) as raised:
        analyze_holdout(log, events, metrics=["buy:binomial"], **kwargs)
    assert raised.value.field == field
