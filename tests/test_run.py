"""`synth run` end to end on the real local model: checkpoints, status, resume, kill, refusal.

These start the real `synth` console script with the bundled Gemma 3 270M model (about a second
per call on two cores), as a user would.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from pipeline.events import read_events
from pipeline.lock import RunLock
from tests.conftest import run_synth, write_taxonomy

HANGUL = re.compile(r"[가-힣]")


def _llm_call_keys(out: Path) -> list[str]:
    return [
        event["key"] for event in read_events(out / "events.jsonl") if event["event"] == "llm_call"
    ]


def _cached_calls(out: Path) -> int:
    path = out / "calls.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _planned_calls(out: Path) -> int:
    return sum(pl.read_parquet(plan).height for plan in out.glob("round-*/plan.parquet"))


def _rows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "round-*" / "generate" / "*.parquet").sort("id", "task_id")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One small finished run (two categories, n=6), shared by the read-only tests."""
    root = tmp_path_factory.mktemp("finished")
    taxonomy = write_taxonomy(root, settings={"calls_per_batch": 1, "items_per_call": 4})
    out = root / "out"
    result = run_synth("run", "--taxonomy", taxonomy, "--n", "6", "--out", out)
    assert result.returncode == 0, result.stderr
    return taxonomy, out


def test_run_writes_korean_checkpoints_for_every_category(finished_run: tuple[Path, Path]) -> None:
    _, out = finished_run
    parts = sorted(out.glob("round-001/generate/part-*.parquet"))
    assert parts, "each finished batch is a parquet part"
    rows = _rows(out)
    assert set(rows["category"]) == {"crime_advice", "lookalike"}
    assert all(HANGUL.search(text) for text in rows["text"])
    assert set(rows["generator"]) == {"local:gemma-3-270m-q4_k_m"}
    assert rows["prompt_id"].str.starts_with("generate/").all()
    assert rows["label"].to_list() == [
        "unsafe" if category == "crime_advice" else "safe" for category in rows["category"]
    ]
    assert rows["id"].n_unique() <= rows.height and rows["seed"].null_count() == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["quota_by_category"] == {"crime_advice": 4, "lookalike": 2}
    assert manifest["config"]["n"] == 6 and len(manifest["config_hash"]) == 64


def test_status_shows_per_stage_and_per_category_counts(finished_run: tuple[Path, Path]) -> None:
    _, out = finished_run
    result = run_synth("status", out)
    assert result.returncode == 0, result.stderr
    rows = _rows(out)
    stage_line = next(line for line in result.stdout.splitlines() if "generate" in line)
    assert re.search(rf"\b{rows.height}\b", stage_line), stage_line
    assert "crime_advice" in result.stdout and "lookalike" in result.stdout
    assert "status done" in result.stdout


def test_a_finished_run_exports_a_complete_corpus(finished_run: tuple[Path, Path]) -> None:
    _, out = finished_run
    corpus = out / "corpus"
    items = pl.read_parquet(corpus / "items.parquet")
    card = (corpus / "README.md").read_text(encoding="utf-8")
    quota = json.loads((out / "run.json").read_text())["quota_by_category"]
    counts = items.group_by("category").len()
    for category, wanted in quota.items():
        have = counts.filter(pl.col("category") == category)["len"].sum()
        assert have == wanted or f"`{category}`: {have} of {wanted}" in card
    assert items["response"].str.len_chars().min() > 0
    front = yaml.safe_load(card.split("---\n")[1])
    splits = [entry["split"] for entry in front["configs"][0]["data_files"]]
    assert "train" in splits and "Content warning" in card
    from datasets import load_dataset

    loaded = load_dataset(str(corpus))
    assert sum(loaded[split].num_rows for split in splits) == 3 * items.height
    assert set(loaded["train"]["task"]) == {"safety", "category", "response"}
    status = run_synth("status", out)
    assert f"corpus: {corpus}: {items.height} queries" in status.stdout


def test_rerun_replays_nothing_and_calls_no_model(
    finished_run: tuple[Path, Path], tmp_path: Path
) -> None:
    taxonomy, out = finished_run
    before = _llm_call_keys(out)
    rows_before = _rows(out)
    result = run_synth("run", "--taxonomy", taxonomy, "--n", "6", "--out", out)
    assert result.returncode == 0, result.stderr
    assert _llm_call_keys(out) == before
    assert "0 model calls" in result.stdout
    assert _rows(out).equals(rows_before)


def test_changed_config_refuses_and_names_the_setting(finished_run: tuple[Path, Path]) -> None:
    taxonomy, out = finished_run
    result = run_synth("run", "--taxonomy", taxonomy, "--n", "7", "--out", out)
    assert result.returncode == 2
    assert "setting 'n' changed" in result.stderr and "--fresh" in result.stderr
    assert "Traceback" not in result.stderr

    document = yaml.safe_load(taxonomy.read_text("utf-8"))
    document["categories"][0]["weight"] = 2.0
    edited = taxonomy.with_name("edited.yaml")
    edited.write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")
    result = run_synth("run", "--taxonomy", edited, "--n", "6", "--out", out)
    assert result.returncode == 2
    assert "setting 'taxonomy.categories.crime_advice.weight' changed" in result.stderr


def test_fresh_starts_over(small_taxonomy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_synth("run", "--taxonomy", small_taxonomy, "--n", "2", "--out", out).returncode == 0
    result = run_synth("run", "--taxonomy", small_taxonomy, "--n", "3", "--out", out, "--fresh")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["n"] == 3
    # the new run's cache was rebuilt: every call was made afresh and once
    keys = _llm_call_keys(out)
    assert len(keys) == len(set(keys))


def test_a_second_run_on_the_same_directory_is_refused(
    small_taxonomy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with RunLock(out / ".lock"):
        result = run_synth("run", "--taxonomy", small_taxonomy, "--n", "2", "--out", out)
    assert result.returncode == 2
    assert "another synth run" in result.stderr
    assert not (out / "run.json").exists()


def test_directory_that_is_not_a_run_is_never_written(small_taxonomy: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run_synth("run", "--taxonomy", small_taxonomy, "--n", "2", "--out", out, "--fresh")
    assert result.returncode == 2 and "holds no run.json" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_short_category_gets_top_up_rounds_then_is_reported(tmp_path: Path) -> None:
    # one query per call and one call per round: four accepted items need more than two rounds
    taxonomy = write_taxonomy(
        tmp_path,
        categories=("crime_advice",),
        settings={"items_per_call": 1, "max_calls_per_round": 1, "max_rounds": 2},
    )
    out = tmp_path / "out"
    result = run_synth("run", "--taxonomy", taxonomy, "--n", "4", "--out", out)
    assert result.returncode == 0, result.stderr
    plans = [pl.read_parquet(out / f"round-00{i}" / "plan.parquet") for i in (1, 2)]
    assert [plan["call_index"].to_list() for plan in plans] == [[0], [1]]
    assert not (out / "round-003").exists()
    outcome = json.loads((out / "run.json").read_text())["outcomes"][0]
    assert outcome["accepted"] < outcome["quota"] == 4
    assert "max_rounds (2) reached" in outcome["reason"]
    assert "short: max_rounds (2) reached" in result.stdout


def _start(taxonomy: Path, out: Path, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "synth"),
            "run",
            "--taxonomy",
            str(taxonomy),
            "--n",
            str(n),
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_calls(process: subprocess.Popen[str], out: Path, calls: int) -> None:
    deadline = time.monotonic() + 120
    while _cached_calls(out) < calls:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def test_sigkill_mid_generation_then_rerun_finishes_paying_each_call_once(tmp_path: Path) -> None:
    taxonomy = write_taxonomy(tmp_path, settings={"calls_per_batch": 1, "items_per_call": 3})
    reference = tmp_path / "reference"
    assert run_synth("run", "--taxonomy", taxonomy, "--n", "12", "--out", reference).returncode == 0

    out = tmp_path / "killed"
    process = _start(taxonomy, out, 12)
    _wait_for_calls(process, out, 3)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    paid_before_kill = _cached_calls(out)
    assert paid_before_kill < _planned_calls(reference), "the kill must land mid-generation"

    result = run_synth("run", "--taxonomy", taxonomy, "--n", "12", "--out", out)
    assert result.returncode == 0, result.stderr
    keys = _llm_call_keys(out)
    assert len(keys) == len(set(keys)), "a call key was executed twice"
    assert _cached_calls(out) == _planned_calls(out) == _planned_calls(reference)
    assert f"{_planned_calls(out) - paid_before_kill} model calls" in result.stdout
    # the same seed gives the same rows as a run that was never interrupted
    columns = ["id", "category", "text", "seed", "task_id", "sample_index"]
    assert _rows(out).select(columns).equals(_rows(reference).select(columns))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(small_taxonomy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = _start(small_taxonomy, out, 12)
    _wait_for_calls(process, out, 1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr
    assert "Traceback" not in stderr
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert run_synth("run", "--taxonomy", small_taxonomy, "--n", "12", "--out", out).returncode == 0


def test_screened_out_rows_stay_with_reasons_and_do_not_count(tmp_path: Path) -> None:
    def reject_everything(document: dict[str, Any]) -> None:
        document["screen"]["min_chars"] = 190

    taxonomy = write_taxonomy(
        tmp_path,
        categories=("everyday",),
        settings={"items_per_call": 2, "max_calls_per_round": 2, "max_rounds": 2},
        edit=reject_everything,
    )
    out = tmp_path / "out"
    result = run_synth("run", "--taxonomy", taxonomy, "--n", "2", "--out", out)
    assert result.returncode == 0, result.stderr
    generated = pl.read_parquet(out / "round-*" / "generate" / "*.parquet")
    screened = pl.read_parquet(out / "round-*" / "screen" / "*.parquet")
    assert screened.height == generated.height > 0, "rejected rows are kept, not dropped"
    assert set(screened["rejected_by"]) == {"screen"}
    assert all("too_short" in flags for flags in screened["screen_flags"].to_list())
    # nothing was accepted, so a top-up round ran and the shortfall is reported
    assert (out / "round-002" / "screen").is_dir()
    outcome = json.loads((out / "run.json").read_text())["outcomes"][0]
    assert outcome["accepted"] == 0 and "max_rounds (2) reached" in outcome["reason"]
    status = run_synth("status", out)
    screen_line = next(line for line in status.stdout.splitlines() if " screen " in line)
    assert re.search(rf"\b{screened.filter(pl.col('round') == 1).height}\b.*\b0\b", screen_line)


def test_judge_checkpoint_keeps_every_row_with_its_verdict(finished_run: tuple[Path, Path]) -> None:
    _, out = finished_run
    screened = pl.read_parquet(out / "round-*" / "screen" / "*.parquet")
    judged = pl.read_parquet(out / "round-*" / "judge" / "*.parquet")
    assert judged.height == screened.height
    reached_judge = judged.filter(
        pl.col("rejected_by").is_null() | (pl.col("rejected_by") == "judge")
    )
    assert reached_judge["judge_category"].null_count() == 0
    assert reached_judge["judge_score"].is_between(0, 1).all()
    off = judged.filter(pl.col("reject_reason").str.starts_with("off_category:"))
    assert (off["reject_reason"].str.strip_prefix("off_category:") == off["judge_category"]).all()
    kept = judged.filter(pl.col("rejected_by").is_null())
    assert (kept["judge_category"] == kept["category"]).all()


def test_inspect_groups_rejected_rows_by_reason(finished_run: tuple[Path, Path]) -> None:
    _, out = finished_run
    judged = pl.read_parquet(out / "round-*" / "judge" / "*.parquet")
    rejected = judged.filter(pl.col("rejected_by") == "judge")
    result = run_synth("inspect", out, "--stage", "judge", "--rejected", "--limit", "1")
    assert result.returncode == 0, result.stderr
    assert f"judge: {rejected.height} rows" in result.stdout
    for reason, count in rejected.group_by("reject_reason").len().iter_rows():
        assert f"{reason} ({count})" in result.stdout
    assert "kept (" not in result.stdout

    kept = run_synth("inspect", out, "--stage", "screen", "--kept")
    assert kept.returncode == 0 and "kept (" in kept.stdout
    bad = run_synth("inspect", out, "--stage", "polish")
    assert bad.returncode == 2 and "unknown stage 'polish'" in bad.stderr


def _embedded(out: Path) -> int:
    stages = json.loads((out / "run.json").read_text())["stages"]
    return sum(record.get("embedded", 0) for record in stages.values())


def test_resumed_run_reuses_cached_vectors(tmp_path: Path) -> None:
    taxonomy = write_taxonomy(tmp_path, settings={"items_per_call": 4})
    out = tmp_path / "out"
    assert run_synth("run", "--taxonomy", taxonomy, "--n", "4", "--out", out).returncode == 0
    embedded = _embedded(out)
    exemplars = sum(len(c["exemplars"]) for c in yaml.safe_load(taxonomy.read_text())["categories"])
    assert embedded > exemplars, "exemplars and generated rows were embedded once"
    # as if the run had died before its dedup and judge parts were written
    for stage in ("dedup", "judge"):
        for part in (out / "round-001" / stage).glob("part-*.parquet"):
            part.unlink()
    result = run_synth("run", "--taxonomy", taxonomy, "--n", "4", "--out", out)
    assert result.returncode == 0, result.stderr
    assert _embedded(out) == embedded, "no text was embedded a second time"
    assert list((out / "round-001" / "judge").glob("part-*.parquet"))


def test_dedup_checkpoint_holds_every_row_with_its_cluster(finished_run: tuple[Path, Path]) -> None:
    _, out = finished_run
    screened = pl.read_parquet(out / "round-*" / "screen" / "*.parquet")
    deduped = pl.read_parquet(out / "round-*" / "dedup" / "*.parquet")
    assert deduped.height == screened.height
    reached = deduped.filter(pl.col("rejected_by").is_null() | (pl.col("rejected_by") == "dedup"))
    assert reached["cluster_id"].null_count() == 0
    duplicates = deduped.filter(pl.col("rejected_by") == "dedup")
    assert duplicates["dup_of"].null_count() == 0 and duplicates["dup_reason"].null_count() == 0
    assert duplicates["reject_reason"].str.contains("duplicate").all()


def test_llm_judge_runs_end_to_end_on_the_local_model(small_taxonomy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_synth(
        "run", "--taxonomy", small_taxonomy, "--n", "2", "--out", out, "--judge", "llm"
    )
    assert result.returncode == 0, result.stderr
    judged = pl.read_parquet(out / "round-*" / "judge" / "*.parquet")
    reached = judged.filter(pl.col("rejected_by").is_null() | (pl.col("rejected_by") == "judge"))
    assert reached.height > 0
    assert reached["judge_reason"].null_count() == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["judge"]["kind"] == "llm"
    judge_calls = sum(
        record.get("calls", 0)
        for key, record in manifest["stages"].items()
        if key.endswith("judge")
    )
    assert judge_calls >= reached.height
    generator_calls = sum(
        record.get("calls", 0)
        for key, record in manifest["stages"].items()
        if key.endswith("generate")
    )
    assert f"{generator_calls + judge_calls} model calls" in result.stdout
    # replayed, not paid again
    rerun = run_synth(
        "run", "--taxonomy", small_taxonomy, "--n", "2", "--out", out, "--judge", "llm"
    )
    assert rerun.returncode == 0 and "0 model calls" in rerun.stdout
