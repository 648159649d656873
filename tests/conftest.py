"""Shared fixtures: a small copy of the project's own taxonomy and prompts, and CLI runners.

Tests build their taxonomies from the shipped `taxonomy.yaml` (a subset of its categories, smaller
settings) so every Korean sentence they use is the project's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[1]
# nothing in the tests may reach a model hub: models and datasets are local files
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def write_taxonomy(
    directory: Path,
    categories: tuple[str, ...] = ("crime_advice", "lookalike"),
    settings: dict[str, Any] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Copy prompts/ and a trimmed taxonomy.yaml into `directory` (the prompt files and response
    policies of dropped categories removed, as a researcher would); returns the taxonomy path."""
    document = yaml.safe_load((ROOT / "taxonomy.yaml").read_text(encoding="utf-8"))
    document["categories"] = [c for c in document["categories"] if c["id"] in categories]
    # the small runs' expected quotas are written for a 70/30 split (the shipped file gives half
    # to the safe side, for the twins of a full taxonomy's sub-harms)
    document["settings"].update({"safe_share": 0.3, **(settings or {})})
    if edit is not None:
        edit(document)
    prompts = directory / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    for path in (prompts / "generate").glob("*.j2"):
        if path.stem not in categories:
            path.unlink()
    responses = prompts / "respond" / "templates.yaml"
    policies = yaml.safe_load(responses.read_text(encoding="utf-8"))
    policies["categories"] = {
        key: value for key, value in policies["categories"].items() if key in categories
    }
    responses.write_text(yaml.safe_dump(policies, allow_unicode=True, sort_keys=False), "utf-8")
    path = directory / "taxonomy.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")
    return path


@pytest.fixture
def small_taxonomy(tmp_path: Path) -> Path:
    """Two categories (one unsafe, one safe), one call per checkpoint part."""
    return write_taxonomy(tmp_path, settings={"calls_per_batch": 1, "items_per_call": 4})


@pytest.fixture(scope="session")
def template_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of four categories from the template generator (no model, seconds), with
    its corpus and report; tests may add to it (eval/), never change what the run made."""
    root = tmp_path_factory.mktemp("template-run")
    categories = ("crime_advice", "insult_offense", "lookalike", "everyday")
    taxonomy = write_taxonomy(root, categories=categories, settings={"max_rounds": 2})
    out = root / "out"
    args = ["run", "--taxonomy", str(taxonomy), "--n", "120", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--backend", "template"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def cli() -> Callable[..., Any]:
    """Invoke `synth` in-process (fast); returns the click Result with stdout and stderr apart."""
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, [str(arg) for arg in args])

    return invoke


def run_synth(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the real `synth` console script in a subprocess (`env` adds to this one's)."""
    env = {**os.environ, "COLUMNS": "200", **kwargs.pop("env", {})}
    return subprocess.run(
        [str(Path(sys.executable).parent / "synth"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        **kwargs,
    )


def kept_files(out: Path) -> dict[str, bytes]:
    """Every file a run keeps, by relative path: not the lock's pid, nor the WAL index SQLite
    creates when a reader opens a database (a run refused with one line changes neither)."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != ".lock" and not path.name.endswith(("-shm", "-wal"))
    }
