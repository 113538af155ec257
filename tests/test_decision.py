"""Every verdict is reachable with its reasons; warnings; the re-derivable decision record."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from abtest.experiment import Experiment, Metric, MetricType
from analysis import DecisionRules, Verdict, analyze, write_decision_record
from analysis.data.load import fingerprint
from tests.test_analyze import synthetic

LATENCY = Metric("latency_ms:p95", MetricType.QUANTILE, higher_is_better=False, margin=0.05)


def run(data, **kwargs):
    """Analyse with purchase as primary and the latency guardrail."""
    kwargs.setdefault("guardrails", [LATENCY])
    kwargs.setdefault("n_boot", 200)
    return analyze(*data, metrics=["purchase:binomial"], **kwargs)


def test_ship_names_the_variant_and_why():
    """A clear win with a healthy guardrail ships, citing the metric and the guardrail."""
    decision = run(synthetic(n=6000, lift=0.3, seed=21)).decision
    assert decision.verdict is Verdict.SHIP
    assert decision.variant == "treatment"
    assert any("significantly better" in r for r in decision.reasons)
    assert any("non-inferior" in r for r in decision.reasons)


def test_roll_back_when_a_guardrail_is_harmed():
    """A 30% latency regression rolls back even with a conversion win."""
    decision = run(synthetic(n=6000, lift=0.3, latency_harm=0.3, seed=22)).decision
    assert decision.verdict is Verdict.ROLL_BACK
    assert decision.variant == "treatment"
    assert any("guardrail latency_ms:p95 harmed" in r for r in decision.reasons)


def test_roll_back_when_primary_is_significantly_worse():
    """A significant loss on the primary metric rolls back."""
    decision = run(synthetic(n=8000, lift=-0.4, seed=23), guardrails=[]).decision
    assert decision.verdict is Verdict.ROLL_BACK
    assert any("significantly worse" in r for r in decision.reasons)


def test_keep_running_reports_extra_days():
    """An underpowered test keeps running, with the extra days from the power module."""
    decision = run(synthetic(n=1000, lift=0.0, seed=24, days=5)).decision
    assert decision.verdict is Verdict.KEEP_RUNNING
    assert decision.extra_days is not None and decision.extra_days > 0
    assert any("underpowered" in r for r in decision.reasons)
    assert any(f"about {decision.extra_days} more day" in r for r in decision.reasons)


@pytest.mark.parametrize(("n", "verdict"), [(3000, Verdict.KEEP_RUNNING), (20000, Verdict.SHIP)])
def test_before_the_plan_a_win_needs_the_sequential_test(n, verdict):
    """Before the planned sample a fixed-horizon win ships only if mSPRT rejects too."""
    res = run(synthetic(n=n, lift=0.25, seed=25), planned_units_per_variant=100_000,
              guardrails=[])  # fmt: skip
    row = res.rows[0]
    assert row.significant
    assert row.sequential.reject is (verdict is Verdict.SHIP)
    assert res.decision.verdict is verdict
    if verdict is Verdict.KEEP_RUNNING:
        assert any("planned sample" in r for r in res.decision.reasons)


def test_no_difference_when_powered_and_flat():
    """No effect with enough units for the effect of interest: no_difference."""
    rules = DecisionRules(minimum_effect=0.5)
    decision = run(synthetic(n=6000, lift=0.0, seed=26), rules=rules, guardrails=[]).decision
    assert decision.verdict is Verdict.NO_DIFFERENCE
    assert any("no significant difference" in r for r in decision.reasons)


def test_invalid_on_sample_ratio_mismatch():
    """A 45/55 split configured as 50/50 is invalid, whatever the effects."""
    data = synthetic(n=8000, lift=0.3, seed=27, treatment_share=0.55)
    decision = run(data).decision
    assert decision.verdict is Verdict.INVALID
    assert decision.variant is None
    assert any("sample-ratio mismatch" in r for r in decision.reasons)


def test_invalid_with_too_few_units():
    """Fewer units than the minimum per variant is invalid, naming the variant."""
    decision = run(synthetic(n=150, seed=28), guardrails=[]).decision
    assert decision.verdict is Verdict.INVALID
    assert any("too few units" in r for r in decision.reasons)


def test_invalid_when_the_primary_metric_cannot_be_computed():
    """A data problem on the primary metric (ratio over 0) makes the result invalid."""
    exposures, outcomes = synthetic(n=1000, seed=29)
    treated = set(exposures.loc[exposures["variant"] == "treatment", "unit_id"])
    outcomes = outcomes[~((outcomes["metric"] == "purchase") & outcomes["unit_id"].isin(treated))]
    decision = analyze(exposures, outcomes, metrics=["revenue/purchase:ratio"]).decision
    assert decision.verdict is Verdict.INVALID
    assert any("denominator" in r for r in decision.reasons)


def test_twyman_flag_for_implausible_effects():
    """An effect beyond the Twyman threshold asks for review without changing the verdict."""
    data = synthetic(n=4000, lift=1.5, seed=30)
    flagged = run(data, guardrails=[]).decision
    assert flagged.review
    assert any("Twyman" in w for w in flagged.warnings)
    relaxed = run(data, guardrails=[], rules=DecisionRules(twyman_threshold=10.0)).decision
    assert not relaxed.review
    assert relaxed.verdict is flagged.verdict


def test_crossover_share_warning():
    """More than 1% of units in two variants is counted and warned about."""
    exposures, outcomes = synthetic(n=2000, seed=31)
    crossed = exposures.iloc[:50].assign(
        variant=lambda f: f["variant"].map({"control": "treatment", "treatment": "control"}),
        timestamp=lambda f: f["timestamp"] + pd.Timedelta(hours=1),
    )
    res = run((pd.concat([exposures, crossed]), outcomes), guardrails=[])
    assert res.excluded_units == 50
    assert res.crossover_share == pytest.approx(50 / 2000)
    assert any("50 units (2.50%)" in w for w in res.decision.warnings)


def test_decision_record_is_re_derivable(tmp_path):
    """The record pins data and config hashes and settings; re-running gives the same verdict."""
    exposures, outcomes = synthetic(n=3000, lift=0.3, seed=32)
    exposures.to_parquet(tmp_path / "e.parquet", index=False)
    outcomes.to_parquet(tmp_path / "o.parquet", index=False)
    experiment = Experiment.from_dict({
        "key": "exp", "variants": [{"key": "control"}, {"key": "treatment"}],
        "primary_metric": {"name": "purchase", "type": "binomial"},
    })  # fmt: skip
    res = analyze(tmp_path / "e.parquet", tmp_path / "o.parquet", metrics=["purchase:binomial"])
    hashes = {"exposures": fingerprint(tmp_path / "e.parquet"),
              "outcomes": fingerprint(tmp_path / "o.parquet")}  # fmt: skip
    write_decision_record(res, tmp_path / "record.json", data_sha256=hashes, experiment=experiment)
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["experiment"] == "exp"
    assert record["config_version"] == "1"
    assert len(record["config_sha256"]) == 64
    assert record["data_sha256"] == hashes
    assert record["package_version"]
    assert record["rules"]["srm_threshold"] == 0.001
    assert record["verdict"] == res.decision.verdict.value
    assert record["reasons"] == list(res.decision.reasons)
    settings = record["settings"]
    again = analyze(
        tmp_path / "e.parquet", tmp_path / "o.parquet",
        metrics=[f"{m['name']}:{m['type']}" for m in settings["metrics"]],
        control=settings["control"], alpha=settings["alpha"],
        correction=settings["correction"], rules=DecisionRules(**settings["rules"]),
    )  # fmt: skip
    assert again.decision == res.decision
