"""The caching client between stages and backends.

Stages hand it requests; it replays what `calls.sqlite` already holds, sends the rest to the
backend with a bounded number in flight, commits each answer to the cache before returning it, and
counts calls, cache hits and tokens for the manifest and the progress bars.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.backends.base import Backend, Request, Response
from pipeline.callcache import CallCache, call_key
from pipeline.events import EventLog


@dataclass
class CallStats:
    """Counters for one stage; summed into run.json."""

    calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, response: Response) -> None:
        if response.cached:
            self.cache_hits += 1
        else:
            self.calls += 1
            self.input_tokens += response.input_tokens
            self.output_tokens += response.output_tokens

    def merge(self, other: CallStats) -> None:
        for key, value in other.as_dict().items():
            setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class LLMClient:
    """One backend plus the run's call cache."""

    def __init__(self, backend: Backend, cache: CallCache, events: EventLog) -> None:
        self.backend = backend
        self.cache = cache
        self.events = events

    @property
    def generator_name(self) -> str:
        return f"{self.backend.name}:{self.backend.model}"

    def key(self, request: Request) -> str:
        return call_key(self.backend.name, self.backend.model, request)

    def run(
        self,
        requests: Sequence[Request],
        stats: CallStats,
        on_done: Callable[[Response], None] | None = None,
    ) -> list[Response]:
        """Answers in request order; `on_done` fires per answer (progress bars)."""
        return asyncio.run(self._run(requests, stats, on_done))

    async def _run(
        self,
        requests: Sequence[Request],
        stats: CallStats,
        on_done: Callable[[Response], None] | None,
    ) -> list[Response]:
        limit = asyncio.Semaphore(max(1, self.backend.max_in_flight))

        async def answer(request: Request) -> Response:
            key = self.key(request)
            cached = self.cache.get(key)
            if cached is not None:
                response = cached
            else:
                async with limit:
                    (response,) = await self.backend.generate([request])
                # committed before anyone sees it: a kill after this line costs nothing
                self.cache.put(key, self.backend.name, self.backend.model, request, response)
                self.events.write(
                    "llm_call",
                    key=key,
                    generator=self.generator_name,
                    finish_reason=response.finish_reason,
                    input_tokens=response.input_tokens,
                    output_tokens=response.output_tokens,
                    latency_s=round(response.latency_s, 3),
                )
            stats.add(response)
            if on_done is not None:
                on_done(response)
            return response

        return list(await asyncio.gather(*(answer(request) for request in requests)))
