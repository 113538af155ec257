"""`analyze` on the real join path: the always-valid test's data, prior and plan; partial
data; dropped and undefined events."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from abtest.experiment import Experiment
from analysis import Verdict, analyze, analyze_experiment, minimum_detectable_effect_mean
from tests.strategies import experiment_data
from tests.test_analyze import T0, synthetic


def matured_estimate(exposures, outcomes, metric, window_h, attribution_h):
    """Independent pandas reference: the effect on units observed for ``window_h`` hours
    (window closed by the end of the data), each with its events in that window."""
    first = exposures.sort_values("timestamp").groupby("unit_id").first()
    events = outcomes.merge(first, left_on="unit_id", right_index=True)
    post = events["timestamp_x"] >= events["timestamp_y"]
    if attribution_h is not None:
        post &= events["timestamp_x"] < events["timestamp_y"] + pd.Timedelta(hours=attribution_h)
    end = max(first["timestamp"].max(), events.loc[post, "timestamp_x"].max())
    closes = first["timestamp"] + pd.Timedelta(hours=window_h)
    matured = first[closes <= end]
    inside = events[post & (events["timestamp_x"] < events["timestamp_y"]
                            + pd.Timedelta(hours=window_h))]  # fmt: skip
    inside = inside[(inside["metric"] == metric) & inside["unit_id"].isin(matured.index)]
    if metric == "buy":
        value = inside.groupby("unit_id").size().gt(0).astype(float)
    else:
        value = inside.groupby("unit_id")["value"].sum()
    value = value.reindex(matured.index, fill_value=0.0)
    means = value.groupby(matured["variant"]).mean()
    return means["treatment"] - means["control"]


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(experiment_data)
def test_the_sequential_interval_contains_its_estimate_on_its_own_data(data):
    """On random data, with and without an attribution window, every printed always-valid
    interval contains the estimate printed beside it, and that estimate is the effect on
    the units whose observation window has closed (computed independently)."""
    exposures, outcomes, window_h = data
    window = None if window_h is None else timedelta(hours=window_h)
    result = analyze(exposures, outcomes, metrics=["buy:binomial", "rev:sum"],
                     attribution_window=window, covariate_window=None,
                     rules=None)  # fmt: skip
    for row, body in zip(result.rows, result.to_dict()["metrics"], strict=True):
        if row.sequential is None:
            assert row.sequential_note or row.error
            continue
        lo, hi = row.sequential.ci
        assert lo <= row.sequential.estimate <= hi
        for look_lo, look_hi, e in zip(row.sequential.lower, row.sequential.upper,
                                       row.sequential.estimates, strict=True):  # fmt: skip
            assert look_lo <= e <= look_hi
        expected = matured_estimate(exposures, outcomes, row.metric, window_h or 24.0, window_h)
        assert row.sequential.estimate == pytest.approx(expected, rel=1e-9, abs=1e-12)
        printed = body["sequential"]
        assert printed["estimate"] == pytest.approx(row.sequential.estimate)
        if printed["ci"][0] is not None and printed["ci"][1] is not None:
            assert printed["ci"][0] <= printed["estimate"] <= printed["ci"][1]


def test_the_plan_fixes_the_prior_and_is_stored():
    """Planned units give the standardised MDE of the plan as τ; an MDE or a stated prior
    takes precedence; without any, 0.05 per-unit SD.  All recorded."""
    data = synthetic(n=2000, lift=0.2, seed=61)
    plan = analyze(*data, metrics=["purchase:binomial"], planned_units_per_variant=5000)
    scale = float(minimum_detectable_effect_mean(std=1.0, n_per_variant=5000).absolute)
    assert plan.settings.to_dict()["sequential_prior"] == pytest.approx(
        {"scale": scale, "unit": "sd", "source": "plan"})  # fmt: skip
    assert plan.rows[0].sequential.prior.scale == pytest.approx(scale)
    mde = analyze(*data, metrics=["purchase:binomial"], planned_units_per_variant=5000,
                  mde=0.2, relative_mde=True)  # fmt: skip
    assert mde.settings.sequential_prior.to_dict() == {"scale": 0.2, "unit": "relative",
                                                       "source": "mde"}  # fmt: skip
    stated = analyze(*data, metrics=["purchase:binomial"], mde=0.02, mixing_sd=0.1)
    assert stated.settings.sequential_prior.to_dict()["source"] == "mixing_sd"
    default = analyze(*data, metrics=["purchase:binomial"])
    assert default.settings.sequential_prior.to_dict() == {"scale": 0.05, "unit": "sd",
                                                           "source": "default"}  # fmt: skip


def test_an_absolute_mde_carries_over_as_a_standardised_effect():
    """An absolute MDE is τ for the primary metric and mde/s (s of the primary) for the
    others, so one stated number serves every metric."""
    data = synthetic(n=3000, lift=0.2, seed=62)
    res = analyze(*data, metrics=["purchase:binomial", "revenue:sum"], mde=0.02)
    primary, secondary = res.rows
    assert primary.sequential.prior.to_dict() == {"scale": 0.02, "unit": "absolute",
                                                  "source": "mde"}  # fmt: skip
    effect = primary.effect
    sd = effect.absolute_se / np.sqrt(1 / effect.n_control + 1 / effect.n_variant)
    assert secondary.sequential.prior.unit == "sd"
    assert secondary.sequential.prior.scale == pytest.approx(0.02 / sd)


def test_analyze_experiment_takes_the_plan_from_the_config_unless_overridden():
    """The config's planned units are the plan; an explicit setting overrides them."""
    data = synthetic(n=2000, seed=63)
    experiment = Experiment.from_dict({
        "key": "exp", "variants": [{"key": "control"}, {"key": "treatment"}],
        "primary_metric": {"name": "purchase", "type": "binomial"},
        "planned_units_per_variant": 4000,
    })  # fmt: skip
    assert analyze_experiment(experiment, *data).settings.planned_units_per_variant == 4000
    again = analyze_experiment(experiment, *data, planned_units_per_variant=900)
    assert again.settings.planned_units_per_variant == 900


def test_a_secondary_metric_without_events_is_a_row_not_a_refusal():
    """Day 1: a secondary metric has no events yet; its row says so and the verdict names it."""
    exposures, outcomes = synthetic(n=1000, seed=64)
    res = analyze(exposures, outcomes, metrics=["purchase:binomial", "refund:count"])
    refund = res.rows[1]
    assert refund.error == "no events yet" and refund.no_events
    assert refund.p_value is None and refund.sequential is None
    assert res.to_dict()["metrics"][1]["error"] == "no events yet"
    assert res.decision.verdict is not Verdict.INVALID
    assert res.decision.unread == ("refund (treatment): no events yet",)
    assert any("could not read: refund (treatment): no events yet" in r
               for r in res.decision.reasons)  # fmt: skip


def test_a_primary_metric_without_events_keeps_running():
    """No purchase yet on day 1 is not a data error: keep running, saying what is missing."""
    exposures, outcomes = synthetic(n=1000, seed=65)
    res = analyze(exposures, outcomes[outcomes["metric"] != "purchase"],
                  metrics=["purchase:binomial", "revenue/purchase:ratio"])  # fmt: skip
    assert [r.error for r in res.rows] == ["no events yet", "no events yet for 'purchase'"]
    assert res.decision.verdict is Verdict.KEEP_RUNNING
    assert any("purchase (treatment): no events yet" in r for r in res.decision.reasons)


def test_a_misspelled_metric_is_named_with_its_close_match():
    """Events sent as 'purchse' while the analysis reads 'purchase': the warning names the
    undefined event name and suggests the defined one."""
    exposures, outcomes = synthetic(n=1000, seed=66)
    outcomes = outcomes.assign(metric=outcomes["metric"].replace({"purchase": "purchse"}))
    res = analyze(exposures, outcomes, metrics=["purchase:binomial", "revenue:sum"])
    assert res.rows[0].error == "no events yet"
    assert res.undefined_metrics["purchse"] > 0
    assert res.to_dict()["undefined_metrics"] == dict(res.undefined_metrics)
    warning = next(w for w in res.decision.warnings if "no metric definition" in w)
    assert "'purchse'" in warning and "did you mean 'purchase'?" in warning
    assert "'latency_ms'" in warning and "'latency_ms' (" in warning


def test_dropped_outcome_events_are_counted_and_warned_about():
    """Exposures logged a minute after their outcomes (a late client) drop those outcomes
    as 'before exposure': the result counts them and the verdict warns with the reason."""
    exposures, outcomes = synthetic(n=2000, seed=67)
    start = outcomes["unit_id"].map(exposures.set_index("unit_id")["timestamp"])
    post = outcomes[outcomes["timestamp"] >= start]  # no pre-period history: only late logging
    late = exposures.assign(timestamp=exposures["timestamp"] + pd.Timedelta(hours=60))
    stray = post.head(40).assign(unit_id="ghost", event_id=lambda f: "g" + f["event_id"])
    res = analyze(late, pd.concat([post, stray]), metrics=["purchase:binomial"],
                  covariate_window=None)  # fmt: skip
    events = res.to_dict()["events"]
    assert events["dropped"]["before_exposure"] > 0.5 * events["total"]
    assert events["dropped"]["unknown_unit"] == (stray["metric"] == "purchase").sum()
    warning = next(w for w in res.decision.warnings if "outcome events" in w)
    assert "before the unit's first exposure" in warning
    assert "from units never exposed in this experiment" in warning
    clean = analyze(exposures, post, metrics=["purchase:binomial"], covariate_window=None)
    assert clean.events.dropped_share == 0
    assert not any("outcome events" in w for w in clean.decision.warnings)


def test_a_sequential_test_without_matured_units_says_why():
    """Data spanning a few hours: no unit has been observed for 24 h, so the always-valid
    test is left out with that reason, and nothing ships on the fixed-horizon p-value."""
    rng = np.random.default_rng(68)
    n = 4000
    start = T0 + pd.to_timedelta(rng.uniform(0, 3 * 3600, n), unit="s")
    treated = rng.random(n) < 0.5
    exposures = pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "experiment": "exp",
                              "variant": np.where(treated, "treatment", "control"),
                              "timestamp": start})  # fmt: skip
    buyers = np.flatnonzero(rng.random(n) < np.where(treated, 0.3, 0.1))
    outcomes = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in buyers],
            "unit_id": [f"u{i}" for i in buyers],
            "metric": "buy",
            "value": 1.0,
            "timestamp": start[buyers] + pd.Timedelta(minutes=5),
        }
    )
    res = analyze(exposures, outcomes, metrics=["buy:binomial"])
    row = res.rows[0]
    assert row.p_value < 1e-10
    assert row.sequential is None
    assert "24 h observation window" in row.sequential_note
    assert res.decision.verdict is Verdict.KEEP_RUNNING
    short = analyze(exposures, outcomes, metrics=["buy:binomial"],
                    observation_window=timedelta(minutes=30))  # fmt: skip
    assert short.rows[0].sequential is not None
    assert short.decision.verdict is Verdict.SHIP
    # Live data read a day later: every unit has been observed for its 24 h by then.
    as_of = (start.max() + pd.Timedelta(hours=24, seconds=1)).tz_localize("UTC")
    later = analyze(exposures, outcomes, metrics=["buy:binomial"], as_of=as_of)
    seq = later.rows[0].sequential
    assert seq.n_control[-1] + seq.n_variant[-1] == n
    assert later.settings.as_of == as_of.isoformat()
    assert later.decision.verdict is Verdict.SHIP
