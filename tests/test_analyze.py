"""`analysis.analyze`: the JSON contract, agreement with statsmodels/scipy, and bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abtest.errors import InvalidInput
from abtest.experiment import Experiment
from analysis import analyze, analyze_experiment

T0 = pd.Timestamp("2024-06-01")


def synthetic(
    *,
    n: int = 4000,
    lift: float = 0.0,
    seed: int = 0,
    days: int = 7,
    base: float = 0.1,
    latency_harm: float = 0.0,
    treatment_share: float = 0.5,
    variants: tuple[str, str] = ("control", "treatment"),
    experiment: str = "exp",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded exposures and outcomes of a model A/B test, in the export schema.

    Each unit has an activity level that drives both its pre-exposure purchases (the
    CUPED covariate) and its conversion; treatment multiplies conversion and revenue by
    ``1 + lift`` and latency by ``1 + latency_harm``.
    """
    rng = np.random.default_rng(seed)
    unit = np.array([f"u{i}" for i in range(n)])
    treated = rng.random(n) < treatment_share
    start = T0 + pd.to_timedelta(rng.integers(0, days * 86_400, n), unit="s")
    exposures = pd.DataFrame({"unit_id": unit, "experiment": experiment,
                              "variant": np.where(treated, variants[1], variants[0]),
                              "timestamp": start, "config_version": 1})  # fmt: skip
    activity = rng.gamma(2.0, 0.5, n)
    converted = rng.random(n) < np.clip(base * activity * (1 + lift * treated), 0, 1)
    pre = rng.poisson(activity)
    latency = rng.random(n) < 0.8
    parts = []
    for metric, who, count, offset, value in (
        ("purchase", converted, 1, (0.0, 48.0), lambda t: np.ones(t.size)),
        ("revenue", converted, 1, (0.0, 48.0),
         lambda t: rng.exponential(30.0, t.size) * (1 + lift * t)),
        ("purchase", np.ones(n, bool), pre, (-240.0, -1.0), lambda t: np.ones(t.size)),
        ("latency_ms", latency, 2, (0.0, 24.0),
         lambda t: rng.lognormal(5.0, 0.3, t.size) * (1 + latency_harm * t)),
    ):  # fmt: skip
        idx = np.repeat(np.flatnonzero(who), np.broadcast_to(count, n)[who])
        hours = rng.uniform(*offset, idx.size)
        parts.append(pd.DataFrame({
            "unit_id": unit[idx], "metric": metric, "value": value(treated[idx]),
            "timestamp": start[idx] + pd.to_timedelta(hours, unit="h"),
        }))  # fmt: skip
    outcomes = pd.concat(parts, ignore_index=True)
    outcomes.insert(0, "event_id", [f"e{i}" for i in range(len(outcomes))])
    return exposures, outcomes


@pytest.fixture(scope="module")
def data():
    """A 4,000-unit test with a 20% lift on conversion and revenue."""
    return synthetic(n=4000, lift=0.2, seed=11)


@pytest.fixture(scope="module")
def result(data):
    """The analysis of `data` with a secondary, a ratio and a quantile guardrail."""
    exposures, outcomes = data
    return analyze(exposures, outcomes,
                   metrics=["purchase:binomial", "revenue:sum", "revenue/purchase:ratio"],
                   guardrails=["latency_ms:p95:quantile"], n_boot=200)  # fmt: skip


def per_unit(exposures, outcomes, metric, how):
    """Independent per-unit values (zero-filled) with pandas, post-exposure only."""
    joined = outcomes[outcomes["metric"] == metric].merge(exposures, on="unit_id")
    joined = joined[joined["timestamp_x"] >= joined["timestamp_y"]]
    values = joined.groupby("unit_id")["value"].agg(how)
    frame = exposures.set_index("unit_id")
    return frame["variant"], values.reindex(frame.index, fill_value=0).astype(float)


def test_json_contract(result):
    """to_dict() holds every field of the documented JSON, and is strict JSON."""
    body = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert body["control"] == "control"
    assert [v["variant"] for v in body["variants"]] == ["control", "treatment"]
    assert sum(v["units"] for v in body["variants"]) == 4000
    assert body["excluded_units"] == 0
    assert set(body["srm"]) >= {"p_value", "ok"}
    assert set(body["decision"]) >= {"verdict", "variant", "reasons"}
    required = {"metric", "type", "variant", "n_control", "n_variant", "control_mean",
                "variant_mean", "absolute_effect", "absolute_ci", "relative_effect",
                "relative_ci", "p_value", "adjusted_p_value", "significant"}  # fmt: skip
    rows = {row["metric"]: row for row in body["metrics"]}
    for row in rows.values():
        assert required <= set(row)
        lo, hi = row["absolute_ci"]
        assert lo <= row["absolute_effect"] <= hi
    assert set(rows["purchase"]) >= {"cuped", "sequential", "bayesian"}
    sequential = rows["purchase"]["sequential"]
    assert set(sequential) == {"estimate", "p_value", "p_greater", "p_less", "ci", "n_control",
                               "n_variant", "alpha", "tau2", "prior", "note", "reject"}  # fmt: skip
    assert sequential["ci"][0] <= sequential["estimate"] <= sequential["ci"][1]
    assert set(body["events"]) == {"total", "counted", "covariate", "duplicates", "dropped",
                                   "dropped_share"}  # fmt: skip
    assert set(body["settings"]) >= {"planned_units_per_variant", "mde", "relative_mde",
                                     "mixing_sd", "observation_window_hours",
                                     "sequential_prior"}  # fmt: skip
    assert set(rows["purchase"]["bayesian"]) == {"chance_to_beat_control", "expected_loss"}
    assert "non_inferiority" in rows["latency_ms:p95"]
    assert "bayesian" not in rows["revenue/purchase"]


def test_result_is_immutable_and_summarised(result):
    """The result is frozen; summary() has one snake_case row per metric and variant."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.control = "x"
    frame = result.summary()
    assert list(frame["metric"]) == ["purchase", "revenue", "revenue/purchase", "latency_ms:p95"]
    assert {"absolute_ci_low", "relative_ci_high", "adjusted_p_value",
            "always_valid_p_value"} <= set(frame.columns)  # fmt: skip
    # Every effect column names its scale: no bare CI beside a relative effect.
    for column in frame.columns:
        if "ci_" in column or column.endswith("effect") or column.endswith("estimate"):
            assert column.startswith(("absolute_", "relative_", "always_valid_")), column
    row = frame.iloc[0]
    assert row["relative_ci_low"] <= row["relative_effect"] <= row["relative_ci_high"]
    assert row["absolute_ci_low"] <= row["absolute_effect"] <= row["absolute_ci_high"]


def test_mean_metric_matches_statsmodels(data):
    """revenue:sum equals statsmodels' unequal-variance z test on per-unit values."""
    exposures, outcomes = data
    res = analyze(exposures, outcomes, metrics=["revenue:sum"], covariate_window=None)
    variant, y = per_unit(exposures, outcomes, "revenue", "sum")
    c, t = y[variant == "control"].to_numpy(), y[variant == "treatment"].to_numpy()
    compare = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    _, p = compare.ztest_ind(usevar="unequal")
    lo, hi = compare.zconfint_diff(usevar="unequal")
    row = res.rows[0]
    assert row.absolute_effect == pytest.approx(t.mean() - c.mean(), rel=1e-12)
    assert row.p_value == pytest.approx(p, rel=1e-9)
    assert row.effect.absolute_ci == pytest.approx((lo, hi), rel=1e-9)


def test_binomial_matches_statsmodels(data):
    """purchase:binomial agrees with the unpooled Wald test of statsmodels."""
    from statsmodels.stats.proportion import test_proportions_2indep

    exposures, outcomes = data
    res = analyze(exposures, outcomes, metrics=["purchase:binomial"], covariate_window=None)
    variant, y = per_unit(exposures, outcomes, "purchase", "count")
    conv = y > 0
    ref = test_proportions_2indep(
        conv[variant == "treatment"].sum(), (variant == "treatment").sum(),
        conv[variant == "control"].sum(), (variant == "control").sum(), method="wald",
    )  # fmt: skip
    assert res.rows[0].p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_holm_and_srm_match_references(result):
    """Adjusted p-values are statsmodels' Holm; the SRM p-value is scipy's chi-square."""
    family = [r for r in result.rows if r.role != "guardrail"]
    expected = multipletests([r.p_value for r in family], method="holm")[1]
    assert [r.adjusted_p_value for r in family] == pytest.approx(expected, rel=1e-12)
    counts = list(result.units.values())
    assert result.srm.p_value == pytest.approx(stats.chisquare(counts).pvalue, rel=1e-12)


def test_bh_correction(data):
    """correction="bh" gives Benjamini-Hochberg adjusted p-values."""
    exposures, outcomes = data
    res = analyze(exposures, outcomes, metrics=["purchase:binomial", "revenue:sum"],
                  correction="bh")  # fmt: skip
    expected = multipletests([r.p_value for r in res.rows], method="fdr_bh")[1]
    assert [r.adjusted_p_value for r in res.rows] == pytest.approx(expected, rel=1e-12)


def test_cuped_reduces_variance(result):
    """With correlated pre-exposure purchases CUPED narrows the CI and reports it."""
    row = result.rows[0]
    assert row.cuped is not None
    assert row.cuped.variance_reduction > 0.01
    assert row.effect.absolute_se < row.cuped.unadjusted.absolute_se
    assert row.control_mean == row.cuped.unadjusted.control_mean


def test_zero_control_mean_has_no_relative_effect():
    """A metric with mean 0 in control reports no relative effect instead of dividing by 0."""
    exposures, outcomes = synthetic(n=400, seed=3)
    treated = exposures.loc[exposures["variant"] == "treatment", "unit_id"].iloc[:5]
    extra = pd.DataFrame(
        {
            "event_id": [f"x{i}" for i in range(5)],
            "unit_id": treated.to_numpy(),
            "metric": "refund",
            "value": 1.0,
            "timestamp": T0 + pd.Timedelta(days=9),
        }
    )
    res = analyze(exposures, pd.concat([outcomes, extra]), metrics=["refund:count"])
    row = res.rows[0]
    assert row.control_mean == 0
    assert row.relative_effect is None
    assert row.to_dict()["relative_ci"] is None


def test_ratio_with_zero_denominator_is_a_row_error():
    """A ratio whose denominator is 0 in an arm is reported on its row, not raised."""
    exposures, outcomes = synthetic(n=400, seed=4)
    treated = set(exposures.loc[exposures["variant"] == "treatment", "unit_id"])
    outcomes = outcomes[~((outcomes["metric"] == "purchase") & outcomes["unit_id"].isin(treated))]
    res = analyze(exposures, outcomes, metrics=["purchase:binomial", "revenue/purchase:ratio"])
    ratio = res.rows[1]
    assert ratio.error is not None and "denominator" in ratio.error
    assert ratio.p_value is None
    assert res.to_dict()["metrics"][1]["absolute_effect"] is None


def test_quantile_methods_agree(data):
    """The asymptotic quantile SE is close to the unit bootstrap's on the same data."""
    exposures, outcomes = data
    boot, asym = (
        analyze(exposures, outcomes, metrics=["latency_ms:p95:quantile"], n_boot=400,
                quantile_method=method).rows[0].effect
        for method in ("bootstrap", "asymptotic")
    )  # fmt: skip
    assert asym.absolute_effect == boot.absolute_effect
    assert asym.absolute_se == pytest.approx(boot.absolute_se, rel=0.35)


def test_analyze_experiment_uses_the_definition():
    """Metrics, guardrails, control, weights and plan come from the experiment."""
    exposures, outcomes = synthetic(n=2000, seed=5, variants=("v1", "v2"), experiment="rk")
    experiment = Experiment.from_dict({
        "key": "rk", "control": "v1",
        "variants": [{"key": "v1", "weight": 50}, {"key": "v2", "weight": 50}],
        "primary_metric": {"name": "purchase", "type": "binomial"},
        "guardrail_metrics": [{"name": "latency_ms:p95", "type": "quantile",
                               "higher_is_better": False, "margin": 0.05}],
        "secondary_metrics": [{"name": "revenue", "type": "sum"}],
        "planned_units_per_variant": 5000,
    })  # fmt: skip
    res = analyze_experiment(experiment, exposures, outcomes, n_boot=200)
    assert res.control == "v1"
    assert [(r.metric, r.role) for r in res.rows] == [
        ("purchase", "primary"),
        ("revenue", "secondary"),
        ("latency_ms:p95", "guardrail"),
    ]
    assert res.rows[2].non_inferiority.margin == 0.05
    assert not res.rows[2].higher_is_better
    assert res.settings.to_dict()["weights"] == {"v1": 0.5, "v2": 0.5}
    assert res.settings.planned_units_per_variant == 5000


def test_analyze_experiment_powers_for_the_planned_effect():
    """The verdict's sample-size check uses the experiment's minimum_detectable_effect."""
    exposures, outcomes = synthetic(n=600, seed=5, variants=("v1", "v2"), experiment="rk")
    config = {"key": "rk", "variants": [{"key": "v1", "weight": 1}, {"key": "v2", "weight": 1}],
              "primary_metric": {"name": "purchase", "type": "binomial"}}  # fmt: skip
    planned = Experiment.from_dict({**config, "minimum_detectable_effect": 0.02})
    res = analyze_experiment(planned, exposures, outcomes)
    assert res.settings.rules.minimum_effect == 0.02
    assert any("to detect a 2% change" in r for r in res.decision.reasons), res.decision.reasons
    default = analyze_experiment(Experiment.from_dict(config), exposures, outcomes)
    assert default.settings.rules.minimum_effect == 0.05


def _drop(column):
    return lambda e, o: (e.drop(columns=column), o)


@pytest.mark.parametrize(
    ("change", "kwargs", "field", "words"),
    [
        (_drop("variant"), {}, "exposures.variant", "missing column"),
        (lambda e, o: (e, o.drop(columns="metric")), {}, "outcomes.metric", "missing column"),
        (lambda e, o: (e.iloc[0:0], o), {}, "exposures", "empty"),
        (lambda e, o: (e, o.iloc[0:0]), {}, "outcomes", "empty"),
        (lambda e, o: (e, o), {"control": "baseline"}, "control", "'baseline' not found"),
        (lambda e, o: (e, o), {"metrics": []}, "metrics", "at least one"),
        (lambda e, o: (e, o), {"metrics": ["purchase"]}, "metrics[0]", "NAME:TYPE"),
        (lambda e, o: (e, o), {"alpha": 0.7}, "alpha", "alpha"),
        (lambda e, o: (e, o), {"correction": "bonf"}, "correction", "holm"),
        (lambda e, o: (e, o), {"weights": {"control": 1}}, "weights", "no weight"),
        (lambda e, o: (e, o), {"experiment": "other"}, "experiment", "'other'"),
        (lambda e, o: (e, o), {"quantile_method": "exact"}, "quantile_method", "bootstrap"),
        (lambda e, o: (e, o), {"planned_units_per_variant": 0}, "planned_units_per_variant",
         ">= 2"),
        (lambda e, o: (e, o), {"mde": -0.1}, "mde", "> 0"),
        (lambda e, o: (e, o), {"mde": float("nan")}, "mde", "> 0"),
        (lambda e, o: (e, o), {"relative_mde": True}, "relative_mde", "needs an mde"),
        (lambda e, o: (e, o), {"mixing_sd": 0.0}, "mixing_sd", "> 0"),
        (lambda e, o: (e, o), {"observation_window": pd.Timedelta(0).to_pytimedelta()},
         "observation_window", "> 0"),
    ],
    ids=["missing-exposure-column", "missing-outcome-column", "empty-exposures",
         "empty-outcomes", "unknown-control", "no-metric",
         "metric-without-type", "bad-alpha", "bad-correction", "variant-without-weight",
         "unknown-experiment", "bad-quantile-method", "bad-plan", "negative-mde", "nan-mde",
         "relative-without-mde", "zero-mixing-sd", "zero-observation-window"],
)  # fmt: skip
def test_bad_input_names_the_problem(change, kwargs, field, words):
    """Every bad input raises InvalidInput with a message and field naming the problem."""
    exposures, outcomes = change(*synthetic(n=300, seed=6))
    kwargs.setdefault("metrics", ["purchase:binomial"])
    with pytest.raises(InvalidInput) as info:
        analyze(exposures, outcomes, **kwargs)
    assert info.value.field == field
    assert words in info.value.message


def test_quantile_ci_does_not_depend_on_row_order():
    """The seeded bootstrap gives the same CI however the input rows are ordered."""
    rng = np.random.default_rng(1)
    n = 400
    exposures = pd.DataFrame({
        "unit_id": [f"u{i}" for i in range(n)], "experiment": "e",
        "variant": np.where(np.arange(n) % 2, "t", "control"),
        "timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
    })  # fmt: skip
    outcomes = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(3 * n)],
        "unit_id": [f"u{i % n}" for i in range(3 * n)], "metric": "lat",
        "value": rng.lognormal(4, 0.3, 3 * n), "timestamp": pd.Timestamp("2026-01-02", tz="UTC"),
    })  # fmt: skip
    metrics = ["lat:p95:quantile"]
    ordered = analyze(exposures, outcomes, metrics=metrics)
    shuffled = analyze(
        exposures.sample(frac=1, random_state=3),
        outcomes.sample(frac=1, random_state=4),
        metrics=metrics,
    )
    assert ordered.to_dict()["metrics"] == shuffled.to_dict()["metrics"]
