"""notebooks/saga_history.ipynb runs top to bottom on a fresh `saga run`,
headless through a real Jupyter kernel (nbclient), from a directory that is not
the repository's, finding the run in the platform's default data dir by itself.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import duckdb
import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import FinishedRun

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "saga_history.ipynb"
SAGA = [sys.executable, "-m", "actors.app.cli"]

#: The sections that each draw a chart, by their headings.
CHARTS = (
    "Outcomes over time",
    "Duration distribution per saga type",
    "Step latency percentiles",
    "Retries and compensations",
    "Dead letters by error",
    "One saga's timeline",
    "The state of everything at one instant",
    "Backtest: what if the policy changed",
)
BACKTEST = "## Backtest: what if the policy changed"


def execute(home: Path, elsewhere: Path) -> nbformat.NotebookNode:
    """The notebook, executed by a python3 kernel whose data dir is under
    ``home`` and whose working directory is ``elsewhere``; a cell's error
    raises (nbclient's CellExecutionError). A last cell reports which Python
    the kernel ran."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    elsewhere.mkdir()
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(elsewhere)}},
    )
    client.execute(env={**os.environ, "XDG_DATA_HOME": str(home)})
    return notebook


def sections(notebook: nbformat.NotebookNode) -> dict[str, list[Any]]:
    """Each section's heading, and the outputs of its code cells."""
    found: dict[str, list[Any]] = {"": []}
    heading = ""
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("#"):
            heading = cell.source.splitlines()[0].lstrip("#").strip()
            found[heading] = []
        elif cell.cell_type == "code":
            found[heading] += cell.outputs
    return found


def text(outputs: list[Any]) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream")


def images(outputs: list[Any]) -> int:
    return sum(1 for o in outputs if "image/png" in o.get("data", {}))


@pytest.mark.broker
def test_the_notebook_charts_a_fresh_run_found_without_being_told(
    frozen_run: FinishedRun, tmp_path: Path
) -> None:
    notebook = execute(frozen_run.home, tmp_path / "elsewhere")
    # The kernel ran the Python that runs these tests (the venv's).
    assert text(notebook.cells.pop().outputs).strip() == sys.prefix
    # Found in the default data dir, from a directory that has nothing to do
    # with it.
    setup = next(c for c in notebook.cells if c.cell_type == "code").outputs
    assert f"reading run {frozen_run.directory.name}" in text(setup)
    assert f"reading {frozen_run.directory / 'projections'}" in text(setup)
    executed = sections(notebook)
    for heading in CHARTS:
        assert images(executed[heading]) >= 1, heading

    summary = frozen_run.summary
    durations = text(executed["Duration distribution per saga type"])
    assert "compensated" in durations and "p99_ms" in durations
    retries = text(executed["Retries and compensations"])
    assert f"{summary['compensated']} ran a compensation" in retries
    # The timeline picks a compensated saga.
    assert ": compensated, " in text(executed["One saga's timeline"])
    instant = text(executed["The state of everything at one instant"])
    assert "sagas started" in instant and "next_offset_at_end" in instant
    # The frozen account service's deposits: replayed as recorded, and
    # timing out less under the notebook's longer timeouts.
    backtest = text(executed["Backtest: what if the policy changed"])
    sagas = summary["sagas"]
    assert f"reproduces {sagas:,} of {sagas:,} recorded outcomes" in backtest


@pytest.mark.broker
def test_a_run_without_dead_letters_says_so_instead_of_charting(
    frozen_run: FinishedRun, tmp_path: Path
) -> None:
    # The same run, its dead letters gone, as a run without faults leaves it.
    home = tmp_path / "xdg-data"
    copy = home / "saga" / frozen_run.directory.name
    shutil.copytree(frozen_run.directory / "projections", copy / "projections")
    letters = str(copy / "projections" / "dead_letters.parquet")
    duckdb.execute(
        f"COPY (SELECT * FROM read_parquet('{letters}') WHERE false) "
        f"TO '{letters}.new' (FORMAT parquet)"
    )
    os.replace(f"{letters}.new", letters)

    executed = sections(execute(home, tmp_path / "elsewhere"))
    dead = executed["Dead letters by error"]
    assert images(dead) == 0
    assert "No dead letters in this run" in text(dead)
    for heading in CHARTS:
        if heading != "Dead letters by error":
            assert images(executed[heading]) >= 1, heading


def test_the_notebook_is_kept_without_outputs_and_reads_no_environment() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    # The data is found by the platform's rules (default_data_dir), not an
    # environment variable of the notebook's own.
    assert not any("environ" in c.source or "getenv" in c.source for c in code)
    assert "DATA_DIR = None  # None: the newest run" in code[0].source
    # The backtest's section comes last.
    heading, last = notebook.cells[-2:]
    assert heading.cell_type == "markdown" and heading.source.startswith(BACKTEST)
    assert "backtest(" in last.source and "POLICY = " in last.source
    assert notebook.metadata.kernelspec.name == "python3"
