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
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from pipeline.backends.api import APIBackend
from pipeline.backends.base import Request, Response, TransientBackendError
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

    async def _one(self, request: Request) -> Response:
        started = time.perf_counter()
        path, body = (
            ("/chat/completions", self._chat(request))
            if self.chat
            else ("/completions", self._completion(request))
        )

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


def _http_response_class() -> type:
    """The raw response type the SDK returns for `cast_to` (httpx2 in current releases)."""
    try:
        import httpx2

        return httpx2.Response
    except ImportError:  # releases before the httpx2 switch
        import httpx

        return httpx.Response
