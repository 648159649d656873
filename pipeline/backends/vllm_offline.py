"""`vllm`: in-process `vllm.LLM` on a GPU node, the fast path for whole batches.

Deliberately thin: it follows vLLM's documented offline API (`LLM.generate` for prompts,
`LLM.chat` for messages, one `SamplingParams` per request so each keeps its seed) and nothing
else. JSON answers use structured outputs (`StructuredOutputsParams(json=...)`, vLLM 0.12 and
later; `GuidedDecodingParams` on older releases). Install with `pip install -e .[vllm]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from pipeline.backends.base import Backend, Request, Response
from pipeline.errors import UserError
from pipeline.taxonomy import BackendSettings


class VLLMBackend(Backend):
    name = "vllm"
    batched = True

    def __init__(self, settings: BackendSettings) -> None:
        self._model = settings.model
        self.chat = bool(settings.chat)  # base models by default, like the local backend
        self._llm: Any = None

    @property
    def model(self) -> str:
        return self._model or "?"

    def check(self) -> None:
        if not self._model:
            raise UserError("the vllm backend needs a model: pass --model (a hub id or a path)")
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise UserError(
                "the vllm backend needs vLLM on a GPU node: pip install -e .[vllm]"
            ) from None

    def _load(self) -> Any:
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(model=self._model)
        return self._llm

    async def generate(self, requests: Sequence[Request]) -> list[Response]:
        return await asyncio.to_thread(self._generate, list(requests))

    def _generate(self, requests: list[Request]) -> list[Response]:
        llm = self._load()
        params = [sampling_params(request) for request in requests]
        started = time.perf_counter()
        if self.chat:
            conversations = [
                [{"role": role, "content": content} for role, content in request.messages or ()]
                or [{"role": "user", "content": request.prompt or ""}]
                for request in requests
            ]
            outputs = llm.chat(conversations, sampling_params=params, use_tqdm=False)
        else:
            prompts = [request.prompt or "" for request in requests]
            outputs = llm.generate(prompts, sampling_params=params, use_tqdm=False)
        latency = (time.perf_counter() - started) / max(len(requests), 1)
        return [
            Response(
                text=output.outputs[0].text,
                finish_reason=output.outputs[0].finish_reason or "stop",
                input_tokens=len(output.prompt_token_ids or ()),
                output_tokens=len(output.outputs[0].token_ids or ()),
                latency_s=latency,
            )
            for output in outputs
        ]

    def close(self) -> None:
        self._llm = None


def sampling_params(request: Request) -> Any:
    """vLLM `SamplingParams` for one request, with structured JSON output when asked."""
    from vllm import SamplingParams

    params: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        "stop": list(request.stop) or None,
    }
    if request.json_schema is not None:
        try:
            from vllm.sampling_params import StructuredOutputsParams

            params["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
        except ImportError:  # vLLM before 0.12
            from vllm.sampling_params import GuidedDecodingParams

            params["guided_decoding"] = GuidedDecodingParams(json=request.json_schema)
    return SamplingParams(**params)
