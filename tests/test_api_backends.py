"""The API backends through the caching client: real SDKs over real sockets.

The openai backend talks to llama.cpp's real OpenAI-compatible server (`llama_cpp.server` on the
bundled model, started through `pipeline.backends.llama_probe serve`) and to `FakeLLMServer` for
faults a real server cannot produce on cue. No Anthropic endpoint can be reached here, so the
anthropic backend talks to `FakeLLMServer`'s Messages API shape.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.backends import FatalBackendError, Request, make_backend
from pipeline.callcache import CallCache
from pipeline.errors import UserError
from pipeline.events import EventLog, read_events
from pipeline.flow import Budget, BudgetExhausted
from pipeline.llm import CallStats, LLMClient
from pipeline.prices import PriceTable
from pipeline.progress import in_flight_label
from pipeline.taxonomy import BackendSettings, Price
from tests.fake_llm_server import FakeLLMServer
from tests.fake_llm_server import request_identity as fake_identity

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"keep": {"type": "boolean"}, "category": {"type": "string", "enum": ["a"]}},
    "required": ["keep", "category"],
}


def _client(
    tmp_path: Path,
    backend: str,
    base_url: str,
    api_key: str | None = "sk-test-key-0001",
    **kw: object,
) -> LLMClient:
    settings = BackendSettings.model_validate(
        {"backend": backend, "model": "gpt-4o-mini", "base_url": base_url, **kw}
    )
    prices = PriceTable([Price(model="gpt-4o-mini*", input=0.15, output=0.60)])
    return LLMClient(
        make_backend(settings, api_key),
        CallCache(tmp_path / "calls.sqlite"),
        EventLog(tmp_path / "events.jsonl"),
        prices,
    )


def _requests(count: int, chat: bool = True) -> list[Request]:
    if chat:
        return [Request(messages=(("user", f"질문 목록 {i}"),), seed=i) for i in range(count)]
    return [Request(prompt=f"질문 목록 {i}\n1. ", seed=i) for i in range(count)]


def test_openai_chat_answers_are_cached_counted_and_priced(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        client = _client(tmp_path, "openai", server.url)
        stats = CallStats()
        answers = client.run(_requests(5), stats)
        again = client.run(_requests(5), stats)
        client.close()
    assert all(answer.text.startswith("1. ") for answer in answers)
    assert [a.text for a in again] == [a.text for a in answers]
    assert (stats.calls, stats.cache_hits) == (5, 5)
    assert (stats.input_tokens, stats.output_tokens) == (500, 200)
    assert stats.cost_usd == pytest.approx((500 * 0.15 + 200 * 0.60) / 1e6)
    assert server.requests == 5, "the second pass is replayed from calls.sqlite"
    assert server.keys_seen == {"sk-test-key-0001"}


def test_transient_faults_are_retried_and_every_call_answered_once(tmp_path: Path) -> None:
    faults = {0: "429", 2: "500", 4: "hang", 6: "malformed", 8: "drop"}
    with FakeLLMServer(faults=lambda ordinal, _: faults.get(ordinal)) as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=1, timeout_s=1.0)
        stats = CallStats()
        answers = client.run(_requests(8), stats)
        client.close()
    assert len(answers) == 8 and all(answer.text for answer in answers)
    assert sorted(server.answered.values()) == [1] * 8, "no call answered twice, none lost"
    assert stats.retries == 5 and stats.calls == 8
    retries = [e for e in read_events(tmp_path / "events.jsonl") if e["event"] == "llm_retry"]
    assert [e["error"].split(":")[0] for e in retries] == [
        "HTTP 429",
        "HTTP 500",
        "no answer within 1 s",
        "malformed response body",
        "connection failed",
    ]
    assert retries[0]["wait_s"] == 1.0, "the 429's Retry-After is honoured"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("401", "authentication failed: check the API key (--api-key)"), ("404", "unknown model")],
)
def test_client_errors_fail_fast_with_one_clear_line(
    tmp_path: Path, fault: str, expected: str
) -> None:
    with FakeLLMServer(faults=lambda ordinal, _: fault) as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=1)
        with pytest.raises(FatalBackendError) as error:
            client.run(_requests(1), CallStats())
        client.close()
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert server.requests == 1, "a 4xx is not retried"


def test_gives_up_after_max_retries_with_a_resume_hint(tmp_path: Path) -> None:
    with FakeLLMServer(faults=lambda ordinal, _: "429") as server:
        client = _client(tmp_path, "openai", server.url, max_retries=2)
        with pytest.raises(FatalBackendError, match="gave up after 3 attempts: HTTP 429"):
            client.run(_requests(1), CallStats())
        client.close()
    assert server.requests == 3


def test_a_key_echoed_by_the_server_is_redacted(tmp_path: Path) -> None:
    secret = "sk-live-DO-NOT-LOG-9137"
    with FakeLLMServer(faults=lambda ordinal, _: "echo-key" if ordinal == 0 else None) as server:
        client = _client(tmp_path, "openai", server.url, api_key=secret)
        client.run(_requests(1), CallStats())
        client.close()
    assert secret not in (tmp_path / "events.jsonl").read_text()
    assert "upstream failed for key ***" in (tmp_path / "events.jsonl").read_text()


def test_requests_per_minute_limit_spaces_calls(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        client = _client(tmp_path, "openai", server.url, requests_per_minute=120)
        started = time.perf_counter()
        client.run(_requests(6), CallStats())
        elapsed = time.perf_counter() - started
        client.close()
    assert server.requests == 6
    assert elapsed >= 1.5, "120/min is 2 per second: 6 calls need about 2 s"


def test_in_flight_limit_bounds_concurrency(tmp_path: Path) -> None:
    with FakeLLMServer(latency_s=0.3) as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=4)
        started = time.perf_counter()
        client.run(_requests(8), CallStats())
        elapsed = time.perf_counter() - started
        client.close()
    assert server.requests == 8
    assert 0.55 <= elapsed < 1.5, "8 calls of 0.3 s, 4 at a time: two waves"


def test_openai_json_schema_goes_out_as_structured_output(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        client = _client(tmp_path, "openai", server.url)
        request = Request(messages=(("user", "판정해 줘"),), json_schema=VERDICT_SCHEMA)
        (answer,) = client.run([request], CallStats())
        client.close()
    sent = server.bodies[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == VERDICT_SCHEMA
    assert answer.parsed["category"] == "a"


def test_anthropic_messages_with_tool_use_verdicts(tmp_path: Path) -> None:
    with FakeLLMServer() as server:
        client = _client(tmp_path, "anthropic", server.root_url, api_key="sk-ant-test-0002")
        plain = Request(messages=(("system", "규칙"), ("user", "질문 목록")), max_tokens=64)
        verdict = Request(messages=(("user", "판정해 줘"),), json_schema=VERDICT_SCHEMA)
        first, second = client.run([plain, verdict], CallStats())
        client.close()
    assert server.paths["/v1/messages"] == 2
    # the two requests go out concurrently, so find each by its content
    (sent_plain,) = [body for body in server.bodies if "tools" not in body]
    (sent_verdict,) = [body for body in server.bodies if "tools" in body]
    assert sent_plain["system"] == "규칙"
    assert sent_plain["messages"] == [{"role": "user", "content": "질문 목록"}]
    assert sent_verdict["tool_choice"] == {"type": "tool", "name": "answer"}
    assert first.text.startswith("1. ") and first.finish_reason == "stop"
    assert json.loads(second.text) == second.parsed and second.parsed["keep"] is True
    assert server.keys_seen == {"sk-ant-test-0002"}
    assert (first.input_tokens, first.output_tokens) == (120, 30)


def test_a_missing_key_is_one_line_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = BackendSettings(backend="openai", model="gpt-4o-mini")
    with pytest.raises(Exception, match="set OPENAI_API_KEY or pass --api-key"):
        make_backend(settings)
    with pytest.raises(Exception, match="needs a model: pass --model"):
        make_backend(BackendSettings(backend="anthropic"), api_key="k")


# -- the real OpenAI-compatible server ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _llama_cpp_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server on the bundled Gemma 3 270M, on a free port, started
    through `llama_probe serve`: on a CPU that faults on llama.cpp's extra buffer types they are
    turned off there as in the local backend. Yields the base URL."""
    from pipeline.backends.local import bundled_model_path

    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.backends.llama_probe",
            "serve",
            "--model",
            str(bundled_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--model_alias",
            "gemma-3-270m",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    with _llama_cpp_server() as url:
        yield url


@pytest.mark.slow
def test_llama_cpp_server_on_a_cpu_faulting_on_extra_buffers_serves_with_them_off(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache), "SYNTH_FAILPOINTS": "llama-probe@extra-buffers-on"}
    with _llama_cpp_server(env) as url:
        client = _client(tmp_path, "openai", url, chat=False, model="gemma-3-270m")
        (answer,) = client.run(
            [Request(prompt="한국어 질문 목록:\n1. ", max_tokens=12, seed=3)], CallStats()
        )
        client.close()
    assert answer.text.strip()
    (verdict,) = json.loads((cache / "synth" / "llama-cpu.json").read_text("utf-8")).values()
    assert verdict["extra_buffers"] is False


def test_openai_completions_against_llama_cpp_server(tmp_path: Path, llama_server: str) -> None:
    client = _client(
        tmp_path,
        "openai",
        llama_server,
        chat=False,
        max_in_flight=2,
        model="gemma-3-270m",
        finish_retries=0,  # seeded, a cut-off answer would come back the same
    )
    requests = [
        Request(prompt="한국어 질문 목록:\n1. ", max_tokens=24, seed=7, stop=("\n\n",)),
        Request(prompt="한국어 질문 목록:\n1. ", max_tokens=24, seed=8, stop=("\n\n",)),
    ]
    stats = CallStats()
    answers = client.run(requests, stats)
    client.close()
    assert all(answer.text.strip() for answer in answers)
    assert all(answer.finish_reason in ("stop", "length") for answer in answers)
    assert stats.input_tokens > 0 and stats.output_tokens > 0
    assert stats.unpriced_calls == 2, "a local model name is not in the price table"


def test_openai_chat_against_llama_cpp_server(tmp_path: Path, llama_server: str) -> None:
    client = _client(tmp_path, "openai", llama_server, chat=True, model="gemma-3-270m")
    (answer,) = client.run(
        [Request(messages=(("user", "안녕하세요?"),), max_tokens=16, seed=1)], CallStats()
    )
    client.close()
    assert answer.text.strip() and answer.output_tokens > 0


def test_synth_run_end_to_end_on_llama_cpp_server(
    tmp_path: Path, llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole pipeline through the openai backend against a real OpenAI-compatible server."""
    import polars as pl
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import write_taxonomy

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    taxonomy = write_taxonomy(
        tmp_path, settings={"calls_per_batch": 2, "items_per_call": 4, "max_rounds": 1}
    )
    out = tmp_path / "out"
    args = ["run", "--taxonomy", str(taxonomy), "--n", "4", "--out", str(out)]
    args += ["--backend", "openai", "--base-url", llama_server, "--model", "gemma-3-270m"]
    result = CliRunner().invoke(app, [*args, "--completions", "--max-in-flight", "2"])
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out / "round-001" / "generate" / "*.parquet")
    assert rows.height > 0 and set(rows["generator"]) == {"openai:gemma-3-270m"}
    assert (out / "corpus" / "README.md").exists()
    again = CliRunner().invoke(app, [*args, "--completions"])
    assert again.exit_code == 0 and "0 model calls" in again.output, "a rerun pays nothing"


def test_a_burst_of_429s_halves_the_in_flight_limit_then_it_regrows(tmp_path: Path) -> None:
    with FakeLLMServer(faults=lambda ordinal, _: "429-now" if ordinal < 8 else None) as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=8, min_in_flight=2)
        shown: list[str | None] = []  # what the progress bar shows after each answer
        answers = client.run(
            _requests(60), CallStats(), lambda _: shown.append(in_flight_label(client))
        )
        client.close()
    assert len(answers) == 60 and sorted(server.answered.values()) == [1] * 60
    assert shown[0] == "limit 4/8" and shown[-1] == "limit 8/8"
    changes = [
        (event["why"], event["limit"])
        for event in read_events(tmp_path / "events.jsonl")
        if event["event"] == "llm_concurrency"
    ]
    assert changes[0] == ("rate_limited", 4), "one burst halves the limit once"
    assert ("recovered", 8) in changes, "successes grow it back to max_in_flight"
    grown = [limit for why, limit in changes[1:]]
    assert grown == sorted(grown), "it regrows one step at a time"


def test_a_server_failing_most_calls_trips_the_breaker(tmp_path: Path) -> None:
    with FakeLLMServer(faults=lambda ordinal, _: "500-now") as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=8, max_retries=20)
        with pytest.raises(FatalBackendError) as error:
            client.run(_requests(30), CallStats())
        client.close()
    assert "stopped early: " in str(error.value)
    assert "of the last 50 calls failed" in str(error.value)
    # 30 calls x 21 attempts without the breaker; with it, the window and what was in flight
    assert server.requests <= 50 + 8


def test_a_server_refusing_the_key_stops_after_the_calls_in_flight(tmp_path: Path) -> None:
    with FakeLLMServer(faults=lambda ordinal, _: "401") as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=4)
        with pytest.raises(FatalBackendError) as error:
            client.run(_requests(40), CallStats())
        client.close()
    assert "authentication failed" in str(error.value) and "\n" not in str(error.value)
    assert server.requests <= 4, "after the first 401 nothing more is sent"


def test_the_budget_stops_before_the_call_that_could_exceed_it(tmp_path: Path) -> None:
    """Each call reserves its upper bound (input + the whole max_tokens) before it is sent; a
    second client with a higher cap and the spend so far goes on without repeating a call."""
    cap = 0.0005
    with FakeLLMServer() as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=3)
        client.budget = Budget(cap)
        stats = CallStats()
        with pytest.raises(BudgetExhausted, match=r"rerun with a higher --max-cost"):
            client.run(_requests(20), stats)
        client.close()
        spent = client.budget.spent_usd
        assert 0 < spent <= cap and stats.cost_usd == pytest.approx(spent)
        paid = server.requests
        assert 0 < paid < 20
        assert stats.calls == paid, "every call that was sent was answered and cached"
        more = _client(tmp_path, "openai", server.url, max_in_flight=3)
        more.budget = Budget(1.0, spent_before_usd=spent)
        rest = CallStats()
        answers = more.run(_requests(20), rest)
        more.close()
    assert len(answers) == 20
    assert (rest.cache_hits, rest.calls) == (paid, 20 - paid)
    assert sorted(server.answered.values()) == [1] * 20, "no call paid for twice"


def test_a_cap_on_an_unpriced_model_is_refused_before_any_call(tmp_path: Path) -> None:
    settings = BackendSettings.model_validate(
        {"backend": "openai", "model": "mystery-model", "base_url": "http://127.0.0.1:9/v1"}
    )
    with pytest.raises(UserError, match="--max-cost needs a price for openai:mystery-model"):
        LLMClient(
            make_backend(settings, "sk-x"),
            CallCache(tmp_path / "calls.sqlite"),
            EventLog(tmp_path / "events.jsonl"),
            PriceTable([]),
            Budget(1.0),
        )


def _identity(index: int) -> str:
    """The fake server's identity of `_requests(n)[index]` (chat)."""
    body = {"messages": [{"role": "user", "content": f"질문 목록 {index}"}], "seed": index}
    return fake_identity(body)


def test_cut_off_and_filtered_answers_are_asked_again_then_recorded(tmp_path: Path) -> None:
    """`length` and `content_filter` answers are failures: asked again `finish_retries` times (each
    attempt paid and counted), then the last one is cached as it is, for the stage to reject."""
    first_cut = {_identity(0)}
    always = {_identity(1): "filtered", _identity(2): "length"}

    def faults(ordinal: int, identity: str) -> str | None:
        if identity in first_cut:
            first_cut.discard(identity)
            return "length"
        return always.get(identity)

    with FakeLLMServer(faults=faults) as server:
        client = _client(tmp_path, "openai", server.url, max_in_flight=2, finish_retries=1)
        stats = CallStats()
        answers = client.run(_requests(4), stats)
        again = client.run(_requests(4), CallStats())
        client.close()
    assert [a.finish_reason for a in answers] == ["stop", "content_filter", "length", "stop"]
    assert server.received[_identity(0)] == 2, "a cut-off answer is asked again"
    assert server.received[_identity(1)] == server.received[_identity(2)] == 2
    assert server.received[_identity(3)] == 1
    assert (stats.calls, stats.bad_finishes, stats.retries) == (7, 5, 3), "every attempt paid"
    assert stats.cost_usd == pytest.approx(7 * (100 * 0.15 + 40 * 0.60) / 1e6)
    assert [a.finish_reason for a in again] == [a.finish_reason for a in answers]
    assert server.requests == 7, "the recorded failures replay from the cache"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_batch_api_answers_at_half_price_and_a_restart_polls_the_same_job(
    tmp_path: Path, provider: str
) -> None:
    """The batch API path against the fake server's imitation of each provider's batch
    endpoints: a client stopped while its job runs (as a kill would) leaves the job's id in
    calls.sqlite; the next client polls that job instead of submitting another, and pays once."""
    with FakeLLMServer() as server:
        url = server.url if provider == "openai" else server.root_url
        server.batch_polls_to_end = None  # the job runs until the test says so
        first = _client(tmp_path, provider, url, batch_api=True, batch_poll_s=0.05)

        async def stopped_while_the_job_runs() -> None:
            work = asyncio.ensure_future(first.answer_all(_requests(6), CallStats()))
            while not server.jobs:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a few polls
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)

        first.run_async(stopped_while_the_job_runs())
        first.close()
        assert len(server.jobs) == 1 and server.requests == 0
        server.batch_polls_to_end = 1
        second = _client(tmp_path, provider, url, batch_api=True, batch_poll_s=0.05)
        stats = CallStats()
        statuses: list[str] = []
        second.on_status = statuses.append
        answers = second.run(_requests(6), stats)
        replay = second.run(_requests(6), CallStats())
        second.close()
    assert len(server.jobs) == 1, "the restarted client polled the job it found"
    assert sorted(server.answered.values()) == [1] * 6
    assert all(answer.text.startswith("1. ") for answer in answers)
    assert [a.text for a in replay] == [a.text for a in answers]
    assert stats.calls == 6 and statuses[-1] == "batch: 1 job, 6/6 answered"
    tokens_in, tokens_out = (100, 40) if provider == "openai" else (120, 30)
    listed = 6 * (tokens_in * 0.15 + tokens_out * 0.60) / 1e6
    assert stats.cost_usd == pytest.approx(listed / 2), "batch answers cost half the list price"
    events = [e["event"] for e in read_events(tmp_path / "events.jsonl")]
    assert events.count("batch_submitted") == 1 and "batch_resumed" in events


def test_batch_requests_that_fail_are_resubmitted_then_stop_the_run(tmp_path: Path) -> None:
    """Requests a job errored on go out again in a new job; when they fail every time the run
    stops with one line after max_retries + 1 submissions."""
    broken = {_identity(2)}
    with FakeLLMServer(faults=lambda _, identity: "500" if identity in broken else None) as server:
        client = _client(
            tmp_path, "openai", server.url, batch_api=True, batch_poll_s=0.01, max_retries=2
        )
        with pytest.raises(FatalBackendError, match=r"left 1 requests unanswered after 3 sub"):
            client.run(_requests(4), CallStats())
        client.close()
        assert len(server.jobs) == 1 + 2 and server.received[_identity(2)] == 3
        broken.clear()
        retry = _client(tmp_path, "openai", server.url, batch_api=True, batch_poll_s=0.01)
        answers = retry.run(_requests(4), CallStats())
        retry.close()
    assert len(answers) == 4 and len(server.jobs) == 4, "only the failed request went out again"
    assert sorted(server.answered.values()) == [1] * 4
