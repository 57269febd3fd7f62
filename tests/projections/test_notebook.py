"""The notebook in notebooks/ runs against published projections."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.projections.test_status import published

ROOT = Path(__file__).resolve().parents[2]


def test_the_saga_history_notebook_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = published(tmp_path)
    monkeypatch.setenv("SAGA_DATA_DIR", str(data))
    notebook = json.loads((ROOT / "notebooks" / "saga_history.ipynb").read_text())
    scope: dict[str, object] = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec("".join(cell["source"]), scope)
    out = capsys.readouterr().out
    assert "snapshot published" in out
    assert "compensated" in out and "process_payment.compensate" in out
    assert "saga_started" in out
    assert os.environ["SAGA_DATA_DIR"] == str(data)
