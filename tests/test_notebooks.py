"""The notebooks in notebooks/ are committed executed, so a reader on the repository page
sees their numbers and figures, and they run top to bottom in a real Jupyter kernel, so
none can rot.

After a change that moves a printed number, re-execute and save them with
``python -m tests.test_notebooks``; the slow test below says so when they are stale.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
# A cell that draws: pyplot, a report figure builder, or an explicit display().
_DRAWS = re.compile(r"plt\.subplots|_figure\(|\bdisplay\(")
# Absolute paths of a machine (POSIX homes and temporary directories, Windows drives).
_MACHINE_PATH = re.compile(r"(?<![\w.])(/tmp/|/var/|/private/|/home/|/Users/|/root/|/work/|"
                           r"[A-Za-z]:\\)")  # fmt: skip
_MAX_BYTES = 400_000


@contextmanager
def _jupyter_environment() -> Iterator[None]:
    # jupyter_core warns (DeprecationWarning -> error here) unless the new paths are opted in.
    saved = os.environ.get("JUPYTER_PLATFORM_DIRS")
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PLATFORM_DIRS")
        else:
            os.environ["JUPYTER_PLATFORM_DIRS"] = saved


def execute(path: Path) -> Any:
    """``path`` executed top to bottom in a fresh python3 kernel (the notebook's folder as
    working directory); cell timings are not recorded, so a saved notebook stays stable."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    with _jupyter_environment():
        client.execute()
    return notebook


def _code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _images(cell: Any) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def _stdout(cell: Any) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def test_there_are_notebooks():
    """The glob finds the notebooks (a moved folder must not silently skip them all)."""
    assert {path.name for path in NOTEBOOKS} >= {
        "01_power_analysis.ipynb",
        "02_analyze_experiment.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_committed_notebook_shows_its_numbers_and_figures(path):
    """Every code cell ran in order, every drawing cell holds its PNG, nothing failed or
    warned, no output names a path of the machine that ran it, and the file stays small."""
    notebook = nbformat.read(path, as_version=4)
    cells = _code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    drawing = [cell for cell in cells if _DRAWS.search(cell.source)]
    assert drawing, "a notebook without figures: is _DRAWS still right?"
    for cell in drawing:
        assert _images(cell) >= 1, f"no figure saved for:\n{cell.source}"
    for cell in cells:
        assert cell.outputs or cell.source.strip().startswith("%"), f"no output:\n{cell.source}"
        for output in cell.outputs:
            assert output.output_type != "error"
            assert output.get("name") != "stderr", output.get("text")
            text = str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
            text += str(output.get("data", {}).get("text/html", ""))
            assert not _MACHINE_PATH.search(text), text
    assert path.stat().st_size < _MAX_BYTES


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_executes_and_matches_what_is_committed(path):
    """A fresh run has no error, draws the same figures and prints what is committed."""
    committed = _code_cells(nbformat.read(path, as_version=4))
    fresh = _code_cells(execute(path))
    errors = [o for cell in fresh for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    assert [_images(cell) for cell in fresh] == [_images(cell) for cell in committed]
    stale = [cell.source for old, cell in zip(committed, fresh, strict=True)
             if _stdout(old) != _stdout(cell)]  # fmt: skip
    assert stale == [], "stale outputs: re-execute with `python -m tests.test_notebooks`"


def _save_executed(paths: list[Path]) -> None:
    for path in paths:
        nbformat.write(execute(path), path)
        print(f"executed and saved {path.name}")


if __name__ == "__main__":
    _save_executed([Path(arg).resolve() for arg in sys.argv[1:]] or NOTEBOOKS)
