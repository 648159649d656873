"""`calls.sqlite`: every LLM call's raw answer, keyed by what determines it.

A response is written (and committed) before the pipeline uses it, so a killed run replays every
finished call for free. Raw text is stored, never the parsed result: fixing a parser reuses every
paid response.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from pipeline.backends.base import Request, Response
from pipeline.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at REAL NOT NULL
)
"""


def call_key(backend: str, model: str, request: Request) -> str:
    """sha256 over backend, model and the request's prompt, sampling params, seed and index."""
    canonical = json.dumps(
        {"backend": backend, "model": model, "request": request.payload()},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CallCache:
    """A small key-value store over SQLite in WAL mode, committed per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise UserError(
                f"{path}: not a usable call cache ({error}); move it away or rerun with --fresh"
            ) from None

    def get(self, key: str) -> Response | None:
        row = self._db.execute(
            "SELECT text, finish_reason, input_tokens, output_tokens, latency_s "
            "FROM calls WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        text, finish_reason, input_tokens, output_tokens, latency_s = row
        return Response(text, finish_reason, input_tokens, output_tokens, latency_s, cached=True)

    def put(self, key: str, backend: str, model: str, request: Request, response: Response) -> None:
        self._db.execute(
            "INSERT INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                backend,
                model,
                json.dumps(request.payload(), ensure_ascii=False),
                response.text,
                response.finish_reason,
                response.input_tokens,
                response.output_tokens,
                response.latency_s,
                time.time(),
            ),
        )

    def keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM calls")}

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        self._db.close()
