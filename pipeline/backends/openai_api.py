"""`openai`: the official SDK's `AsyncOpenAI`, for OpenAI and every OpenAI-compatible server
(vLLM serve, llama.cpp's server, Ollama) through `base_url`.

Chat completions by default; plain completions (`chat: false`) for base models continuing the open
numbered list. A request's JSON schema becomes `response_format` (structured outputs) on chat.

Requests go through the SDK's documented low-level `client.post(path, body=..., cast_to=Response)`
rather than the typed `create` methods: same client, auth, timeouts and error classes, without
the typed parameter transform and response models, which cost about a millisecond of CPU per
call, the largest share of the client's overhead at hundreds of calls per second
(benchmarks/api_concurrency.py). The JSON body is read here, and a body that does not parse or
lacks the fields is a malformed answer, retried.

With `batch_api` the same bodies go to the Batch API instead: one JSONL file of requests (custom
id = the call's cache key) uploaded with purpose `batch`, a job on the chat or completions
endpoint with a 24 h window, polled with `batches.retrieve`, and its output and error files read
back line by line with `files.content`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from pipeline.backends.api import APIBackend
from pipeline.backends.base import (
    BatchResult,
    BatchState,
    Request,
    Response,
    TransientBackendError,
)
from pipeline.taxonomy import BackendSettings


class OpenAIBackend(APIBackend):
    name = "openai"
    key_variable = "OPENAI_API_KEY"
    example_model = "gpt-4o-mini"

    def __init__(self, settings: BackendSettings, api_key: str | None = None) -> None:
        super().__init__(settings, api_key)
        self.chat = True if settings.chat is None else settings.chat

    sdk_module = "openai"
    client_class = "AsyncOpenAI"

    async def generate(self, requests: Sequence[Request]) -> list[Response]:
        return [await self._one(request) for request in requests]

    def _body(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body of a request."""
        if self.chat:
            return "/chat/completions", self._chat(request)
        return "/completions", self._completion(request)

    async def _one(self, request: Request) -> Response:
        started = time.perf_counter()
        path, body = self._body(request)

        async def post() -> Any:
            reply = await self.client().post(path, body=body, cast_to=_http_response_class())
            return json.loads(reply.content)

        completion = await self.guarded(post)
        return self._response(completion, time.perf_counter() - started)

    def _common(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if request.stop:
            params["stop"] = list(request.stop)
        return params

    def _chat(self, request: Request) -> dict[str, Any]:
        if request.messages is None:
            messages = [{"role": "user", "content": request.prompt or ""}]
        else:
            messages = [{"role": role, "content": content} for role, content in request.messages]
        params = {**self._common(request), "messages": messages}
        if request.json_schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.json_schema},
            }
        return params

    def _completion(self, request: Request) -> dict[str, Any]:
        if request.prompt is None:
            raise ValueError("a completions request needs a prompt")
        return {**self._common(request), "prompt": request.prompt}

    def _response(self, completion: Any, latency_s: float) -> Response:
        """Text, finish reason and usage; a body without them is malformed (and retried)."""
        choices = completion.get("choices") if isinstance(completion, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise TransientBackendError("malformed response body: no choices")
        choice = choices[0]
        if self.chat:
            message = choice.get("message") or {}
            text, refusal = message.get("content"), message.get("refusal")
        else:
            text, refusal = choice.get("text"), None
        if not isinstance(text, str) and not refusal:
            raise TransientBackendError("malformed response body: no text in the first choice")
        finish = choice.get("finish_reason") or "stop"
        if refusal and not text:
            text, finish = str(refusal), "content_filter"
        usage = completion.get("usage") or {}
        parsed = None
        if self.chat and text:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
        return Response(
            text=text or "",
            finish_reason=str(finish),
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            latency_s=latency_s,
            parsed=parsed,
        )

    async def submit_batch(self, items: Sequence[tuple[str, Request]]) -> str:
        endpoint = "/v1/chat/completions" if self.chat else "/v1/completions"
        lines = []
        for custom_id, request in items:
            _, body = self._body(request)
            line = {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}
            lines.append(json.dumps(line, ensure_ascii=False))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        client = self.client()
        upload = await self.guarded(
            lambda: client.files.create(file=("requests.jsonl", data), purpose="batch")
        )
        job = await self.guarded(
            lambda: client.batches.create(
                input_file_id=upload.id, endpoint=endpoint, completion_window="24h"
            )
        )
        return str(job.id)

    async def poll_batch(self, batch_id: str) -> BatchState:
        job = await self.guarded(lambda: self.client().batches.retrieve(batch_id))
        counts = job.request_counts
        failure = None
        if job.status == "failed":
            messages = [error.message for error in (job.errors.data if job.errors else []) or []]
            failure = "; ".join(str(m) for m in messages if m) or "the batch job failed"
        return BatchState(
            ended=job.status in _ENDED,
            status=str(job.status),
            done=(counts.completed + counts.failed) if counts else 0,
            total=counts.total if counts else 0,
            failure=failure,
        )

    async def batch_results(self, batch_id: str) -> dict[str, BatchResult]:
        client = self.client()
        job = await self.guarded(lambda: client.batches.retrieve(batch_id))
        results: dict[str, BatchResult] = {}
        for file_id in (job.output_file_id, job.error_file_id):
            if not file_id:
                continue
            content = await self.guarded(lambda file_id=file_id: client.files.content(file_id))
            for line in content.text.splitlines():
                if line.strip():
                    custom_id, result = self._batch_line(json.loads(line))
                    results[custom_id] = result
        return results

    def _batch_line(self, line: dict[str, Any]) -> tuple[str, BatchResult]:
        """One output or error line: the answer when its status was 200, else the error."""
        response = line.get("response") or {}
        body = response.get("body")
        if response.get("status_code") == 200 and isinstance(body, dict):
            try:
                return line["custom_id"], self._response(body, 0.0)
            except TransientBackendError as error:
                return line["custom_id"], str(error)
        error = line.get("error") or (body or {}).get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        return line["custom_id"], f"HTTP {response.get('status_code', '?')}: {message}"


#: Batch API statuses after which nothing in the job changes
_ENDED = ("completed", "failed", "expired", "cancelled")


def _http_response_class() -> type:
    """The raw response type the SDK returns for `cast_to` (httpx2 in current releases)."""
    try:
        import httpx2

        return httpx2.Response
    except ImportError:  # releases before the httpx2 switch
        import httpx

        return httpx.Response
