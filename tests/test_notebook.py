"""The analysis notebook runs top to bottom against a real run (the template run the tests
make), with a real Jupyter kernel, as a researcher would open it."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def test_the_analysis_notebook_executes_against_a_run(
    template_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTH_RUN", str(template_run))
    notebook = nbformat.read(ROOT / "notebooks" / "run_analysis.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 6, "the report's figures are drawn in the notebook too"
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("crime_advice" in o["data"]["text/html"] for o in tables)
    assert os.environ["SYNTH_RUN"] in str(outputs[0].get("text", ""))
