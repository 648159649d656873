"""`anthropic`: the official SDK's `AsyncAnthropic`, Messages API.

Chat only (the Messages API has no plain completion). A request's JSON schema becomes a single
forced tool whose input is the verdict, the documented way to get JSON from the API. The current
SDK takes no sampling parameters on `messages.create`: temperature, top_p and seed still key the
call cache, but the model samples with its own defaults.

With `batch_api` the same parameters go to Message Batches instead (custom id = the call's cache
key): `messages.batches.create`, polled with `retrieve` until its processing status is `ended`,
and its results read back with `messages.batches.results`.
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
from pipeline.errors import UserError
from pipeline.taxonomy import BackendSettings

#: the forced tool that carries a JSON answer
ANSWER_TOOL = "answer"
#: Messages API stop reasons in the pipeline's finish-reason words
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


class AnthropicBackend(APIBackend):
    name = "anthropic"
    key_variable = "ANTHROPIC_API_KEY"
    example_model = "claude-haiku-4-5"
    chat = True

    def __init__(self, settings: BackendSettings, api_key: str | None = None) -> None:
        super().__init__(settings, api_key)
        if settings.chat is False:
            raise UserError("the anthropic backend has no plain completions: leave chat unset")

    sdk_module = "anthropic"
    client_class = "AsyncAnthropic"

    async def generate(self, requests: Sequence[Request]) -> list[Response]:
        return [await self._one(request) for request in requests]

    async def _one(self, request: Request) -> Response:
        started = time.perf_counter()
        message = await self.guarded(lambda: self.client().messages.create(**self._params(request)))
        return self._response(message, time.perf_counter() - started)

    def _params(self, request: Request) -> dict[str, Any]:
        turns = list(request.messages or (("user", request.prompt or ""),))
        system = "\n\n".join(content for role, content in turns if role == "system")
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": role, "content": content} for role, content in turns if role != "system"
            ],
        }
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        if request.json_schema is not None:
            params["tools"] = [
                {
                    "name": ANSWER_TOOL,
                    "description": "Give the answer as this JSON object.",
                    "input_schema": request.json_schema,
                }
            ]
            params["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
        return params

    def _response(self, message: Any, latency_s: float) -> Response:
        blocks = getattr(message, "content", None)
        if not isinstance(blocks, list):
            raise TransientBackendError("malformed response body: no content blocks")
        texts: list[str] = []
        parsed: Any = None
        for block in blocks:
            kind = getattr(block, "type", None)
            if kind == "tool_use" and getattr(block, "name", None) == ANSWER_TOOL:
                parsed = getattr(block, "input", None)
                texts.append(json.dumps(parsed, ensure_ascii=False))
            elif kind == "text":
                texts.append(getattr(block, "text", "") or "")
        stop = getattr(message, "stop_reason", None) or "end_turn"
        usage = getattr(message, "usage", None)
        return Response(
            text="".join(texts) if parsed is None else texts[-1],
            finish_reason=FINISH_REASONS.get(str(stop), str(stop)),
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            latency_s=latency_s,
            parsed=parsed,
        )

    async def submit_batch(self, items: Sequence[tuple[str, Request]]) -> str:
        requests = [{"custom_id": key, "params": self._params(request)} for key, request in items]
        job = await self.guarded(lambda: self.client().messages.batches.create(requests=requests))
        return str(job.id)

    async def poll_batch(self, batch_id: str) -> BatchState:
        job = await self.guarded(lambda: self.client().messages.batches.retrieve(batch_id))
        counts = job.request_counts
        finished = counts.succeeded + counts.errored + counts.canceled + counts.expired
        return BatchState(
            ended=job.processing_status == "ended",
            status=str(job.processing_status),
            done=finished,
            total=finished + counts.processing,
        )

    async def batch_results(self, batch_id: str) -> dict[str, BatchResult]:
        results: dict[str, BatchResult] = {}

        async def read() -> None:
            async for entry in await self.client().messages.batches.results(batch_id):
                outcome = entry.result
                if outcome.type == "succeeded":
                    try:
                        results[entry.custom_id] = self._response(outcome.message, 0.0)
                    except TransientBackendError as error:
                        results[entry.custom_id] = str(error)
                else:
                    error = getattr(getattr(outcome, "error", None), "error", None)
                    detail = getattr(error, "message", None) or outcome.type
                    results[entry.custom_id] = f"{outcome.type}: {detail}"

        await self.guarded(read)
        return results
