"""`abtest demo` end to end: a real service process, real HTTP, real files, a real ship."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One small demo run with a large lift, so it ships; its output and data directory."""
    data_dir = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "abtest", "demo", "--users", "1200", "--lift", "1.0",
         "--seed", "11", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    return proc, data_dir


def test_demo_exits_zero_without_traceback(demo_run):
    """The demo completes and prints every step."""
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for step in ("1. plan", "2. serve", "3. start", "4. traffic", "5. export", "6. analyse",
                 "7. report", "8. ship"):  # fmt: skip
        assert step in proc.stdout


def test_demo_verdict_is_ship_with_reasons(demo_run):
    """A doubled conversion rate is detected: the verdict is ship v2, with reasons."""
    proc, data_dir = demo_run
    assert "verdict: SHIP v2" in proc.stdout
    record = json.loads((data_dir / "decision.json").read_text())
    assert (record["verdict"], record["variant"]) == ("ship", "v2")
    assert record["experiment"] == "ranker-v2-demo"
    assert any("significantly better" in reason for reason in record["reasons"])


def test_demo_flags_a_too_good_lift_for_review(demo_run):
    """A doubled conversion rate is shipped but flagged under Twyman's law."""
    proc, _ = demo_run
    assert any(line.strip().startswith("! Twyman's law: purchase") for line in
               proc.stdout.splitlines())  # fmt: skip


def test_demo_writes_a_self_contained_report(demo_run):
    """The HTML report exists, names the verdict and embeds its figures."""
    _, data_dir = demo_run
    html = (data_dir / "report.html").read_text()
    assert "ship" in html.lower()
    assert "<img" in html or "<svg" in html
    assert not re.search(r'src="(?!data:)', html), "figures must be embedded, not linked"


def test_demo_ships_to_everyone(demo_run):
    """After the ship every simulated user is served the winner with reason 'shipped'."""
    proc, _ = demo_run
    line = next(x for x in proc.stdout.splitlines() if x.startswith("8. ship"))
    assert "every one of 1,200 users now gets: v2 (shipped) 1,200 - ok" in line


def test_demo_exports_every_exposure_once(demo_run):
    """Every user who entered the experiment is one exposure row in the export."""
    proc, _ = demo_run
    traffic = next(x for x in proc.stdout.splitlines() if x.startswith("4. traffic"))
    exported = next(x for x in proc.stdout.splitlines() if x.startswith("5. export"))
    units = sum(int(n.replace(",", "")) for n in re.findall(r"v\d ([\d,]+)", traffic))
    assert units == 1200
    assert exported.startswith("5. export    1,200 exposures")


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--users", "10"], "at least 100 users"), (["--lift", "-2"], "lift must lie")],
)
def test_demo_bad_arguments_exit_2(argv, message):
    """Impossible demo settings exit with code 2 and one line, before starting anything."""
    proc = subprocess.run([sys.executable, "-m", "abtest", "demo", *argv],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
