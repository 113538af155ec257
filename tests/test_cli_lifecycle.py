"""`abtest push | start | stop | ship` against the real app served over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from abtest.cli import main
from tests.conftest import Api, simple_config
from tests.test_client import serve


@pytest.fixture
def service(app, api: Api, monkeypatch) -> Iterator[Api]:
    """The app on a real loopback port, with ABTEST_URL and ABTEST_API_KEY set."""
    server, thread = serve(app)
    monkeypatch.setenv("ABTEST_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("ABTEST_API_KEY", api.admin_key)
    yield api
    server.shutdown()
    thread.join()


def config_file(tmp_path: Path, **changes: object) -> str:
    """An experiment JSON file on disk."""
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(simple_config(**changes)))
    return str(path)


def test_push_creates_then_updates(service, tmp_path, capsys):
    """push creates a draft, and a second push stores a new version."""
    assert main(["push", config_file(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "exp: draft (config version 1)"
    assert main(["push", config_file(tmp_path, description="second thoughts")]) == 0
    assert "config version 2" in capsys.readouterr().out


@pytest.mark.parametrize("status_in_file", [None, "running", "draft"])
def test_push_again_leaves_the_lifecycle_alone(service, tmp_path, capsys, status_in_file):
    """The same file pushed to a draft and to a running experiment stores a new version;
    a ``status`` in the file (or none, read as draft) never tries to move the lifecycle."""
    changes = {} if status_in_file is None else {"status": status_in_file}
    path = config_file(tmp_path, **changes)
    assert main(["push", path]) == 0
    assert main(["push", path]) == 0
    assert main(["start", "exp"]) == 0
    assert main(["push", path]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "exp: running (config version 4)"


def test_start_stop_ship_land_in_the_audit_trail(service, tmp_path, capsys):
    """Each lifecycle command changes the status and adds a history entry with the key id."""
    assert main(["push", config_file(tmp_path)]) == 0
    assert main(["start", "exp"]) == 0
    assert main(["stop", "exp"]) == 0
    assert main(["ship", "exp", "treatment", "--yes", "--json", "--reason", "PM sign-off"]) == 0
    shipped = json.loads(capsys.readouterr().out.split("\n", 3)[-1])
    assert (shipped["status"], shipped["config"]["winner"]) == ("shipped", "treatment")
    history = service.call("GET", "/v1/experiments/exp/history").get_json()
    entries = history["history"] if isinstance(history, dict) else history
    assert len(entries) == 4
    assert entries[-1]["reason"] == "PM sign-off"
    assert service.assign("exp", "anyone")["variant"] == "treatment"


def test_ship_without_terminal_needs_yes(service, tmp_path, capsys, monkeypatch):
    """Without a terminal to confirm on, ship refuses unless --yes is given."""
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["push", config_file(tmp_path)]) == 0
    assert main(["ship", "exp", "treatment"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert service.call("GET", "/v1/experiments/exp").get_json()["status"] == "draft"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["start", "nope"], "no experiment"),
        (["ship", "exp", "v9", "--yes"], "v9"),
        (["push", "/no/such.json"], "No such file"),
    ],
)
def test_errors_are_one_line_exit_2(service, tmp_path, capsys, argv, message):
    """Service errors (404, 4xx) and bad files are one line with exit code 2."""
    assert main(["push", config_file(tmp_path)]) == 0
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


def test_missing_key_and_wrong_role(service, tmp_path, capsys, monkeypatch):
    """No key is a usage error; an sdk key is refused by the service (403)."""
    monkeypatch.delenv("ABTEST_API_KEY")
    assert main(["start", "exp"]) == 2
    assert "ABTEST_API_KEY" in capsys.readouterr().err
    assert main(["start", "exp", "--api-key", service.sdk_key]) == 2
    assert "abtest: error:" in capsys.readouterr().err
