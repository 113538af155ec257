"""`abtest demo` end to end: a real service process, real HTTP, real files, a real ship."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from abtest.embedded import running_url

pytestmark = pytest.mark.slow


ABTEST = Path(sys.executable).with_name("abtest")  # the console script, as a user runs it


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One small demo run with a large lift, so it ships; its output and kept folder.

    It runs without --data-dir, as the README's first command does, in a directory that
    holds a folder named ``abtest/`` (as the folder above a clone does) which breaks any
    process that imports it instead of the installed package.
    """
    cwd = tmp_path_factory.mktemp("above-a-clone")
    (cwd / "abtest").mkdir()
    (cwd / "abtest" / "__init__.py").write_text('raise ImportError("the local abtest/ folder")')
    proc = subprocess.run(
        [str(ABTEST), "demo", "--users", "1200", "--lift", "1.0", "--seed", "11"],
        capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
    )  # fmt: skip
    return proc, cwd / "abtest-demo"


def test_every_printed_path_exists_after_the_demo_exits(demo_run):
    """Report, decision record, export and config are kept, with private modes; the processes
    are gone (the store is not locked by a running server)."""
    proc, data_dir = demo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = re.findall(r"(abtest-demo/[\w./-]*)", proc.stdout)
    assert {"abtest-demo/report.html", "abtest-demo/decision.json", "abtest-demo/export",
            "abtest-demo/experiment.json"} <= set(printed)  # fmt: skip
    for relative in printed:
        assert (data_dir.parent / relative).exists(), relative
    assert list((data_dir / "export" / "exposures").rglob("*.parquet"))
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "report.html").stat().st_mode & 0o777 == 0o600
    assert running_url(data_dir) is None  # the service and its redis-server stopped


def test_a_second_run_replaces_the_kept_folder_and_a_foreign_one_is_refused(tmp_path):
    """The demo replaces only a folder it made; another non-empty folder is refused (exit 2)."""
    from abtest.demo import MARKER_FILE, prepare_folder

    mine = tmp_path / "abtest-demo"
    prepare_folder(mine)
    (mine / "report.html").write_text("old")
    prepare_folder(mine)
    assert sorted(p.name for p in mine.iterdir()) == [MARKER_FILE]
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    proc = subprocess.run([str(ABTEST), "demo", "--data-dir", str(foreign)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2 and "not made by abtest demo" in proc.stderr
    assert (foreign / "keep.txt").read_text() == "mine"


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


def test_demo_traffic_spreads_over_simulated_days(demo_run):
    """The demo drives the controlled clock: exposures, outcomes and the audit trail lie on
    the seven simulated days before today, more by day than by night."""
    import pandas as pd

    from abtest.demo import DEMO_DAYS

    _, data_dir = demo_run
    when = pd.read_parquet(data_dir / "export" / "exposures")["timestamp"]
    outcomes = pd.read_parquet(data_dir / "export" / "outcomes")["timestamp"]
    assert when.dt.date.nunique() == DEMO_DAYS
    assert when.max() < pd.Timestamp.now(tz="UTC").normalize()
    assert when.dt.hour.between(9, 20).mean() > 0.6  # the afternoon peak
    # Outcomes in the experiment happen at their exposure; the pre-period ones before.
    assert (outcomes >= when.min()).mean() > 0.5 and outcomes.max() <= when.max()


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


def test_a_failing_server_child_shows_its_own_error(tmp_path):
    """When `abtest serve` exits before it is healthy, its own message is in the error."""
    from abtest.embedded import EmbeddedRedis, free_port
    from abtest.errors import StoreUnavailable
    from abtest.service_process import running_service

    with (
        EmbeddedRedis(tmp_path),  # holds the data dir, so the child's redis cannot start
        pytest.raises(StoreUnavailable) as failed,
        running_service(tmp_path, free_port()),
    ):
        pass
    message = str(failed.value)
    assert "exited with code 2" in message
    assert "in use by another abtest redis-server" in message
