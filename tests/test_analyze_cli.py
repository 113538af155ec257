"""``abtest analyze``: output formats, files written, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from abtest.cli import main
from tests.test_analyze import synthetic

CONFIG = {
    "key": "exp", "control": "control",
    "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}],
    "primary_metric": {"name": "purchase", "type": "binomial"},
    "guardrail_metrics": [{"name": "latency_ms:p95", "type": "quantile",
                           "higher_is_better": False, "margin": 0.1}],
    "secondary_metrics": [{"name": "revenue", "type": "sum"}],
}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Exposures as a Parquet directory, outcomes as CSV, and an experiment config."""
    root = tmp_path_factory.mktemp("cli")
    exposures, outcomes = synthetic(n=12000, lift=0.3, seed=51)
    (root / "exposures" / "exp").mkdir(parents=True)
    exposures.to_parquet(root / "exposures" / "exp" / "1_2.parquet", index=False)
    outcomes.to_csv(root / "outcomes.csv", index=False)
    (root / "exp.json").write_text(json.dumps(CONFIG))
    return root


def args(files, *extra):
    """The common arguments plus ``extra``."""
    return ["analyze", "--exposures", str(files / "exposures"),
            "--outcomes", str(files / "outcomes.csv"), *extra]  # fmt: skip


def test_json_output(files, capsys):
    """--json prints the result object with the documented fields."""
    assert main(args(files, "--metric", "purchase:binomial", "--metric", "revenue:sum",
                     "--json")) == 0  # fmt: skip
    body = json.loads(capsys.readouterr().out)
    assert body["control"] == "control"
    assert [row["metric"] for row in body["metrics"]] == ["purchase", "revenue"]
    assert body["decision"]["verdict"] in {"ship", "keep_running", "no_difference",
                                           "roll_back", "invalid"}  # fmt: skip


def test_human_output_report_and_record(files, tmp_path, capsys):
    """The default output ends with the verdict and its reasons; files are written."""
    report, record = tmp_path / "r.html", tmp_path / "d.json"
    code = main(args(files, "--metric", "purchase:binomial", "--guardrail",
                     "latency_ms:p95:quantile", "--lower-is-better", "latency_ms:p95",
                     "--planned-units", "6000", "--attribution-hours", "48",
                     "--html", str(report), "--record", str(record)))  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "verdict     ship treatment" in out
    assert "  - SRM ok" in out
    assert "planned 6,000 units per variant" in out
    assert "observation window 48 h" in out
    assert report.read_text().startswith("<!DOCTYPE html>")
    saved = json.loads(record.read_text())
    assert saved["verdict"] == "ship"
    assert set(saved["data_sha256"]) == {"exposures", "outcomes"}
    assert saved["settings"]["guardrails"][0]["higher_is_better"] is False


def test_config_supplies_metrics_guardrails_and_weights(files, capsys):
    """--config takes metrics, guardrails, weights and control from the definition."""
    assert main(args(files, "--config", str(files / "exp.json"), "--json")) == 0
    body = json.loads(capsys.readouterr().out)
    assert [(r["metric"], r["role"]) for r in body["metrics"]] == [
        ("purchase", "primary"),
        ("revenue", "secondary"),
        ("latency_ms:p95", "guardrail"),
    ]
    assert body["settings"]["weights"] == {"control": 0.5, "treatment": 0.5}


def test_the_plan_is_given_without_a_config_and_stored(files, capsys):
    """--planned-units, --mde and --relative need no config file; the result and its
    settings record them and the prior they fix."""
    assert main(args(files, "--metric", "purchase:binomial", "--planned-units", "6000",
                     "--mde", "0.25", "--relative", "--observation-hours", "48",
                     "--json")) == 0  # fmt: skip
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["planned_units_per_variant"] == 6000
    assert (settings["mde"], settings["relative_mde"]) == (0.25, True)
    assert settings["observation_window_hours"] == 48
    assert settings["sequential_prior"] == {"scale": 0.25, "unit": "relative", "source": "mde"}
    assert main(args(files, "--config", str(files / "exp.json"), "--planned-units", "999",
                     "--mixing-sd", "0.1", "--json")) == 0  # fmt: skip
    settings = json.loads(capsys.readouterr().out)["settings"]
    assert settings["planned_units_per_variant"] == 999
    assert settings["sequential_prior"] == {"scale": 0.1, "unit": "sd", "source": "mixing_sd"}


def test_every_column_names_its_scale(files, capsys):
    """The tables label each effect and interval (absolute in the metric's unit, relative in
    % of control, the always-valid one with its confidence sequence), with the shared
    formatter's headers, and every absolute value carries its unit (pp, ms)."""
    guardrail = ["--guardrail", "latency_ms:p95:quantile", "--lower-is-better", "latency_ms:p95"]
    assert main(args(files, "--metric", "purchase:binomial", *guardrail)) == 0
    out = capsys.readouterr().out
    fixed, sequential = (line for line in out.splitlines() if line.startswith("Metric"))
    assert "Abs. effect, variant − control [95% CI]" in fixed
    assert "Rel. effect, % of control [95% CI]" in fixed
    assert "Abs. effect, variant − control [95% CS]" in sequential
    purchase = [line for line in out.splitlines() if line.startswith("purchase ")]
    assert len(purchase) == 2 and all(line.count(" pp") >= 3 for line in purchase)
    latency = [line for line in out.splitlines() if line.startswith("latency_ms:p95 ")]
    assert latency[0].count(" ms") >= 5 and latency[1].count(" ms") >= 3


def test_a_metric_without_events_is_a_row_with_a_reason(files, capsys):
    """A metric with no events (a typo, or too early) is reported on its row and in the
    verdict's reasons; the analysis is not refused."""
    assert main(args(files, "--metric", "purchase:binomial", "--metric", "purchse:count")) == 0
    out = capsys.readouterr().out
    assert "no events yet" in out
    assert "could not read: purchse (treatment): no events yet" in out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ([], "at least one --metric"),
        (["--metric", "purchase"], "NAME:TYPE"),
        (["--metric", "purchase:mean"], "unknown type 'mean'"),
        (["--metric", "purchase:binomial", "--control", "baseline"], "'baseline' not found"),
        (["--metric", "purchase:binomial", "--experiment", "nope"], "'nope' has no exposures"),
        (["--metric", "purchase:binomial", "--alpha", "0.9"], "--alpha"),
        (["--metric", "purchase:binomial", "--attribution-hours", "0"], "--attribution-hours"),
        (["--metric", "purchase:binomial", "--guardrail", "revenue:sum", "--margin", "2"],
         "--margin"),
        (["--metric", "purchase:binomial", "--correction", "bonferroni"], "invalid choice"),
        (["--config", "CFG", "--metric", "purchase:binomial"], "come from the config"),
        (["--config", "CFG", "--experiment", "exp"], "not allowed with argument"),
        (["--config", "MISSING"], "No such file"),
        (["--metric", "purchase:binomial", "--html", "/nonexistent/dir/r.html"],
         "No such file"),
        (["--metric", "purchase:binomial", "--planned-units", "0"], "--planned-units"),
        (["--metric", "purchase:binomial", "--planned-units", "many"], "invalid int value"),
        (["--metric", "purchase:binomial", "--mde", "-0.1"], "--mde"),
        (["--metric", "purchase:binomial", "--mde", "nan"], "--mde"),
        (["--metric", "purchase:binomial", "--relative"], "--relative needs --mde"),
        (["--metric", "purchase:binomial", "--mixing-sd", "0"], "--mixing-sd"),
        (["--metric", "purchase:binomial", "--observation-hours", "-2"], "--observation-hours"),
    ],
    ids=["no-metric", "metric-without-type", "unknown-type",
         "unknown-control", "unknown-experiment", "bad-alpha", "bad-window", "bad-margin",
         "bad-correction", "config-and-metric", "config-and-experiment", "missing-config",
         "unwritable-report", "zero-plan", "word-plan", "negative-mde", "nan-mde",
         "relative-without-mde", "zero-mixing-sd", "negative-observation"],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(files, capsys, extra, words):
    """Each bad input exits 2 with one line `abtest: error: ...` naming the problem."""
    extra = [str(files / "exp.json") if e == "CFG" else
             str(files / "missing.json") if e == "MISSING" else e for e in extra]  # fmt: skip
    assert main(args(files, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("abtest: error: ")
    assert err.count("\n") == 1
    assert words in err


@pytest.mark.parametrize(
    ("exposures", "outcomes", "words"),
    [
        ("nowhere", "outcomes.csv", "does not exist"),
        ("outcomes.csv", "outcomes.csv", "missing column(s): experiment, variant"),
        ("exposures", "exposures", "missing column(s): event_id, metric"),
        ("empty", "outcomes.csv", "no Parquet files"),
    ],
    ids=["missing-path", "outcomes-as-exposures", "exposures-as-outcomes", "empty-dir"],
)
def test_bad_files_are_one_line_exit_2(files, capsys, exposures, outcomes, words):
    """Unreadable or wrongly shaped files exit 2 with one line naming the problem."""
    (files / "empty").mkdir(exist_ok=True)
    code = main(["analyze", "--exposures", str(files / exposures), "--outcomes",
                 str(files / outcomes), "--metric", "purchase:binomial"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert words in err
