"""Every verdict is reachable with its reasons; warnings; the re-derivable decision record."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from abtest.experiment import Experiment, Metric, MetricType
from analysis import DecisionRules, Verdict, analyze, write_decision_record
from analysis.data.load import fingerprint
from tests.test_analyze import T0, synthetic

LATENCY = Metric("latency_ms:p95", MetricType.QUANTILE, higher_is_better=False, margin=0.05)


def run(data, **kwargs):
    """Analyse with purchase as primary and the latency guardrail."""
    kwargs.setdefault("guardrails", [LATENCY])
    kwargs.setdefault("quantile_method", "asymptotic")
    return analyze(*data, metrics=["purchase:binomial"], **kwargs)


def test_ship_names_the_variant_and_why():
    """A clear win with a healthy guardrail ships, citing the always-valid tests of both."""
    decision = run(synthetic(n=12000, lift=0.3, seed=21), planned_units_per_variant=6000).decision
    assert decision.verdict is Verdict.SHIP
    assert decision.variant == "treatment"
    better = next(r for r in decision.reasons if "is significantly better in 'treatment'" in r)
    assert "always-valid" in better and "fixed horizon" in better
    assert any("non-inferior" in r and "always-valid" in r for r in decision.reasons)


def test_roll_back_when_a_guardrail_is_harmed_beyond_its_margin():
    """A 30% latency regression (margin 5%) rolls back even with a conversion win."""
    decision = run(synthetic(n=6000, lift=0.3, latency_harm=0.3, seed=22)).decision
    assert decision.verdict is Verdict.ROLL_BACK
    assert decision.variant == "treatment"
    assert any("guardrail latency_ms:p95 harmed beyond its relative margin 0.05" in r
               for r in decision.reasons)  # fmt: skip


def test_a_harm_inside_the_margin_does_not_roll_back():
    """A 2% latency regression is tolerated by a 5% margin: shown non-inferior, shipped."""
    res = run(synthetic(n=20000, lift=0.3, latency_harm=0.02, seed=22),
              planned_units_per_variant=6000)  # fmt: skip
    guard = res.rows[1]
    assert guard.effect.relative_effect > 0.01
    assert guard.sequential_margin.p_harm == 1.0
    assert res.decision.verdict is Verdict.SHIP


def test_roll_back_when_primary_is_significantly_worse():
    """An always-valid loss on the primary metric rolls back."""
    decision = run(synthetic(n=20000, lift=-0.4, seed=23), guardrails=[]).decision
    assert decision.verdict is Verdict.ROLL_BACK
    assert any(
        "primary purchase is significantly worse in 'treatment'" in r for r in decision.reasons
    )


def test_keep_running_reports_extra_days():
    """An underpowered test keeps running, with the extra days from the power module."""
    decision = run(synthetic(n=1000, lift=0.0, seed=24, days=5)).decision
    assert decision.verdict is Verdict.KEEP_RUNNING
    assert decision.extra_days is not None and decision.extra_days > 0
    assert any("detect a 5% change with power 80%" in r for r in decision.reasons)
    assert any(f"about {decision.extra_days} more day" in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("planned", "verdict"), [(100_000, Verdict.KEEP_RUNNING), (1000, Verdict.NO_DIFFERENCE)]
)
def test_a_fixed_horizon_win_never_drives_the_verdict(planned, verdict):
    """A fixed-horizon p < 0.05 that the always-valid test does not confirm ships neither
    before the plan (keep running) nor after it (no difference)."""
    res = run(synthetic(n=3000, lift=0.25, seed=25), planned_units_per_variant=planned,
              guardrails=[])  # fmt: skip
    row = res.rows[0]
    assert row.significant
    assert not row.sequential.reject
    assert res.decision.verdict is verdict
    if verdict is Verdict.KEEP_RUNNING:
        assert any("of the 100,000 needed" in r for r in res.decision.reasons)
    else:
        assert any("no always-valid difference" in r for r in res.decision.reasons)


def test_no_difference_when_powered_and_flat():
    """No effect with enough units for the effect of interest: no_difference."""
    rules = DecisionRules(minimum_effect=0.5)
    decision = run(synthetic(n=6000, lift=0.0, seed=26), rules=rules, guardrails=[]).decision
    assert decision.verdict is Verdict.NO_DIFFERENCE
    assert any("no always-valid difference on purchase" in r for r in decision.reasons)


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


def test_twyman_flag_for_implausible_significant_effects():
    """A significant effect beyond the Twyman threshold asks for review without changing
    the verdict."""
    data = synthetic(n=4000, lift=1.5, seed=30)
    flagged = run(data, guardrails=[]).decision
    assert flagged.review
    assert any("Twyman" in w for w in flagged.warnings)
    relaxed = run(data, guardrails=[], rules=DecisionRules(twyman_threshold=10.0)).decision
    assert not relaxed.review
    assert relaxed.verdict is flagged.verdict


def test_twyman_ignores_effects_that_are_not_significant():
    """Three refunds against one is a +200% move and noise: no Twyman flag."""
    exposures, outcomes = synthetic(n=600, seed=30)
    units = exposures.groupby("variant")["unit_id"].first()
    refunds = pd.DataFrame({
        "event_id": ["r1", "r2", "r3", "r4"], "metric": "refund", "value": 1.0,
        "unit_id": [units["control"], *[units["treatment"]] * 3],
        "timestamp": T0 + pd.Timedelta(days=8),
    })  # fmt: skip
    res = analyze(exposures, pd.concat([outcomes, refunds]),
                  metrics=["purchase:binomial", "refund:count"])  # fmt: skip
    refund = res.rows[1]
    assert refund.relative_effect > 0.5 and not refund.significant
    assert not any("Twyman" in w for w in res.decision.warnings)
    assert not res.decision.review


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
    """The record pins data and config hashes, settings and the prior; re-running with the
    recorded settings gives the same verdict."""
    exposures, outcomes = synthetic(n=3000, lift=0.3, seed=32)
    exposures.to_parquet(tmp_path / "e.parquet", index=False)
    outcomes.to_parquet(tmp_path / "o.parquet", index=False)
    experiment = Experiment.from_dict({
        "key": "exp", "variants": [{"key": "control"}, {"key": "treatment"}],
        "primary_metric": {"name": "purchase", "type": "binomial"},
    })  # fmt: skip
    res = analyze(tmp_path / "e.parquet", tmp_path / "o.parquet", metrics=["purchase:binomial"],
                  mde=0.2, relative_mde=True)  # fmt: skip
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
    assert settings["sequential_prior"] == {"scale": 0.2, "unit": "relative", "source": "mde"}
    assert settings["observation_window_hours"] == 24
    assert record["metrics"][0]["sequential"]["prior"] == settings["sequential_prior"]
    again = analyze(
        tmp_path / "e.parquet", tmp_path / "o.parquet",
        metrics=[f"{m['name']}:{m['type']}" for m in settings["metrics"]],
        control=settings["control"], alpha=settings["alpha"],
        correction=settings["correction"], rules=DecisionRules(**settings["rules"]),
        mde=settings["mde"], relative_mde=settings["relative_mde"],
    )  # fmt: skip
    assert again.decision == res.decision
