"""`abtest validate` and `abtest assign`: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from abtest.cli import main

EXAMPLE = str(Path(__file__).parents[1] / "examples" / "ranker-v2.json")


def test_validate_ok(capsys):
    """A valid config prints 'ok' and exits 0."""
    assert main(["validate", EXAMPLE]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_validate_lists_every_problem(tmp_path, capsys):
    """An invalid config prints one line per problem and exits 1."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"key": "Bad", "traffic": 3, "variants": [{"key": "a"}]}))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "key:" in err and "traffic:" in err and "variants:" in err


def test_assign_json_output(capsys):
    """--json prints the assignment object with the unit id."""
    code = main(["assign", "--config", EXAMPLE, "--unit-id", "qa-alice", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unit_id"] == "qa-alice" and out["variant"] == "v2" and out["reason"] == "forced"


def test_assign_parses_typed_attributes(capsys):
    """--attr values parse as JSON when they can, so numeric targeting works."""
    args = ["assign", "--config", EXAMPLE, "--unit-id", "user-1", "--json"]
    assert main([*args, "--attr", "country=DE", "--attr", "app_version=100"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "not_targeted"  # 100 < 412
    assert main([*args, "--attr", "country=DE", "--attr", "app_version=500"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] != "not_targeted"


def test_assign_human_output(capsys):
    """Without --json the assignment is a readable block."""
    assert main(["assign", "--config", EXAMPLE, "--unit-id", "qa-bob"]) == 0
    out = capsys.readouterr().out
    assert "variant     v1" in out and "reason      forced" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuchcommand"], "invalid choice"),
        (["assign", "--config", EXAMPLE], "--unit-id"),
        (["assign", "--config", "/no/such/file.json", "--unit-id", "u"], "No such file"),
        (["assign", "--config", EXAMPLE, "--unit-id", "u", "--attr", "novalue"], "K=V"),
        (["assign", "--config", EXAMPLE, "--unit-id", "x" * 300], "longer than"),
        (["assign", "--config", EXAMPLE, "--unit-id", ""], "non-empty"),
        (["validate"], "required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    """Bad arguments exit with code 2 and a single 'abtest: error:' line naming the problem."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("abtest: error:") and message in err[0]


def test_invalid_config_in_assign_exits_2(tmp_path, capsys):
    """assign on a broken config exits 2 with the first problem named."""
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    assert main(["assign", "--config", str(path), "--unit-id", "u"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_console_script_runs_as_a_process():
    """The installed entry point works in a real process and prints no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "abtest", "assign", "--config", EXAMPLE, "--unit-id", ""],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
