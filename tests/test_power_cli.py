"""``abtest power`` and ``abtest mde``: tables, JSON matching the API, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from abtest.cli import main
from analysis import (
    minimum_detectable_effect_mean,
    minimum_detectable_effect_proportion,
    sample_size_mean,
    sample_size_proportion,
    sample_size_ratio,
)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    """Run the CLI with --json and return the parsed object (exit code 0 asserted)."""
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object on one line
    return json.loads(out)


def test_power_proportion_json_matches_api(capsys):
    """`abtest power --metric proportion` reports the API's n, total and days."""
    report = run_json(
        capsys,
        "power",
        "--metric",
        "proportion",
        "--baseline",
        "0.10",
        "--mde",
        "0.01",
        "--daily-units",
        "5000",
        "--traffic",
        "0.5",
    )
    expected = sample_size_proportion(baseline=0.10, mde=0.01)
    assert report["n_per_variant"] == int(expected.n_per_variant) == 14751
    assert report["total_n"] == int(expected.total_n)
    assert report["days"] == 12  # ceil(29502 / 2500)
    assert report["mde_relative"] == pytest.approx(0.1)


def test_power_relative_one_sided_variants_ratio(capsys):
    """--relative, --one-sided, --ratio and --variants map onto the API's options."""
    report = run_json(
        capsys,
        "power",
        "--metric",
        "proportion",
        "--baseline",
        "0.2",
        "--mde",
        "0.05",
        "--relative",
        "--one-sided",
        "--ratio",
        "2",
        "--variants",
        "3",
        "--alpha",
        "0.1",
        "--power",
        "0.9",
    )
    expected = sample_size_proportion(
        baseline=0.2,
        mde=0.05,
        relative=True,
        alternative="greater",
        ratio=2.0,
        variants=3,
        alpha=0.1,
        power=0.9,
    )
    assert report["n_per_variant"] == int(expected.n_per_variant)
    assert report["n_treatment"] == int(expected.n_treatment)
    assert report["total_n"] == int(expected.n_per_variant) + 3 * int(expected.n_treatment)
    assert report["alpha_per_comparison"] == pytest.approx(0.1 / 3)
    assert report["mde_absolute"] == pytest.approx(0.01)


def test_power_mean_t_test_gives_gpower_64(capsys):
    """`--metric mean --std 5 --mde 2.5 --test t` is G*Power's 64 per group."""
    report = run_json(
        capsys,
        "power",
        "--metric",
        "mean",
        "--baseline",
        "10",
        "--std",
        "5",
        "--mde",
        "2.5",
        "--test",
        "t",
    )
    assert report["n_per_variant"] == 64
    assert report["total_n"] == 128


def test_power_mean_with_cuped_and_guardrails(capsys):
    """--cuped-rho and --guardrails reach the API (variance x (1 - rho^2), power 1 - b/(G+1))."""
    report = run_json(
        capsys,
        "power",
        "--metric",
        "mean",
        "--std",
        "5",
        "--mde",
        "0.5",
        "--cuped-rho",
        "0.5",
        "--guardrails",
        "2",
    )
    expected = sample_size_mean(std=5.0, mde=0.5, cuped_rho=0.5, n_guardrails=2)
    assert report["n_per_variant"] == int(expected.n_per_variant)
    assert report["power_per_test"] == pytest.approx(1 - 0.2 / 3)


def test_power_ratio_metric(capsys):
    """`--metric ratio` takes the per-unit moments and sizes by the delta method."""
    report = run_json(
        capsys,
        "power",
        "--metric",
        "ratio",
        "--num-mean",
        "2",
        "--den-mean",
        "4",
        "--num-var",
        "1",
        "--den-var",
        "4",
        "--cov",
        "0.5",
        "--mde",
        "0.05",
        "--relative",
    )
    expected = sample_size_ratio(
        mean_numerator=2.0,
        mean_denominator=4.0,
        var_numerator=1.0,
        var_denominator=4.0,
        covariance=0.5,
        mde=0.05,
        relative=True,
    )
    assert report["n_per_variant"] == int(expected.n_per_variant)
    assert report["baseline"] == pytest.approx(0.5)


def test_power_non_inferiority_defaults_to_higher_is_better(capsys):
    """A margin alone plans a one-sided ('greater') non-inferiority test with true effect 0."""
    report = run_json(
        capsys,
        "power",
        "--metric",
        "proportion",
        "--baseline",
        "0.1",
        "--non-inferiority-margin",
        "0.01",
    )
    expected = sample_size_proportion(
        baseline=0.1, non_inferiority_margin=0.01, alternative="greater"
    )
    assert report["n_per_variant"] == int(expected.n_per_variant)
    assert report["test"] == "non-inferiority"
    assert report["alternative"] == "greater"


def test_power_human_table(capsys):
    """Without --json the answer is a readable table with thousands separators and days."""
    code = main(
        [
            "power",
            "--metric",
            "proportion",
            "--baseline",
            "0.10",
            "--mde",
            "0.01",
            "--daily-units",
            "1000",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "14,751 control" in out
    assert "29,502" in out
    assert "30 at 1,000 units/day" in out


def test_mde_proportion_json_matches_api(capsys):
    """`abtest mde` reports absolute and relative MDE for --n-per-variant."""
    report = run_json(
        capsys, "mde", "--metric", "proportion", "--baseline", "0.10", "--n-per-variant", "5000"
    )
    expected = minimum_detectable_effect_proportion(baseline=0.10, n_per_variant=5000)
    assert report["mde_absolute"] == pytest.approx(float(expected.absolute))
    assert report["mde_relative"] == pytest.approx(float(expected.absolute) / 0.10)


def test_mde_table_by_days(capsys):
    """With --daily-units, `abtest mde` adds the 7/14/21/28-day table."""
    report = run_json(
        capsys,
        "mde",
        "--metric",
        "mean",
        "--baseline",
        "50",
        "--std",
        "30",
        "--daily-units",
        "2000",
        "--traffic",
        "0.5",
    )
    assert [row["days"] for row in report["by_days"]] == [7, 14, 21, 28]
    first = report["by_days"][0]
    assert first["n_per_variant"] == 3500
    expected = minimum_detectable_effect_mean(std=30.0, baseline=50.0, n_per_variant=3500)
    assert first["mde_absolute"] == pytest.approx(float(expected.absolute))


def test_mde_human_output_and_undetectable(capsys):
    """The human MDE output has the table, and says so when nothing is detectable."""
    assert (
        main(
            [
                "mde",
                "--metric",
                "proportion",
                "--baseline",
                "0.5",
                "--n-per-variant",
                "5000",
                "--daily-units",
                "100",
                "--days",
                "7,28",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "mde (rel)" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("7 ", "28 "))]) == 2
    report = run_json(
        capsys,
        "mde",
        "--metric",
        "proportion",
        "--baseline",
        "0.5",
        "--n-per-variant",
        "3",
        "--alpha",
        "0.001",
    )
    assert report["mde_absolute"] is None


P = ["power", "--metric", "proportion"]
M = ["power", "--metric", "mean"]
D = ["mde", "--metric", "proportion", "--baseline", "0.1"]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([*P, "--baseline", "0", "--mde", "0.01"], id="baseline-0"),
        pytest.param([*P, "--baseline", "1", "--mde", "0.01"], id="baseline-1"),
        pytest.param([*P, "--baseline", "1.5", "--mde", "0.01"], id="baseline-above-1"),
        pytest.param([*P, "--baseline", "-0.1", "--mde", "0.01"], id="baseline-negative"),
        pytest.param([*P, "--baseline", "nan", "--mde", "0.01"], id="baseline-nan"),
        pytest.param([*P, "--baseline", "0.1", "--mde", "0"], id="mde-0"),
        pytest.param([*P, "--baseline", "0.1", "--mde", "-0.01"], id="mde-negative"),
        pytest.param([*P, "--baseline", "0.1", "--mde", "inf"], id="mde-inf"),
        pytest.param([*P, "--baseline", "0.1", "--mde", "abc"], id="mde-not-a-number"),
        pytest.param([*P, "--baseline", "0.95", "--mde", "0.1"], id="effect-above-1"),
        pytest.param(
            [*P, "--baseline", "0.6", "--mde", "1", "--relative"], id="relative-effect-above-1"
        ),
        pytest.param(
            [*P, "--baseline", "0.05", "--mde", "0.1", "--alternative", "less"], id="effect-below-0"
        ),
        pytest.param([*P, "--baseline", "0.1", "--mde", "0.01", "--alpha", "0"], id="alpha-0"),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--alpha", "0.6"], id="alpha-above-half"
        ),
        pytest.param([*P, "--baseline", "0.1", "--mde", "0.01", "--power", "0"], id="power-0"),
        pytest.param([*P, "--baseline", "0.1", "--mde", "0.01", "--power", "1"], id="power-1"),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--power", "1.2"], id="power-above-1"
        ),
        pytest.param([*P, "--baseline", "0.1", "--mde", "0.01", "--ratio", "0"], id="ratio-0"),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--variants", "0"], id="variants-0"
        ),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--daily-units", "0"], id="daily-units-0"
        ),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--daily-units", "10", "--traffic", "1.5"],
            id="traffic-above-1",
        ),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--cuped-rho", "1"], id="cuped-rho-1"
        ),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--test", "t"], id="t-test-for-proportion"
        ),
        pytest.param(
            [*P, "--baseline", "0.1", "--mde", "0.01", "--one-sided", "--alternative", "less"],
            id="one-sided-and-alternative",
        ),
        pytest.param([*P, "--mde", "0.01"], id="proportion-without-baseline"),
        pytest.param([*P, "--baseline", "0.1"], id="without-mde"),
        pytest.param(
            [*P, "--baseline", "0.1", "--non-inferiority-margin", "-0.01"], id="negative-margin"
        ),
        pytest.param(
            [
                *P,
                "--baseline",
                "0.1",
                "--non-inferiority-margin",
                "0.01",
                "--alternative",
                "two-sided",
            ],
            id="two-sided-non-inferiority",
        ),
        pytest.param([*M, "--mde", "0.5"], id="mean-without-std"),
        pytest.param([*M, "--std", "0", "--mde", "0.5"], id="std-0"),
        pytest.param([*M, "--std", "-1", "--mde", "0.5"], id="std-negative"),
        pytest.param(
            [*M, "--std", "5", "--mde", "0.1", "--relative"], id="relative-mean-without-baseline"
        ),
        pytest.param(
            [
                "power",
                "--metric",
                "ratio",
                "--num-mean",
                "1",
                "--den-mean",
                "2",
                "--num-var",
                "1",
                "--den-var",
                "1",
                "--mde",
                "0.1",
            ],
            id="ratio-without-cov",
        ),
        pytest.param(
            [
                "power",
                "--metric",
                "ratio",
                "--num-mean",
                "1",
                "--den-mean",
                "0",
                "--num-var",
                "1",
                "--den-var",
                "1",
                "--cov",
                "0",
                "--mde",
                "0.1",
            ],
            id="ratio-denominator-0",
        ),
        pytest.param(
            ["power", "--metric", "median", "--baseline", "1", "--mde", "0.1"], id="unknown-metric"
        ),
        pytest.param(D, id="mde-without-n-or-traffic"),
        pytest.param([*D, "--n-per-variant", "0"], id="mde-n-0"),
        pytest.param([*D, "--n-per-variant", "-10"], id="mde-n-negative"),
        pytest.param([*D, "--daily-units", "100", "--days", "7,x"], id="mde-days-not-integers"),
        pytest.param([*D, "--daily-units", "100", "--days", "0"], id="mde-days-0"),
        pytest.param([*D, "--daily-units", "0.1", "--days", "1"], id="mde-days-too-short"),
        pytest.param([*D, "--n-per-variant", "100", "--alpha", "1"], id="mde-alpha-1"),
    ],
)
def test_impossible_inputs_exit_2_with_one_line(capsys, argv):
    """Each impossible input exits 2 with one line `abtest: error: ...` and no output."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("abtest: error: ")
    assert captured.err.count("\n") == 1


@pytest.mark.slow
def test_console_script_runs_in_a_real_process():
    """The installed `abtest` script answers `power --json` and exits 2 on a bad baseline."""
    script = Path(sys.executable).with_name("abtest")
    good = subprocess.run(
        [
            str(script),
            "power",
            "--metric",
            "proportion",
            "--baseline",
            "0.1",
            "--mde",
            "0.01",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["n_per_variant"] == 14751
    bad = subprocess.run(
        [str(script), "power", "--metric", "proportion", "--baseline", "2", "--mde", "0.01"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip() == "abtest: error: baseline: must be in (0, 1) for a proportion, got 2"
    )
