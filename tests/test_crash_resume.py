"""Crash-exact resume: a real `synth` process SIGKILLed at two dozen exact places, rerun each time,
ends with the same corpus as a run never interrupted, and no answered call is paid for twice.

The places are failpoints (`pipeline.failpoints`): the process kills itself in the middle of a
parquet write (its temp file cut in half), right after a part is renamed in, inside the SQLite
statement that commits an LLM answer, inside the embeddings transaction, half way through run.json,
the export's summary and report.html, and between moving the old corpus aside and the new one in.
Every stage is hit: plan, generate, screen, dedup, judge, balance, respond, export, report.

The generator and the responder are an OpenAI-compatible fake server (`FakeLLMServer`): no real
API can be reached here, and only a fake counts how often each call was answered.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import run_synth, write_taxonomy
from tests.fake_llm_server import FakeLLMServer, request_identity

#: one kill per process, in the order a run reaches them; each must fire (the process dies)
KILLS = (
    "file-mid@run.json:1",  # creating run.json
    "parquet-mid@round-001/plan.parquet",
    "parquet-renamed@round-001/plan.parquet",
    "sqlite-insert:1",  # the first generation answer
    "parquet-mid@round-001/generate/part-00000",
    "sqlite-insert:2",
    "parquet-renamed@round-001/generate/part-00003",
    "file-mid@run.json:2",
    "parquet-mid@round-001/generate/part-00004",
    "parquet-mid@round-001/screen/part-00000",
    "parquet-renamed@round-001/screen/part-00000",
    "vectors-insert:1",  # dedup's embeddings
    "parquet-mid@round-001/dedup/part-00000",
    "parquet-renamed@round-001/dedup/part-00000",
    "parquet-mid@round-001/judge/part-00000",
    "parquet-renamed@round-001/judge/part-00000",
    "parquet-mid@final/balance/part-00000",
    "sqlite-insert:1",  # the first response
    "sqlite-insert:3",
    "parquet-mid@final/respond/part-00000",
    "parquet-renamed@final/respond/part-00000",
    "file-mid@corpus.partial/summary.json",
    "file-mid@report.html",
)
#: stages whose kills may catch an LLM call in flight (sent, answer not yet committed)
CALLING = ("sqlite-insert", "generate", "respond")


def _args(taxonomy: Path, out: Path, server: FakeLLMServer) -> list[str | Path]:
    return [
        "run",
        "--taxonomy",
        taxonomy,
        "--n",
        "8",
        "--out",
        out,
        "--backend",
        "openai",
        "--model",
        "gpt-4o-mini",
        "--chat",
        "--base-url",
        server.url,
        "--max-in-flight",
        "1",
        "--responder",
        "llm",
        "--yes",
    ]


def _env(failpoints: str = "") -> dict[str, str]:
    return {"OPENAI_API_KEY": "sk-test", "SYNTH_FAILPOINTS": failpoints}


def _committed(out: Path) -> set[str]:
    """The fake server's identity of every call whose answer is in calls.sqlite."""
    path = out / "calls.sqlite"
    if not path.exists():
        return set()
    db = sqlite3.connect(path)
    try:
        payloads = [json.loads(row[0]) for row in db.execute("SELECT request FROM calls")]
    finally:
        db.close()
    return {
        request_identity(
            {
                "messages": [{"role": r, "content": c} for r, c in payload["messages"]],
                "seed": payload["seed"],
                "response_format": payload["json_schema"],
            }
        )
        for payload in payloads
    }


def _corpus(out: Path) -> dict[str, bytes]:
    corpus = out / "corpus"
    return {
        str(path.relative_to(corpus)): path.read_bytes()
        for path in sorted(corpus.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter[str]]:
    """The same job, never interrupted."""
    root = tmp_path_factory.mktemp("reference")
    taxonomy = write_taxonomy(root, settings={"calls_per_batch": 1, "max_rounds": 1})
    with FakeLLMServer() as server:
        result = run_synth(*_args(taxonomy, root / "out", server), env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return root / "out", server.answered


def test_killed_at_every_stage_the_rerun_ends_with_the_same_corpus_and_pays_nothing_twice(
    reference: tuple[Path, Counter[str]], tmp_path: Path
) -> None:
    reference_out, reference_calls = reference
    taxonomy = write_taxonomy(tmp_path, settings={"calls_per_batch": 1, "max_rounds": 1})
    out = tmp_path / "out"
    with FakeLLMServer() as server:
        args = _args(taxonomy, out, server)
        for kill in KILLS:
            committed = _committed(out)
            answered_before = Counter(server.answered)
            result = run_synth(*args, env=_env(kill), timeout=300)
            assert result.returncode == -signal.SIGKILL, f"{kill} never fired: {result.stderr}"
            again = {
                identity
                for identity, count in server.answered.items()
                if count > answered_before[identity] and answered_before[identity] > 0
            }
            assert not again & committed, f"after {kill}: a committed answer was paid again"
            # only a call in flight at the previous kill (one at most) may be asked again
            assert len(again) <= 1, f"{kill}: {len(again)} calls answered twice"
        assert list(out.rglob(".*.tmp")), "the kills left no half-written temp file behind"
        final = run_synth(*args, env=_env(), timeout=300)
        assert final.returncode == 0, final.stderr
        assert not list(out.rglob(".*.tmp")), "a rerun keeps half-written temp files"
        assert _corpus(out) == _corpus(reference_out)
        assert set(server.answered) == set(reference_calls)
        paid_twice = sum(count - 1 for count in server.answered.values())
        assert paid_twice <= sum(any(s in kill for s in CALLING) for kill in KILLS)

        # a finished run killed while swapping in its rebuilt corpus: the rerun restores it
        killed = run_synth(*args, env=_env("corpus-swap"), timeout=300)
        assert killed.returncode == -signal.SIGKILL
        assert not (out / "corpus").exists() and (out / "corpus.old").is_dir()
        calls_before = sum(server.answered.values())
        assert run_synth(*args, env=_env(), timeout=300).returncode == 0
        assert _corpus(out) == _corpus(reference_out)
        assert sum(server.answered.values()) == calls_before, "a finished run called a model"
        assert not (out / "corpus.old").exists() and not (out / "corpus.partial").exists()
    assert len(KILLS) + 1 >= 20
    assert os.path.exists(out / "report.html")
