"""The package imports and the CLI answers."""

import pytest

from abtest.cli import main


def test_help_exits_zero(capsys):
    """`abtest --help` prints usage with every command group and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("validate", "assign", "serve", "keys", "export", "power", "mde", "demo"):
        assert command in out
