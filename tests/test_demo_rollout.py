"""``abtest demo --scenario rollout`` end to end: a real service process on the controlled
clock, real HTTP, the real monitor, a real local webhook receiver; the slow model is rolled
back at an early step with a signed delivery, the other ships, and the report shows both
timelines."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ABTEST = Path(sys.executable).with_name("abtest")


@pytest.fixture(scope="module")
def rollout_run(tmp_path_factory):
    """One run with fewer users per hour than the default (the same story, quicker)."""
    cwd = tmp_path_factory.mktemp("rollout-demo")
    proc = subprocess.run(
        [str(ABTEST), "demo", "--scenario", "rollout", "--users-per-hour", "60",
         "--data-dir", "d"],
        capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
    )  # fmt: skip
    return proc, cwd / "d"


def test_the_slow_model_is_rolled_back_early_and_the_other_ships(rollout_run):
    proc, data_dir = rollout_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((data_dir / "rollouts.json").read_text())
    slow, fast = summary["rollouts"]["ranker-v4-rollout"], summary["rollouts"]["ranker-v3-rollout"]
    assert slow["status"] == "rolled_back" and slow["step"] <= 2
    assert fast["status"] == "shipped" and fast["step"] == fast["steps_total"]
    # Every decision is a check in the timeline; the shipped one advanced through each step.
    assert [c["action"] for c in fast["checks"] if c["acted"]] == ["advance"] * 3
    assert [c["action"] for c in slow["checks"] if c["acted"]] == ["roll_back"]
    assert re.search(r"ranker-v4-rollout: roll back at step [12] - guardrail latency_ms is "
                     r"higher", proc.stdout)  # fmt: skip
    # The traffic spread over simulated days: the ship came more than a day after the start.
    steps = {s["step"]: s["entered_at"] for s in fast["steps"]}
    assert steps[4][:10] > steps[1][:10]


def test_the_rollback_is_an_alert_delivered_to_the_local_webhook(rollout_run):
    proc, data_dir = rollout_run
    summary = json.loads((data_dir / "rollouts.json").read_text())
    (alert,) = [a for a in summary["alerts"] if a["kind"] == "rollout_rolled_back"]
    assert alert["experiment"] == "ranker-v4-rollout" and alert["severity"] == "critical"
    (delivery,) = summary["deliveries"]
    assert delivery["verified"]
    assert delivery["body"]["event"] == "alert.raised"
    assert delivery["body"]["alert"]["id"] == alert["id"]
    assert "6. webhook   received [CRITICAL] ranker-v4-rollout: rollout_rolled_back" in proc.stdout


def test_the_report_shows_both_timelines(rollout_run):
    _, data_dir = rollout_run
    html = (data_dir / "rollout-report.html").read_text()
    for key in ("ranker-v3-rollout", "ranker-v4-rollout"):
        assert f'id="{key}"' in html
    assert html.count("data:image/png;base64,") == 2
    assert "rolled back" in html and "shipped" in html
    assert not re.search(r'src="(?!data:)', html)


def test_the_scenario_flag_is_checked():
    proc = subprocess.run([str(ABTEST), "demo", "--users-per-hour", "50"], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "--users-per-hour belongs to --scenario rollout" in proc.stderr
