"""Assignment reasons, overrides, shipping, layers, ramping and the batch form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest import Experiment, Reason, assign, assign_batch
from tests import strategies


def experiment(**fields: object) -> Experiment:
    """A running two-variant experiment with fields replaced."""
    config = {
        "key": "exp",
        "status": "running",
        "variants": [
            {"key": "control", "weight": 1, "payload": {"model": "v1"}},
            {"key": "treatment", "weight": 1, "payload": {"model": "v2"}},
        ],
    }
    return Experiment.from_dict({**config, **fields})


def test_assigned_units_get_the_variant_payload():
    """An assigned unit gets its variant's payload and counts as in the experiment."""
    result = assign(experiment(), "user-1")
    assert result.reason is Reason.ASSIGNED and result.in_experiment
    assert result.payload == {"model": "v1" if result.variant == "control" else "v2"}


def test_assignment_is_deterministic_across_rebuilt_experiments():
    """The same unit gets the same variant from an equal experiment built again."""
    ids = [f"user-{i}" for i in range(2_000)]
    first = [assign(experiment(), uid).variant for uid in ids]
    assert first == [assign(experiment(), uid).variant for uid in ids]


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_not_running_gives_no_variant(status):
    """Draft and stopped experiments assign nobody."""
    result = assign(experiment(status=status), "user-1")
    assert (result.variant, result.reason, result.in_experiment) == (
        None,
        Reason.NOT_RUNNING,
        False,
    )


def test_shipped_gives_everyone_the_winner_without_exposure():
    """After shipping, every unit gets the winner and none counts as an exposure."""
    shipped = experiment(status="shipped", winner="treatment", traffic=0.1)
    results = [assign(shipped, f"user-{i}", {}) for i in range(1_000)]
    assert {(r.variant, r.reason) for r in results} == {("treatment", Reason.SHIPPED)}
    assert not any(r.in_experiment for r in results)
    assert results[0].payload == {"model": "v2"}


@pytest.mark.parametrize("status", ["draft", "running", "stopped", "shipped"])
def test_overrides_win_in_every_status(status):
    """A forced unit gets its variant whatever the status, targeting or traffic."""
    winner = "control" if status == "shipped" else None
    forced = experiment(
        status=status,
        winner=winner,
        overrides={"qa-alice": "treatment"},
        targeting=[{"attribute": "country", "op": "eq", "value": "DE"}],
        traffic=0.01,
    )
    result = assign(forced, "qa-alice", {"country": "US"})
    assert (result.variant, result.reason, result.in_experiment) == (
        "treatment",
        Reason.FORCED,
        False,
    )


def test_targeting_excludes_before_any_draw():
    """A unit failing a rule (or missing the attribute) is not_targeted."""
    targeted = experiment(targeting=[{"attribute": "country", "op": "in", "value": ["DE"]}])
    assert assign(targeted, "u", {"country": "FR"}).reason is Reason.NOT_TARGETED
    assert assign(targeted, "u").reason is Reason.NOT_TARGETED
    assert assign(targeted, "u", {"country": "DE"}).reason is Reason.ASSIGNED


def test_traffic_allocation_admits_the_configured_share():
    """About `traffic` of the units enter; the rest are not_in_traffic."""
    batch = assign_batch(experiment(traffic=0.3), [f"user-{i}" for i in range(100_000)])
    share = np.mean(batch.variant_index >= 0)
    assert abs(share - 0.3) < 0.01
    assert set(batch.reasons()) == {Reason.ASSIGNED, Reason.NOT_IN_TRAFFIC}


def test_layer_experiments_are_mutually_exclusive_and_cover_their_share():
    """Two experiments with disjoint ranges of one layer never share a unit."""
    ids = [f"user-{i}" for i in range(100_000)]
    left = assign_batch(experiment(key="left", layer={"name": "l", "range": [0, 0.3]}), ids)
    right = assign_batch(experiment(key="right", layer={"name": "l", "range": [0.3, 1]}), ids)
    in_left, in_right = left.variant_index >= 0, right.variant_index >= 0
    assert not np.any(in_left & in_right)
    assert np.all(in_left | in_right)  # the ranges cover the layer
    assert abs(in_left.mean() - 0.3) < 0.01
    assert Reason.LAYER_EXCLUDED in set(left.reasons())


def test_experiments_in_different_layers_overlap_independently():
    """Being in one layer's experiment says nothing about another layer's."""
    ids = [f"user-{i}" for i in range(100_000)]
    a = assign_batch(experiment(key="a", layer={"name": "l1", "range": [0, 0.5]}), ids)
    b = assign_batch(experiment(key="b", layer={"name": "l2", "range": [0, 0.5]}), ids)
    both = np.mean((a.variant_index >= 0) & (b.variant_index >= 0))
    assert abs(both - 0.25) < 0.01


@settings(max_examples=60, deadline=None)
@given(
    low=strategies.traffic_fractions,
    high=strategies.traffic_fractions,
    seed=strategies.slugs,
    ids=st.lists(strategies.unit_ids, min_size=1, max_size=50, unique=True),
)
def test_ramping_up_never_moves_or_drops_an_included_unit(low, high, seed, ids):
    """Raising traffic keeps every included unit in, in the same variant."""
    low, high = sorted((low, high))
    before = [assign(experiment(seed=seed, traffic=low), uid) for uid in ids]
    after = [assign(experiment(seed=seed, traffic=high), uid) for uid in ids]
    for old, new in zip(before, after, strict=True):
        if old.in_experiment:
            assert new.in_experiment and new.variant == old.variant


def test_ramping_moves_units_only_from_out_to_in():
    """Between 10% and 50% traffic, included units stay and their split stays uniform."""
    ids = [f"user-{i}" for i in range(50_000)]
    low = assign_batch(experiment(traffic=0.1), ids).variant_index
    high = assign_batch(experiment(traffic=0.5), ids).variant_index
    kept = low >= 0
    assert np.array_equal(low[kept], high[kept])


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(strategies.unit_ids, min_size=1, max_size=40),
    traffic=strategies.traffic_fractions,
    country=st.sampled_from(["DE", "FR", None]),
)
def test_batch_agrees_with_single(ids, traffic, country):
    """assign_batch gives the same variant and reason as assign, unit by unit."""
    exp = experiment(
        traffic=traffic,
        layer={"name": "l", "range": [0.1, 0.9]},
        targeting=[{"attribute": "country", "op": "ne", "value": "FR"}],
        overrides={ids[0]: "treatment"},
    )
    attrs = [{} if country is None else {"country": country}] * len(ids)
    batch = assign_batch(exp, ids, attrs)
    singles = [assign(exp, uid, a) for uid, a in zip(ids, attrs, strict=True)]
    assert batch.variants() == [s.variant for s in singles]
    assert batch.reasons() == [s.reason for s in singles]


@pytest.mark.parametrize(
    ("status", "winner", "reason"),
    [("draft", None, Reason.NOT_RUNNING), ("shipped", "control", Reason.SHIPPED)],
)
def test_batch_fixed_outcomes(status, winner, reason):
    """Batch assignment of a not-running or shipped experiment gives one fixed outcome."""
    batch = assign_batch(experiment(status=status, winner=winner), ["a", "b"])
    assert batch.reasons() == [reason, reason]
    assert batch.variants() == [winner, winner]


def test_batch_requires_one_attribute_mapping_per_unit():
    """Mismatched attribute lists are refused rather than silently misaligned."""
    with pytest.raises(ValueError, match="one mapping per unit"):
        assign_batch(experiment(), ["a", "b"], [{}])


def test_result_is_immutable_and_serialisable():
    """Assignments are frozen and to_dict gives the documented fields."""
    result = assign(experiment(), "user-1")
    with pytest.raises(AttributeError):
        result.variant = "x"  # type: ignore[misc]
    assert set(result.to_dict()) == {"experiment", "variant", "payload", "in_experiment", "reason"}
