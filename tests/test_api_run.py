"""`synth run` on API backends end to end: faults, kills, fatal errors, keys, dry runs, a judge on
another provider.

The server is `FakeLLMServer` (real sockets, the OpenAI and Anthropic shapes): no real API can be
reached here, and only a fake can fail on cue and count how often each call was answered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import run_synth, write_taxonomy
from tests.fake_llm_server import FakeLLMServer

KEY = "sk-test-NEVER-WRITTEN-4242"


@pytest.fixture
def taxonomy(tmp_path: Path) -> Path:
    return write_taxonomy(
        tmp_path, settings={"calls_per_batch": 1, "items_per_call": 4, "max_rounds": 1}
    )


def _api_args(taxonomy: Path, out: Path, server: FakeLLMServer, *extra: str) -> list[str]:
    return [
        "run",
        "--taxonomy",
        str(taxonomy),
        "--n",
        "8",
        "--out",
        str(out),
        "--backend",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--completions",
        "--base-url",
        server.url,
        "--timeout",
        "2",
        "--yes",
        *extra,
    ]


def _planned(out: Path) -> int:
    return sum(pl.read_parquet(plan).height for plan in out.glob("round-*/plan.parquet"))


def _kill_synth_once(args: list[str], env: dict[str, str], ready: Callable[[], bool]) -> None:
    """Start `synth` with `args`, wait until `ready()` (then half a second for what is under
    way to land on disk) and SIGKILL it, as a crash or a killed batch job would."""
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "synth"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.time() + 120
    while not ready() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _every_file_bytes(root: Path) -> bytes:
    return b"".join(path.read_bytes() for path in root.rglob("*") if path.is_file())


def test_api_run_survives_faults_answers_each_call_once_and_never_writes_the_key(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    faults = {1: "500", 3: "429", 5: "drop", 7: "echo-key"}
    out = tmp_path / "out"
    with FakeLLMServer(faults=lambda ordinal, _: faults.get(ordinal)) as server:
        result = cli(*_api_args(taxonomy, out, server, "--api-key", KEY))
    assert result.exit_code == 0, result.output
    assert sorted(server.answered.values()) == [1] * _planned(out)
    rows = pl.read_parquet(out / "round-001" / "generate" / "*.parquet")
    assert set(rows["generator"]) == {"openai:gpt-4o-mini"} and rows.height > 0
    manifest = json.loads((out / "run.json").read_text())
    record = manifest["stages"]["round-001/generate"]
    assert record["calls"] == _planned(out) and record["retries"] == 4
    assert record["cost_usd"] > 0
    assert manifest["connection"]["generator"]["base_url"] == server.url
    assert server.keys_seen == {KEY}
    assert KEY.encode() not in _every_file_bytes(out)
    assert KEY not in result.output
    status = cli("status", out)
    assert status.exit_code == 0 and "est. cost $" in status.output


def test_a_run_through_every_kind_of_fault_meets_its_quotas_or_reports_the_shortfall(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of 429s, 500s, a timeout, malformed JSON and a body cut off mid-stream are retried;
    an empty answer and prose with no list are paid answers that yield no row, recorded as
    rejected `no_list` rows. The run ends with each category at quota or its shortfall said."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    taxonomy = write_taxonomy(
        tmp_path, settings={"calls_per_batch": 1, "items_per_call": 4, "max_rounds": 2}
    )
    retried = ["429-now"] * 4 + ["500-now", "500-now", "hang", "malformed", "truncated"]
    plan = {**dict(enumerate(retried)), 9: "empty", 10: "prose", 11: "empty"}
    out = tmp_path / "out"
    with FakeLLMServer(faults=lambda ordinal, _: plan.get(ordinal)) as server:
        # a chat model: a base model's completion continues "1." so prose would be one item
        args = [a if a != "--completions" else "--chat" for a in _api_args(taxonomy, out, server)]
        result = cli(*args, "--max-in-flight", "1")
    assert result.exit_code == 0, result.output
    assert sorted(server.answered.values()) == [1] * _planned(out), "each call answered once"
    assert server.requests == _planned(out) + len(retried)
    manifest = json.loads((out / "run.json").read_text())
    assert sum(r.get("retries", 0) for r in manifest["stages"].values()) == len(retried)
    rows = pl.read_parquet(out / "round-*" / "generate" / "*.parquet")
    assert rows.filter(pl.col("reject_reason") == "no_list").height == 3
    for outcome in manifest["outcomes"]:
        assert outcome["accepted"] == outcome["quota"] or outcome["reason"], outcome
        if outcome["reason"]:
            assert outcome["category"] in result.stdout and "short" in result.stdout


def test_killing_an_api_run_and_rerunning_pays_for_no_call_twice(
    taxonomy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": KEY, "COLUMNS": "200"}
    with FakeLLMServer(hold_after=3) as server:
        args = _api_args(taxonomy, out, server, "--max-in-flight", "2")
        # the three answers reach calls.sqlite; two calls stay held
        _kill_synth_once(args, env, lambda: server.requests >= 5)
        answered_before = set(server.answered)
        assert len(answered_before) == 3
        server.hold_after = None
        server.release.set()
        rerun = run_synth(*args, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert max(server.answered.values()) == 1, "a call answered before the kill was paid again"
    assert len(server.answered) == _planned(out)


def test_a_fatal_error_stops_with_one_line_and_keeps_finished_parts(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "out"
    with FakeLLMServer(faults=lambda ordinal, _: "401" if ordinal >= 2 else None) as server:
        args = _api_args(taxonomy, out, server, "--max-in-flight", "1")
        result = cli(*args)
        assert result.exit_code == 2
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert "HTTP 401, authentication failed: check the API key (OPENAI_API_KEY)" in line
        assert len(list(out.glob("round-001/generate/part-*.parquet"))) == 2
        server.faults = lambda ordinal, _: None
        assert cli(*args).exit_code == 0
    assert max(server.answered.values()) == 1


def test_dry_run_prints_calls_and_cost_and_touches_nothing(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        result = cli(
            *_api_args(
                taxonomy, out, server, "--chat", "--judge", "llm", "--responder", "llm", "--dry-run"
            )
        )
    assert result.exit_code == 0, result.output
    assert server.requests == 0 and not out.exists()
    assert "generator openai:gpt-4o-mini:" in result.output
    assert "judge openai:gpt-4o-mini:" in result.output
    assert "responder openai:gpt-4o-mini: 8 calls" in result.output
    assert "estimated cost of round 1 (and the responses): <= $" in result.output


def test_missing_key_is_one_line_before_anything_is_written(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = tmp_path / "out"
    result = cli(
        "run",
        "--taxonomy",
        taxonomy,
        "--n",
        "4",
        "--out",
        out,
        "--backend",
        "openai",
        "--model",
        "gpt-4o-mini",
    )
    assert result.exit_code == 2
    assert "set OPENAI_API_KEY or pass --api-key" in result.stderr
    assert not out.exists()


def test_judge_on_another_provider(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-other-key-77")
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        args = _api_args(
            taxonomy,
            out,
            server,
            "--judge",
            "llm",
            "--judge-backend",
            "anthropic",
            "--judge-model",
            "claude-haiku-4-5",
            "--judge-base-url",
            server.root_url,
        )
        result = cli(*args)
    assert result.exit_code == 0, result.output
    assert server.paths["/v1/completions"] > 0 and server.paths["/v1/messages"] > 0
    assert server.keys_seen == {KEY, "sk-ant-other-key-77"}
    judged = pl.read_parquet(out / "round-001" / "judge" / "*.parquet")
    assert (judged["judge_reason"] == "fake verdict").sum() > 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["stages"]["round-001/judge"]["calls"] == server.paths["/v1/messages"]


def test_max_cost_stops_the_run_and_a_higher_cap_continues_without_repeating_a_call(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        # each completion call reserves its prompt plus 320 output tokens at gpt-4o-mini's price
        # (about $0.0003): a cap of $0.001 stops the run after a few calls
        capped = cli(*_api_args(taxonomy, out, server, "--max-cost", "0.001"))
        assert capped.exit_code == 2, capped.output
        (line,) = [line for line in capped.stderr.splitlines() if line.startswith("error:")]
        assert "of --max-cost $0.0010" in line and "rerun with a higher --max-cost" in line
        manifest = json.loads((out / "run.json").read_text())
        spent = sum(record.get("cost_usd", 0.0) for record in manifest["stages"].values())
        assert 0 < spent <= 0.001
        paid = server.requests
        assert 0 < paid < _planned(out)
        status = run_synth("status", str(out))
        assert "cap $0.0010" in status.stdout
        estimate = cli(*_api_args(taxonomy, out, server, "--dry-run"))
        assert f"{_planned(out) - paid} calls, {paid} already cached" in estimate.stdout, (
            "the estimate of a stopped run counts only what it would still send"
        )
        more = cli(*_api_args(taxonomy, out, server, "--max-cost", "1"))
        assert more.exit_code == 0, more.output
    assert sorted(server.answered.values()) == [1] * _planned(out), "no call paid for twice"


def test_refusals_are_counted_per_category_and_cut_off_answers_never_parsed(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model refuses every call for the unsafe category (in Korean, finish "stop") and stops
    at its token limit on every call for the safe one: neither yields a row, each call leaves one
    rejected row saying why, and `synth status` names the refused category with a hint."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "out"
    with FakeLLMServer(
        text_faults=lambda text: "refuse" if "(unsafe)" in text else "length"
    ) as server:
        result = cli(*_api_args(taxonomy, out, server))
    assert result.exit_code == 0, result.output
    assert "openai:gpt-4o-mini refused" in result.stderr and "crime_advice" in result.stderr
    rows = pl.read_parquet(out / "round-001" / "generate" / "*.parquet")
    assert rows.filter(pl.col("rejected_by").is_null()).height == 0, "nothing was parsed"
    reasons = dict(rows.group_by("category").agg(pl.col("reject_reason").unique()).iter_rows())
    assert reasons == {"crime_advice": ["refused"], "lookalike": ["cut_off"]}
    planned = pl.concat([pl.read_parquet(p) for p in out.glob("round-*/plan.parquet")])
    calls = dict(planned.group_by("category").len().iter_rows())
    assert dict(rows.group_by("category").len().iter_rows()) == calls, "one row per failed call"
    assert server.requests == calls["crime_advice"] + 2 * calls["lookalike"], (
        "a cut-off answer is asked once more, a refusal in words is not"
    )
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["stages"]["round-001/generate"]["bad_finishes"] == 2 * calls["lookalike"]
    status = run_synth("status", str(out))
    assert status.returncode == 0, status.stderr
    line = next(
        line for line in status.stdout.splitlines() if line.strip().startswith("crime_advice")
    )
    assert f"{calls['crime_advice']}/{calls['crime_advice']}" in line
    assert "warning: openai:gpt-4o-mini refused" in status.stdout
    assert "prompts/generate/crime_advice.j2" in status.stdout
    assert "lookalike (" not in status.stdout, "cut-off answers are not refusals"
    report = (out / "report.html").read_text(encoding="utf-8")
    refusals = report.split('<section id="refusals">')[1].split("</section>")[0]
    assert f"<td>{calls['crime_advice']}</td><td>{calls['crime_advice']}</td>" in refusals
    assert 'alt="refusals per category"' in refusals


def test_a_paid_run_prints_its_estimate_and_starts_only_when_confirmed(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --yes a run on a priced model prints what it will send and may cost; a batch job
    (no terminal) is refused with one line, a 'n' typed in a terminal starts nothing, a 'y' starts
    it. A rerun whose calls are all cached asks nothing."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        args = [arg for arg in _api_args(taxonomy, out, server) if arg != "--yes"]
        batch = cli(*args)
        assert batch.exit_code == 2 and not out.exists() and server.requests == 0
        (line,) = [line for line in batch.stderr.splitlines() if line.startswith("error:")]
        assert "this run calls a paid API (generator openai:gpt-4o-mini;" in line
        assert "pass --yes" in line
        assert "round 1: generation calls (estimate)" in batch.stderr
        monkeypatch.setattr("pipeline.cli._interactive", lambda: True)
        declined = CliRunner().invoke(app, args, input="n\n")
        assert declined.exit_code == 1 and not out.exists() and server.requests == 0
        assert "Start this run (<= $" in declined.stderr
        accepted = CliRunner().invoke(app, args, input="y\n")
        assert accepted.exit_code == 0, accepted.output
        paid = server.requests
        assert paid == _planned(out)
        rerun = CliRunner().invoke(app, args, input="")
        assert rerun.exit_code == 0 and "Start this run" not in rerun.stderr
    assert server.requests == paid


def test_a_local_server_without_a_price_asks_nothing(
    taxonomy: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OpenAI-compatible server on this machine (--base-url, a model with no price) is free:
    the run starts without --yes and without an estimate."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        args = [arg for arg in _api_args(taxonomy, out, server) if arg != "--yes"]
        args[args.index("gpt-4o-mini")] = "my-local-model"
        result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "(estimate)" not in result.stderr and server.requests == _planned(out)


def test_a_killed_batch_api_run_polls_its_job_after_a_restart(tmp_path: Path) -> None:
    """`synth run --batch-api` killed (SIGKILL) while its job runs at the fake server's imitation
    of the Batch API: the rerun finds the job in calls.sqlite and polls it; no second job, no
    call paid twice, and the cost is counted at half price."""
    taxonomy = write_taxonomy(
        tmp_path,
        settings={"calls_per_batch": 1, "items_per_call": 4, "max_rounds": 1},
        edit=lambda document: document["settings"]["generator"].update(batch_poll_s=0.05),
    )
    out = tmp_path / "out"
    env = {**os.environ, "OPENAI_API_KEY": KEY, "COLUMNS": "200"}
    with FakeLLMServer() as server:
        server.batch_polls_to_end = None
        args = _api_args(taxonomy, out, server, "--batch-api", "--chat")
        _kill_synth_once(args, env, lambda: bool(server.jobs))
        assert len(server.jobs) == 1 and server.requests == 0
        status = run_synth("status", str(out))
        assert "batch job batch_1 (openai:gpt-4o-mini) submitted" in status.stdout
        server.batch_polls_to_end = 1
        rerun = run_synth(*args, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(server.jobs) == 1, "the restarted run submitted its calls again"
    assert sorted(server.answered.values()) == [1] * _planned(out)
    assert server.paths["/v1/chat/completions"] == _planned(out), "answered inside the job"
    manifest = json.loads((out / "run.json").read_text())
    record = manifest["stages"]["round-001/generate"]
    listed = record["calls"] * (100 * 0.15 + 40 * 0.60) / 1e6
    assert record["cost_usd"] == pytest.approx(listed / 2)
    rows = pl.read_parquet(out / "round-001" / "generate" / "*.parquet")
    assert rows.filter(pl.col("rejected_by").is_null()).height > 0
    assert "batch job" not in run_synth("status", str(out)).stdout


def test_batch_api_on_a_backend_without_one_is_one_line(
    small_taxonomy: Path, tmp_path: Path, cli: Any
) -> None:
    result = cli("run", "--taxonomy", small_taxonomy, "--out", tmp_path / "out", "--batch-api")
    assert result.exit_code == 2
    assert "--batch-api needs an openai or anthropic backend (the generator is local)" in (
        result.stderr
    )
    assert not (tmp_path / "out").exists()
