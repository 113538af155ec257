"""The package imports and the CLI answers."""

from abtest.cli import main


def test_help_exits_zero(capsys):
    """`abtest --help` prints usage and exits 0."""
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "validate" in capsys.readouterr().out
