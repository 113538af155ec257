"""analysis.planning.sensitivity: pre-period baselines and variances, MDE by duration, capping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abtest.errors import InvalidInput
from analysis import (
    capping_sensitivity,
    metric_summary,
    minimum_detectable_effect_mean,
    minimum_detectable_effect_proportion,
    per_unit_frame,
    ratio_metric_variance,
    sensitivity_by_duration,
    winsorize,
)
from tests import strategies as s


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """28 days of 20,000 users: conversion, heavy-tailed revenue, sessions and clicks."""
    rng = np.random.default_rng(2024)
    n = 20_000
    converted = rng.binomial(1, 0.08, n)
    sessions = rng.poisson(3.0, n) + 1
    return pd.DataFrame(
        {
            "converted": converted,
            "revenue": converted * rng.lognormal(3.0, 1.6, n),
            "sessions": sessions,
            "clicks": rng.binomial(sessions, 0.25),
            "country": rng.choice(["DE", "FR"], n),
        }
    )


def test_summary_estimates_baseline_and_std(history):
    """Binary columns are proportions, others means (ddof 1), ratios use the delta method."""
    summary = metric_summary(history, ratios={"ctr": ("clicks", "sessions")}).set_index("metric")
    assert list(summary.index) == ["converted", "revenue", "ctr"]  # text column skipped
    p = history["converted"].mean()
    assert summary.loc["converted", "kind"] == "proportion"
    assert summary.loc["converted", "std"] == pytest.approx(np.sqrt(p * (1 - p)))
    assert summary.loc["revenue", "std"] == pytest.approx(history["revenue"].std(ddof=1))
    y, x = history["clicks"], history["sessions"]
    expected = ratio_metric_variance(
        mean_numerator=y.mean(),
        mean_denominator=x.mean(),
        var_numerator=y.var(),
        var_denominator=x.var(),
        covariance=y.cov(x),
    )
    assert summary.loc["ctr", "kind"] == "ratio"
    assert summary.loc["ctr", "baseline"] == pytest.approx(y.mean() / x.mean())
    assert summary.loc["ctr", "std"] == pytest.approx(np.sqrt(float(expected)))
    assert (summary["n_units"] == len(history)).all()


def test_sensitivity_matches_the_mde_functions(history):
    """Each row is the MDE function at n = days x daily units / 2 (daily units from history)."""
    table = sensitivity_by_duration(
        history, period_days=28, metrics=["converted", "revenue"], alpha=0.05, power=0.8
    )
    assert len(table) == 8
    daily = len(history) / 28
    row = table[(table["metric"] == "converted") & (table["days"] == 14)].iloc[0]
    n = int(np.floor(14 * daily / 2))
    assert row["n_per_variant"] == n
    expected = minimum_detectable_effect_proportion(
        baseline=history["converted"].mean(), n_per_variant=n
    )
    assert row["mde_absolute"] == pytest.approx(float(expected.absolute))
    revenue = table[table["metric"] == "revenue"]
    expected_rev = minimum_detectable_effect_mean(
        std=history["revenue"].std(),
        baseline=history["revenue"].mean(),
        n_per_variant=revenue["n_per_variant"].to_numpy(),
    )
    assert np.allclose(revenue["mde_relative"], expected_rev.relative)
    assert np.all(np.diff(revenue["mde_absolute"]) < 0)  # longer tests detect smaller effects


def test_revenue_is_flagged_by_its_relative_mde(history):
    """Heavy-tailed revenue has a far larger relative MDE than conversion at equal n."""
    table = sensitivity_by_duration(
        history, daily_units=1000, days=[28], metrics=["converted", "revenue"]
    )
    by_metric = table.set_index("metric")["mde_relative"]
    assert by_metric["revenue"] > 1.2 * by_metric["converted"]


def test_capping_shrinks_the_mde_of_a_heavy_tailed_metric(history):
    """Winsorizing revenue lowers its std and relative MDE, more so at lower percentiles."""
    table = capping_sensitivity(
        history["revenue"], n_per_variant=10_000, percentiles=[None, 99.9, 99.0]
    )
    assert np.isnan(table["percentile"].iloc[0])
    assert table["std"].iloc[0] == pytest.approx(history["revenue"].std())
    assert np.all(np.diff(table["std"]) < 0)
    assert np.all(np.diff(table["mde_relative"]) < 0)
    capped = winsorize(history["revenue"], percentile=99.0)
    assert table["cap"].iloc[2] == pytest.approx(np.percentile(history["revenue"], 99.0))
    assert table["mean"].iloc[2] == pytest.approx(capped.mean())
    assert table["share_capped"].iloc[2] == pytest.approx(0.01, abs=0.002)


def test_winsorize_caps_without_mutating():
    """Values above the percentile become the percentile; the input array is unchanged."""
    values = np.array([5.0, 1.0, 2.0, 3.0, 100.0])
    capped = winsorize(values, percentile=75)
    assert capped.tolist() == [5.0, 1.0, 2.0, 3.0, 5.0]
    assert values[-1] == 100.0
    both = winsorize(values, percentile=75, lower_percentile=25)
    assert both.min() == 2.0


def test_per_unit_frame_from_exported_outcomes():
    """Outcome events become per-unit totals; listed units without events get zeros."""
    outcomes = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4"],
            "unit_id": ["u1", "u1", "u2", "u2"],
            "metric": ["purchase", "revenue", "revenue", "revenue"],
            "value": [None, 10.0, 2.5, 4.0],
        }
    )
    frame = per_unit_frame(outcomes, units=["u1", "u2", "u3"])
    assert frame.loc["u1", "purchase"] == 1.0  # a null value counts 1
    assert frame.loc["u2", "revenue"] == 6.5
    assert frame.loc["u3"].tolist() == [0.0, 0.0]
    summary = metric_summary(frame).set_index("metric")
    assert summary.loc["purchase", "kind"] == "proportion"
    assert summary.loc["revenue", "baseline"] == pytest.approx(16.5 / 3)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda f: metric_summary(f, metrics=["missing"]), "metrics"),
        (lambda f: metric_summary(f, metrics=["country"]), "metrics"),
        (lambda f: metric_summary(f[["country"]]), "metrics"),
        (lambda f: metric_summary(f, ratios={"r": ("clicks", "nope")}), "metrics"),
        (sensitivity_by_duration, "daily_units"),
        (lambda f: sensitivity_by_duration(f, period_days=0), "daily_units"),
        (lambda f: sensitivity_by_duration(f, daily_units=1, days=[1]), "days"),
        (lambda f: sensitivity_by_duration(f, daily_units=100, alpha=0.9), "alpha"),
        (lambda f: winsorize(f["revenue"], percentile=0), "percentile"),
        (lambda f: winsorize(f["revenue"], percentile=101), "percentile"),
        (lambda f: winsorize(f["revenue"], percentile=90, lower_percentile=95), "lower_percentile"),
        (lambda _: winsorize([], percentile=90), "values"),
        (per_unit_frame, "outcomes"),
    ],
)
def test_invalid_inputs_raise_invalid_input(history, call, field):
    """Bad frames and options raise InvalidInput naming the argument."""
    with pytest.raises(InvalidInput) as info:
        call(history)
    assert info.value.field == field


@settings(max_examples=60, deadline=None)
@given(values=s.revenue_samples, percentile=st.floats(min_value=50.0, max_value=100.0))
def test_winsorizing_never_increases_spread(values, percentile):
    """Capping is 1-Lipschitz and monotone: max, std and order never get worse."""
    y = np.array(values)
    capped = winsorize(y, percentile=percentile)
    assert capped.max() <= y.max()
    assert capped.std() <= y.std() * (1 + 1e-9) + 1e-9
    assert np.all(capped <= y)
    order = np.argsort(y, kind="stable")
    assert np.all(np.diff(capped[order]) >= 0)  # monotone: the ranking of units is kept
