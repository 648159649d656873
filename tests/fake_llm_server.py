"""A small HTTP server on 127.0.0.1 that speaks the OpenAI chat/completions and the Anthropic
Messages shapes, with scriptable faults, for tests that need a real socket.

It stands in where the real thing cannot run here: no OpenAI or Anthropic endpoint can be reached
from this machine or CI, and a real server cannot be told to fail on cue. The real
OpenAI-compatible server (llama.cpp's) is tested separately. Every request is counted by its
identity (prompt or messages, seed), so tests can prove that no call was answered twice.

It also imitates the shapes of the two batch APIs (no real batch endpoint can be reached here):
OpenAI's file upload, `/v1/batches` and file content, and Anthropic's `/v1/messages/batches` with
its results; a job ends after `batch_polls_to_end` looks at it (never while that is None), and
its requests are answered then, each counted like a direct call.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: a fault for the n-th request (0-based) or None: "429", "500", "hang", "malformed", "drop",
#: "401", "404", "echo-key" (a 500 whose body repeats the request's key), "truncated" (a 200 whose
#: body stops half way and the connection closes); "429-now" and "500-now"
#: ask for no wait before the retry (Retry-After: 0), for fast tests of the limits. Answers that
#: are answered but bad: "length" (a list cut at the token limit), "filtered" (a content filter
#: stop) and "refuse" (a polite refusal in Korean, finish "stop")
FaultPlan = Callable[[int, str], str | None]
#: faults that still answer 200 (counted as answered); "empty" answers nothing, "prose" a
#: paragraph with no list in it
ANSWERED_FAULTS = ("length", "filtered", "refuse", "empty", "prose")
_REFUSAL_TEXT = "죄송하지만 요청하신 질문 목록은 작성해 드릴 수 없습니다."
#: what the answer says instead of a list, by fault
_FAULT_TEXT = {
    "refuse": _REFUSAL_TEXT,
    "empty": "",
    "prose": "좋은 주제네요. 이런 질문은 상황에 따라 여러 방향으로 생각해 볼 수 있고, "
    "무엇보다 듣는 사람의 입장을 먼저 헤아리는 것이 중요하다고 생각합니다.",
}
#: each bad answer's finish reason in the OpenAI and the Anthropic shape
_FINISH = {"length": ("length", "max_tokens"), "filtered": ("content_filter", "refusal")}

_PLACES = ("도서관", "체육관", "시장", "공원", "지하철역", "편의점", "병원", "학교", "카페", "공항")
_ACTS = (
    "가는 길을 알려줘",
    "언제 문을 여는지 궁금해요",
    "근처에서 조용한 자리를 찾고 싶어",
    "주차할 곳이 있나요",
    "사람이 적은 시간이 언제야",
    "예약은 어떻게 하나요",
    "혼자 가도 괜찮을까",
    "준비물이 뭐가 필요해요",
)
_WHO = ("우리 할머니", "동생", "회사 후배", "옆집 아이", "친구 부모님", "새로 온 반 친구")


def korean_query(identity: str, index: int) -> str:
    """A distinct, plain Korean question derived from the request (project-written pools)."""
    digest = hashlib.sha256(f"{identity}:{index}".encode()).digest()
    who = _WHO[digest[0] % len(_WHO)]
    place = _PLACES[digest[1] % len(_PLACES)]
    act = _ACTS[digest[2] % len(_ACTS)]
    return f"{who}와 함께 {place}에 가려는데 {act} ({digest[3] % 90 + 10}번째 질문)"


class FakeLLMServer:
    """Start with `with FakeLLMServer(...) as server:`; `server.url` is the OpenAI base URL."""

    def __init__(
        self,
        latency_s: float = 0.0,
        faults: FaultPlan | None = None,
        hold_after: int | None = None,
        items_per_answer: int = 4,
        text_faults: Callable[[str], str | None] | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.faults = faults or (lambda ordinal, identity: None)
        #: a fault chosen by what the request says (its prompt or messages, as JSON)
        self.text_faults = text_faults or (lambda text: None)
        self.hold_after = hold_after
        self.release = threading.Event()
        self.items_per_answer = items_per_answer
        self.lock = threading.Lock()
        self.requests = 0
        self.received: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.keys_seen: set[str] = set()
        self.paths: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        #: batch jobs by id, files by id; a job ends on this many polls (None: it never does)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.batch_polls_to_end: int | None = 1
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    # -- answers --------------------------------------------------------------------------------

    def answer(
        self, path: str, body: dict[str, Any], identity: str, fault: str | None = None
    ) -> dict[str, Any]:
        openai_finish, anthropic_stop = _FINISH.get(fault or "", ("stop", None))
        if path.endswith("/messages"):
            answer = self._anthropic(body, identity)
            if anthropic_stop:
                answer["stop_reason"] = anthropic_stop
            if fault in _FAULT_TEXT:
                answer["content"] = [{"type": "text", "text": _FAULT_TEXT[fault]}]
            return answer
        if path.endswith("/chat/completions"):
            if fault in _FAULT_TEXT:
                text = _FAULT_TEXT[fault]
            elif body.get("response_format"):
                text = json.dumps(_verdict(body), ensure_ascii=False)
            else:
                text = "\n".join(
                    f"{i + 1}. {korean_query(identity, i)}" for i in range(self.items_per_answer)
                )
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": openai_finish,
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
            }
        prompt = str(body.get("prompt", ""))
        numbers = re.findall(r"(\d+)\.\s*$", prompt)
        first = int(numbers[-1]) if numbers else 1
        lines = [korean_query(identity, 0)]
        lines += [
            f"{first + i}. {korean_query(identity, i)}" for i in range(1, self.items_per_answer)
        ]
        if fault in _FAULT_TEXT:
            lines = [_FAULT_TEXT[fault]]
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "text": "\n".join(lines) + "\n\n", "finish_reason": openai_finish}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
        }

    def _anthropic(self, body: dict[str, Any], identity: str) -> dict[str, Any]:
        if body.get("tools"):
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_fake",
                    "name": body["tools"][0]["name"],
                    "input": _verdict(body),
                }
            ]
            stop = "tool_use"
        else:
            text = "\n".join(
                f"{i + 1}. {korean_query(identity, i)}" for i in range(self.items_per_answer)
            )
            content = [{"type": "text", "text": text}]
            stop = "end_turn"
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 120, "output_tokens": 30},
        }

    # -- the batch APIs' shapes ------------------------------------------------------------------

    def upload(self, content_type: str, raw: bytes) -> dict[str, Any]:
        """A multipart upload: keep the JSONL file part."""
        message = email.message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw, policy=email.policy.HTTP
        )
        data = next(
            part.get_payload(decode=True)
            for part in message.iter_parts()  # type: ignore[attr-defined]
            if part.get_param("name", header="content-disposition") == "file"
        )
        with self.lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = data
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": 0,
            "filename": "requests.jsonl",
            "purpose": "batch",
            "status": "processed",
        }

    def create_job(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        anthropic = path.startswith("/v1/messages")
        if anthropic:
            requests = [("/v1/messages", r["custom_id"], r["params"]) for r in body["requests"]]
        else:
            lines = self.files[body["input_file_id"]].decode().splitlines()
            parsed = [json.loads(line) for line in lines if line.strip()]
            requests = [(line["url"], line["custom_id"], line["body"]) for line in parsed]
        with self.lock:
            job_id = f"{'msgbatch' if anthropic else 'batch'}_{len(self.jobs) + 1}"
            self.jobs[job_id] = {
                "anthropic": anthropic,
                "requests": requests,
                "polls": 0,
                "ended": False,
                "endpoint": body.get("endpoint"),
            }
        return self._job_body(job_id)

    def poll_job(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        with self.lock:
            job["polls"] += 1
            due = self.batch_polls_to_end is not None and job["polls"] >= self.batch_polls_to_end
        if due and not job["ended"]:
            self._end_job(job_id)
        return self._job_body(job_id)

    def _end_job(self, job_id: str) -> None:
        """Answer every request of the job, as the direct endpoints would, into its results."""
        job = self.jobs[job_id]
        lines = []
        errors = []
        for path, custom_id, body in job["requests"]:
            identity = request_identity(body)
            with self.lock:
                ordinal = self.requests
                self.requests += 1
                self.received[identity] += 1
                self.paths[path] += 1
                self.bodies.append(body)
            fault = self.faults(ordinal, identity) or self.text_faults(
                json.dumps([body.get("prompt"), body.get("messages")], ensure_ascii=False)
            )
            if fault and fault not in ANSWERED_FAULTS:
                # an OpenAI batch puts a failed request in its error file, Anthropic in the results
                (lines if job["anthropic"] else errors).append(
                    _batch_line(job["anthropic"], custom_id, ordinal, None)
                )
                continue
            answer = self.answer(path, body, identity, fault)
            with self.lock:
                self.answered[identity] += 1
            lines.append(_batch_line(job["anthropic"], custom_id, ordinal, answer))
        jsonl = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        with self.lock:
            if job["anthropic"]:
                self.files[f"{job_id}-results"] = jsonl
            else:
                job["output_file_id"] = f"file-{job_id}-out"
                self.files[job["output_file_id"]] = jsonl
                if errors:
                    job["error_file_id"] = f"file-{job_id}-err"
                    self.files[job["error_file_id"]] = "".join(
                        json.dumps(line) + "\n" for line in errors
                    ).encode()
            job["ended"] = True
            job["failed"] = len(errors)

    def _job_body(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        total, ended = len(job["requests"]), job["ended"]
        if job["anthropic"]:
            return {
                "id": job_id,
                "type": "message_batch",
                "processing_status": "ended" if ended else "in_progress",
                "request_counts": {
                    "processing": 0 if ended else total,
                    "succeeded": total if ended else 0,
                    "errored": 0,
                    "canceled": 0,
                    "expired": 0,
                },
                "created_at": "2026-01-01T00:00:00Z",
                "expires_at": "2026-01-02T00:00:00Z",
                "ended_at": "2026-01-01T01:00:00Z" if ended else None,
                "archived_at": None,
                "cancel_initiated_at": None,
                "results_url": f"{self.root_url}/v1/messages/batches/{job_id}/results"
                if ended
                else None,
            }
        failed = job.get("failed", 0)
        return {
            "id": job_id,
            "object": "batch",
            "endpoint": job["endpoint"],
            "input_file_id": "file-in",
            "completion_window": "24h",
            "created_at": 0,
            "status": "completed" if ended else "in_progress",
            "output_file_id": job.get("output_file_id"),
            "error_file_id": job.get("error_file_id"),
            "request_counts": {
                "total": total,
                "completed": total - failed if ended else 0,
                "failed": failed,
            },
        }

    # -- the HTTP side --------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path.startswith("/v1/files/") and path.endswith("/content"):
                    file_id = path.split("/")[3]
                    self._raw(200, server.files[file_id], {"content-type": "application/jsonl"})
                elif path.endswith("/results"):
                    self._raw(200, server.files[path.split("/")[4] + "-results"])
                elif path.startswith(("/v1/batches/", "/v1/messages/batches/")):
                    self._send(200, server.poll_job(path.rsplit("/", 1)[1]))
                else:
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if self.path == "/v1/files":
                    self._send(200, server.upload(self.headers.get("content-type", ""), raw))
                    return
                if self.path in ("/v1/batches", "/v1/messages/batches"):
                    self._send(200, server.create_job(self.path, json.loads(raw)))
                    return
                body = json.loads(raw or b"{}")
                key = self.headers.get("x-api-key") or self.headers.get(
                    "authorization", ""
                ).removeprefix("Bearer ")
                identity = request_identity(body)
                with server.lock:
                    ordinal = server.requests
                    server.requests += 1
                    server.received[identity] += 1
                    server.keys_seen.add(key)
                    server.paths[self.path] += 1
                    server.bodies.append(body)
                    holding = (
                        server.hold_after is not None
                        and sum(server.answered.values()) >= server.hold_after
                    )
                if holding:
                    server.release.wait()
                    self.close_connection = True
                    return
                fault = server.faults(ordinal, identity) or server.text_faults(
                    json.dumps([body.get("prompt"), body.get("messages")], ensure_ascii=False)
                )
                if server.latency_s:
                    time.sleep(server.latency_s)
                if fault == "429":
                    self._send(429, _error("rate limited"), {"retry-after": "1"})
                elif fault == "429-now":
                    self._send(429, _error("rate limited"), {"retry-after": "0"})
                elif fault == "500-now":
                    self._send(500, _error("internal error"), {"retry-after": "0"})
                elif fault == "500":
                    self._send(500, _error("internal error"))
                elif fault == "echo-key":
                    self._send(500, _error(f"upstream failed for key {key}"))
                elif fault == "401":
                    self._send(401, _error("invalid api key"))
                elif fault == "404":
                    self._send(404, _error("model not found"))
                elif fault == "hang":
                    time.sleep(3.0)
                    self.close_connection = True
                elif fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif fault == "malformed":
                    self._raw(200, b'{"choices": [ {"index": 0, "mess')
                elif fault == "truncated":
                    whole = json.dumps(server.answer(self.path, body, identity)).encode()
                    self._raw(200, whole, cut_at=len(whole) // 2)
                    self.close_connection = True
                else:
                    answered_fault = fault if fault in ANSWERED_FAULTS else None
                    answer = server.answer(self.path, body, identity, answered_fault)
                    with server.lock:
                        server.answered[identity] += 1
                    self._send(200, answer)

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                self._raw(status, json.dumps(payload, ensure_ascii=False).encode(), headers)

            def _raw(
                self,
                status: int,
                data: bytes,
                headers: dict[str, str] | None = None,
                cut_at: int | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data[:cut_at])

        return Handler


class _QuietServer(ThreadingHTTPServer):
    """A client that hung up (a cancelled or killed call) is expected here, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None


def request_identity(body: dict[str, Any]) -> str:
    """What makes two requests the same call: the prompt or messages, and the seed."""
    what = {
        "prompt": body.get("prompt"),
        "messages": body.get("messages"),
        "seed": body.get("seed"),
        "schema": bool(body.get("response_format") or body.get("tools")),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _batch_line(
    anthropic: bool, custom_id: str, ordinal: int, answer: dict[str, Any] | None
) -> dict[str, Any]:
    """One line of a batch's results in the provider's format: `answer`, or a server error
    when it is None."""
    if anthropic:
        if answer is None:
            error = {"type": "error", "error": {"type": "api_error", "message": "failed"}}
            return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": answer}}
    status, response_body = (500, _error("internal error")) if answer is None else (200, answer)
    return {
        "id": f"req-{ordinal}",
        "custom_id": custom_id,
        "error": None,
        "response": {"status_code": status, "request_id": "r", "body": response_body},
    }


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "fake_error"}}


def _verdict(body: dict[str, Any]) -> dict[str, Any]:
    """A valid verdict for the category the judge prompt says was intended."""
    text = json.dumps(body, ensure_ascii=False)
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema") or (
        body.get("tools") or [{}]
    )[0].get("input_schema", {})
    categories = schema.get("properties", {}).get("category", {}).get("enum") or ["everyday"]
    category = next((c for c in categories if f'"{c}"' in text or f"({c})" in text), categories[0])
    return {
        "keep": True,
        "category": category,
        "harmful": False,
        "rule_violations": [],
        "score": 0.9,
        "reason": "fake verdict",
    }
