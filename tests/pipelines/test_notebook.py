"""examples/segmentation_quickstart.ipynb runs end to end through the Python API.

The notebook's code cells are executed in order in one namespace (as a kernel would), with the
cell tagged ``parameters`` replaced by smaller values so CI stays fast; the full-length run is
``tests/pipelines/test_segmentation.py::test_full_demo_reaches_dice_085``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "segmentation_quickstart.ipynb"


def _code_cells() -> list[dict[str, Any]]:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def test_notebook_has_no_stored_outputs() -> None:
    # Outputs are generated, not committed.
    assert all(not c["outputs"] and c["execution_count"] is None for c in _code_cells())


def test_notebook_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = {"__name__": "__notebook__"}
    for cell in _code_cells():
        source = "".join(cell["source"])
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = f"OUT = {str(tmp_path)!r}\nN_CASES = 5\nEPOCHS = 2\n"
        exec(compile(source, f"{NOTEBOOK.name}:{cell['id']}", "exec"), namespace)
    scores = namespace["scores"]
    assert scores.summary["mean_dice"] >= 0.0
    assert (tmp_path / "run" / "evaluation" / "summary.json").is_file()
    predictions = namespace["predicted"].cases
    assert predictions
    assert all(c.status == "written" for c in predictions)
    assert "mean Dice" in capsys.readouterr().out
