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


def test_every_public_analysis_name_resolves():
    """Each name in analysis.__all__ loads lazily from the module it is mapped to."""
    import importlib
    import pkgutil
    import types

    import analysis

    # Import every submodule first: that is what rebinds a package attribute to a module.
    for module in pkgutil.walk_packages(analysis.__path__, "analysis."):
        importlib.import_module(module.name)
    for name in analysis.__all__:
        assert not isinstance(getattr(analysis, name), types.ModuleType), name


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        (
            "import abtest; import abtest.assignment",
            ("pandas", "flask", "duckdb", "scipy", "pydantic"),
        ),
        ("import analysis.planning.power", ("pandas", "duckdb", "matplotlib")),
    ],
)
def test_light_imports_stay_light(statement, forbidden):
    """The assignment hot path and the planning functions do not import heavy libraries."""
    import subprocess
    import sys

    code = f"{statement}; import sys; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())  # fmt: skip
    assert not loaded & set(forbidden)
