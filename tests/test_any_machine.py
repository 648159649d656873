"""The default job runs on any x86-64 machine: a CPU that faults on llama.cpp's extra buffer types
(AMX advertised but unusable), threads bounded by the cores, no Hangul font.

The CPU fault is forced by the `llama-probe` failpoint: the probe child dies as it does on such a
VM, so the fallback is proved on every machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.backends import llama_probe
from pipeline.backends.base import Request
from pipeline.backends.local import LocalBackend
from pipeline.config import RunOptions, prepare
from pipeline.errors import SynthWarning, UserError
from tests.conftest import run_synth, write_taxonomy

CORES = len(os.sched_getaffinity(0))
FIRST_TRY_DIES = "llama-probe@extra-buffers-on"
BOTH_TRIES_DIE = "llama-probe"


@pytest.fixture
def verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty per-machine verdict file of this test's own (and this process's memo emptied)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(llama_probe, "_known", {})
    return llama_probe.verdicts_path()


def _warning_lines(stderr: str, about: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:") and about in line]


@pytest.mark.slow
def test_a_cpu_faulting_on_extra_buffers_gets_them_off_and_still_writes_text(
    verdicts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTH_FAILPOINTS", FIRST_TRY_DIES)  # read by the probe children only
    backend = LocalBackend(threads=1)
    with pytest.warns(SynthWarning, match="extra buffer types"):
        answer = backend._complete(Request(prompt="한국어 질문 목록:\n1. ", max_tokens=16, seed=1))
    llama = backend._llama
    assert llama.model_params.use_extra_bufts is False
    assert (llama.n_threads, llama.n_threads_batch) == (1, 1)
    assert answer.text.strip() and answer.output_tokens > 0
    backend.close()
    (verdict,) = json.loads(verdicts.read_text(encoding="utf-8")).values()
    assert verdict["extra_buffers"] is False


@pytest.mark.slow
def test_synth_run_on_a_faulting_cpu_finishes_with_one_warning_then_skips_the_probe(
    tmp_path: Path,
) -> None:
    taxonomy = write_taxonomy(
        tmp_path, settings={"calls_per_batch": 1, "items_per_call": 4, "max_rounds": 1}
    )
    cache = tmp_path / "cache"
    args = ["run", "--taxonomy", taxonomy, "--n", "2", "--threads", "1"]
    env = {"XDG_CACHE_HOME": str(cache), "SYNTH_FAILPOINTS": FIRST_TRY_DIES}
    first = run_synth(*args, "--out", tmp_path / "first", env=env)
    assert first.returncode == 0, first.stderr
    assert len(_warning_lines(first.stderr, "extra buffer types")) == 1, first.stderr
    texts = pl.read_parquet(tmp_path / "first" / "round-*" / "generate" / "*.parquet")["text"]
    assert any(re.search(r"[가-힣]", text) for text in texts)
    # remembered: with both tries now doomed, a probe would end the run; none runs
    env["SYNTH_FAILPOINTS"] = BOTH_TRIES_DIE
    second = run_synth(*args, "--out", tmp_path / "second", env=env)
    assert second.returncode == 0, second.stderr
    assert not _warning_lines(second.stderr, "extra buffer types"), second.stderr


@pytest.mark.slow
def test_llama_dying_either_way_is_one_error_line_saying_what_to_do(
    small_taxonomy: Path,
    tmp_path: Path,
    verdicts: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
) -> None:
    monkeypatch.setenv("SYNTH_FAILPOINTS", BOTH_TRIES_DIE)
    result = cli("run", "--taxonomy", small_taxonomy, "--n", "2", "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: llama.cpp crashed on this CPU (SIGKILL;")
    assert "--backend template" in line and 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in line
    assert not verdicts.exists(), "a failure is not remembered: the next run tries again"


def test_a_remembered_verdict_skips_the_probe(
    tmp_path: Path, verdicts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    llama_probe._remember(llama_probe.machine_key(model), False, model)
    monkeypatch.setattr(llama_probe, "_known", {})  # as a later process would start

    def no_probe(*args: object, **kwargs: object) -> None:
        raise AssertionError("probed although the verdict was remembered")

    monkeypatch.setattr(llama_probe, "probe", no_probe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and says nothing again
        assert llama_probe.extra_buffers_usable(model, 1) is False
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    with pytest.raises(AssertionError, match="probed"):
        llama_probe.extra_buffers_usable(other, 1)  # another model is another verdict


def test_a_probe_failing_without_a_crash_is_no_verdict(tmp_path: Path, verdicts: Path) -> None:
    """A file llama.cpp cannot load says nothing about the CPU: the real load reports it."""
    model = tmp_path / "not-a-model.gguf"
    model.write_bytes(b"not a gguf file")
    assert llama_probe.probe(model, 1, extra_buffers=True) == llama_probe.NO_VERDICT
    assert llama_probe.extra_buffers_usable(model, 1) is True
    assert not verdicts.exists()


def test_threads_reach_llama_from_the_command_line(
    small_taxonomy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Callable[..., Any],
) -> None:
    loaded: list[int] = []

    def load_llama(model_path: Path, n_ctx: int, threads: int, extra_buffers: bool) -> None:
        loaded.append(threads)
        raise UserError("stopped at the model load")

    monkeypatch.setattr(llama_probe, "extra_buffers_usable", lambda path, threads: True)
    monkeypatch.setattr(llama_probe, "load_llama", load_llama)
    args = ["run", "--taxonomy", small_taxonomy, "--n", "2", "--out", tmp_path / "out"]
    result = cli(*args, "--threads", "1")
    assert "stopped at the model load" in result.stderr
    assert loaded and set(loaded) == {1}
    result = cli(*args, "--threads", "0")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --threads must be at least 1 (got 0)"


def test_threads_default_to_the_cores_never_exceed_them_and_do_not_block_resume(
    small_taxonomy: Path, tmp_path: Path
) -> None:
    def prepared(threads: int | None) -> Any:
        return prepare(RunOptions(small_taxonomy, 2, tmp_path / "out", threads=threads))

    assert prepared(None).threads == CORES
    assert prepared(CORES + 7).threads == CORES
    assert prepared(1).threads == 1
    assert prepared(1).snapshot == prepared(None).snapshot, "speed, not results"
    assert LocalBackend(threads=CORES + 7).threads == CORES
    assert LocalBackend().threads == CORES


def test_without_a_hangul_font_the_report_says_so_once(
    template_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Any]
) -> None:
    """matplotlib warns once per missing glyph (hundreds per report); the user reads one line."""
    import pipeline.report

    monkeypatch.setattr(pipeline.report, "hangul_font", lambda: None)
    copy = tmp_path / "run"
    shutil.copytree(template_run, copy)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        result = cli("report", copy)
    assert result.exit_code == 0, result.output
    glyphs = [str(w.message) for w in leaked if "missing from" in str(w.message)]
    assert not glyphs, "no glyph warning reaches the terminal"
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("warning: no font with Hangul is installed")
    assert f"synth report {copy}" in line
