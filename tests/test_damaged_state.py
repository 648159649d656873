"""Damaged state found by a rerun: a cut or altered parquet part, a corrupt run.json, a stale lock,
a damaged or foreign calls.sqlite. Each is said in one warning, set aside under a telling name
(never deleted), and what it held is computed again, so the corpus comes out as it would have.

Runs use the template generator (no model) so each takes seconds; the foreign-cache test needs
LLM calls and uses the fake OpenAI-compatible server (no real API can be reached here).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.conftest import kept_files, run_synth, write_taxonomy
from tests.fake_llm_server import FakeLLMServer


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(taxonomy, out) of a finished template run that tests copy and damage."""
    root = tmp_path_factory.mktemp("finished")
    taxonomy = write_taxonomy(root, settings={"max_rounds": 1})
    out = root / "out"
    result = run_synth(*_args(taxonomy, out))
    assert result.returncode == 0, result.stderr
    return taxonomy, out


def _args(taxonomy: Path, out: Path, n: int = 40) -> list[Any]:
    return ["run", "--taxonomy", taxonomy, "--n", n, "--out", out, "--backend", "template"]


def _copy(finished: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    taxonomy, out = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return taxonomy, copy


def _items(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "corpus" / "items.parquet").sort("id")


def _warnings(stderr: str) -> list[str]:
    """The `warning:` lines about damage (not the one about a missing Hangul font, which a
    machine without one adds to every report)."""
    return [
        line
        for line in stderr.splitlines()
        if line.startswith("warning:") and "font with Hangul" not in line
    ]


@pytest.mark.parametrize("damage", ["cut", "flipped byte"])
@pytest.mark.parametrize(
    "part", ["round-001/generate/part-00000.parquet", "round-001/plan.parquet"]
)
def test_a_damaged_part_is_set_aside_and_computed_again(
    finished: tuple[Path, Path], tmp_path: Path, damage: str, part: str
) -> None:
    taxonomy, out = _copy(finished, tmp_path)
    path = out / part
    data = bytearray(path.read_bytes())
    if damage == "cut":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF  # inside a data page, which its CRC catches
    path.write_bytes(bytes(data))
    result = run_synth(*_args(taxonomy, out))
    assert result.returncode == 0, result.stderr
    (warning,) = _warnings(result.stderr)
    assert part in warning and "damaged" in warning and "computed again" in warning
    assert path.with_name(path.name + ".damaged").read_bytes() == bytes(data)
    assert pl.read_parquet(path).equals(pl.read_parquet(finished[1] / part))
    assert _items(out).equals(_items(finished[1]))


def test_a_corrupt_run_json_is_rebuilt_when_calls_sqlite_confirms_the_settings(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    taxonomy, out = _copy(finished, tmp_path)
    (out / "run.json").write_text('{"config_hash": "abc", "stages": {', encoding="utf-8")
    result = run_synth(*_args(taxonomy, out))
    assert result.returncode == 0, result.stderr
    (warning,) = _warnings(result.stderr)
    assert "run.json is damaged" in warning and "run.json.damaged" in warning
    assert (out / "run.json.damaged").read_text().startswith('{"config_hash": "abc"')
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    assert _items(out).equals(_items(finished[1]))


def test_a_corrupt_run_json_of_other_settings_is_one_line_and_nothing_is_touched(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    taxonomy, out = _copy(finished, tmp_path)
    (out / "run.json").write_bytes(b"\x00\x01 not json")
    before = kept_files(out)
    result = run_synth(*_args(taxonomy, out, n=41))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "run.json: run manifest is damaged" in result.stderr and "--fresh" in result.stderr
    assert kept_files(out) == before


def test_a_stale_lock_of_a_dead_process_does_not_block_a_rerun(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    taxonomy, out = _copy(finished, tmp_path)
    dead = 2**22 + 17  # above pid_max's default, so no live process has it
    (out / ".lock").write_text(str(dead))
    result = run_synth(*_args(taxonomy, out))
    assert result.returncode == 0, result.stderr
    assert not _warnings(result.stderr)


@pytest.mark.parametrize("where", ["calls.sqlite", "embeddings/e5.sqlite"])
def test_a_damaged_sqlite_file_is_set_aside_and_replaced(
    finished: tuple[Path, Path], tmp_path: Path, where: str
) -> None:
    taxonomy, out = _copy(finished, tmp_path)
    (out / where).write_bytes(b"this is not an SQLite database" * 100)
    shutil.rmtree(out / "round-001" / "dedup")  # so dedup needs its vectors again
    result = run_synth(*_args(taxonomy, out))
    assert result.returncode == 0, result.stderr
    (warning,) = _warnings(result.stderr)
    assert where in warning and f"{Path(where).name}.damaged" in warning
    assert (out / f"{where}.damaged").read_bytes().startswith(b"this is not")
    assert sqlite3.connect(out / where).execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert _items(out).equals(_items(finished[1]))


def test_calls_sqlite_of_another_run_is_never_used(tmp_path: Path) -> None:
    taxonomy = write_taxonomy(
        tmp_path, settings={"calls_per_batch": 1, "items_per_call": 4, "max_rounds": 1}
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    with FakeLLMServer() as server:

        def run(out: Path) -> Any:
            args = ["--backend", "openai", "--model", "gpt-4o-mini", "--base-url", server.url]
            return run_synth(
                "run", "--taxonomy", taxonomy, "--n", "8", "--out", out, *args, "--yes", env=env
            )

        assert run(tmp_path / "a").returncode == 0
        calls_of_a = sum(server.answered.values())
        (tmp_path / "b").mkdir()
        shutil.copy(tmp_path / "a" / "run.json", tmp_path / "b" / "run.json")
        manifest = json.loads((tmp_path / "b" / "run.json").read_text())
        manifest["run_id"] = "another-run"
        (tmp_path / "b" / "run.json").write_text(json.dumps(manifest))
        for name in ("calls.sqlite", "calls.sqlite-wal"):
            if (tmp_path / "a" / name).exists():
                shutil.copy(tmp_path / "a" / name, tmp_path / "b" / name)
        result = run(tmp_path / "b")
    assert result.returncode == 0, result.stderr
    (warning,) = _warnings(result.stderr)
    assert "belongs to another run" in warning and "calls.sqlite.foreign" in warning
    assert (tmp_path / "b" / "calls.sqlite.foreign").exists()
    # every call of b was made anew, none answered from a's cache
    assert sum(server.answered.values()) == 2 * calls_of_a
