"""The run's LLM roles and embedders, built once and shared: the judge (offline or LLM), the
responder, one client per distinct backend, one vector cache per embedder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.backends import make_backend
from pipeline.config import Prepared
from pipeline.embed import VectorCache, make_embedder
from pipeline.judges import Judge
from pipeline.judges.llm import LLMJudge
from pipeline.judges.offline import CentroidJudge
from pipeline.llm import CallStats, LLMClient, counting_calls
from pipeline.responders import LLMResponder
from pipeline.stages import judge as judge_stage
from pipeline.stages.respond import Responder
from pipeline.taxonomy import BackendSettings


class VectorCaches:
    """One vector cache per embedder, opened on first use and shared by dedup and the judge."""

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        self.directory = directory
        #: CPU threads for in-process embedders (`--threads`; None: every core)
        self.threads = threads
        self._caches: dict[str, VectorCache] = {}

    def get(self, embedder: str) -> VectorCache:
        if embedder not in self._caches:
            self._caches[embedder] = VectorCache(
                self.directory, make_embedder(embedder, self.threads)
            )
        return self._caches[embedder]

    def counting(self, record: dict[str, Any], work: Callable[[], pl.DataFrame]) -> pl.DataFrame:
        """Run `work`, adding the texts it embedded (not found in a cache) to `record`."""
        before = sum(cache.encoded for cache in self._caches.values())
        rows = work()
        after = sum(cache.encoded for cache in self._caches.values())
        record["embedded"] = record.get("embedded", 0) + after - before
        return rows

    def close(self) -> None:
        for cache in self._caches.values():
            cache.close()


class Clients:
    """The LLM client of each role. Roles on the generator's backend, model and server share
    its client (one model in memory, one connection pool); others get their own."""

    def __init__(self, prepared: Prepared, generator_llm: LLMClient, api_key: str | None) -> None:
        self.prepared = prepared
        self.generator_llm = generator_llm
        self.api_key = api_key
        self._own: dict[str, LLMClient] = {}

    def for_role(self, settings: BackendSettings) -> LLMClient:
        """Built at once (cheap: nothing loads or connects), so a missing key or model fails
        before any call is paid for."""
        generator = self.prepared.generator
        same = {"backend", "model", "base_url", "chat"}
        if settings.model_dump(include=same) == generator.model_dump(include=same):
            return self.generator_llm
        identity = json.dumps(settings.model_dump(include=same), sort_keys=True)
        if identity not in self._own:
            # --api-key belongs to the generator's provider; another provider's key comes from
            # its own environment variable
            key = self.api_key if settings.backend == generator.backend else None
            base = self.generator_llm
            backend = make_backend(settings, key, threads=self.prepared.threads)
            self._own[identity] = LLMClient(
                backend, base.cache, base.events, base.prices, base.budget
            )
        return self._own[identity]

    def close(self) -> None:
        for client in self._own.values():
            client.close()
            client.backend.close()


class JudgeParts:
    """The judge of this run, built on first use: the offline judge embeds the exemplars, the
    LLM judge may load a second model, and a finished run needs neither."""

    def __init__(self, prepared: Prepared, clients: Clients, vector_caches: VectorCaches) -> None:
        self.prepared = prepared
        self.vector_caches = vector_caches
        self.stats = CallStats()
        self._judge: Judge | None = None
        self._llm_client = (
            clients.for_role(prepared.judge) if prepared.judge.kind == "llm" else None
        )

    def judge(self) -> Judge:
        if self._judge is not None:
            return self._judge
        settings = self.prepared.judge
        taxonomy = self.prepared.taxonomy
        if settings.kind == "offline":
            vectors = self.vector_caches.get(settings.embedder)
            self._judge = CentroidJudge(taxonomy, vectors, settings.min_margin)
        else:
            assert self._llm_client is not None
            self._judge = LLMJudge(
                taxonomy, self.prepared.prompts, self._llm_client, settings, self.stats
            )
        return self._judge

    def run(self, rows: pl.DataFrame, record: dict[str, Any]) -> pl.DataFrame:
        """Judge one batch, adding its calls to the stage's record."""
        judge = self.judge()
        return counting_calls(record, self.stats, lambda: judge_stage.run(rows, judge))


def make_responder(prepared: Prepared, clients: Clients) -> Responder:
    settings = prepared.responder
    if settings.kind == "template":
        return prepared.templates
    return LLMResponder(
        prepared.taxonomy,
        prepared.prompts,
        clients.for_role(settings),
        settings,
        prepared.templates,
        CallStats(),
    )
