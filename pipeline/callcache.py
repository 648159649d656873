"""`calls.sqlite`: every LLM call's raw answer, keyed by what determines it.

A response is written (and committed) before the pipeline uses it, so a killed run replays every
finished call for free. Raw text is stored, never the parsed result: fixing a parser reuses every
paid response.

It also keeps the run's batch jobs (`--batch-api`): a job's id and the keys of its requests are
committed the moment it is submitted, so a restarted run polls the job instead of paying for a
second one.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from pipeline import failpoints
from pipeline.backends.base import Request, Response
from pipeline.errors import UserError
from pipeline.store import sqlite_disk_errors

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
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    keys TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    ended_at REAL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
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
            with sqlite_disk_errors(path):
                self._db = sqlite3.connect(path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
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
        failpoints.inside_statement(self._db, "sqlite-insert", key)
        self._write(
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

    def add_batch(self, batch_id: str, backend: str, model: str, keys: list[str]) -> None:
        """Remember a submitted batch job and the cache keys it answers."""
        self._write(
            "INSERT INTO batches VALUES (?, ?, ?, ?, ?, NULL)",
            (batch_id, backend, model, json.dumps(keys), time.time()),
        )

    def open_batches(self, backend: str, model: str) -> list[tuple[str, list[str]]]:
        """Jobs of this backend and model whose results were not all read yet, oldest first."""
        rows = self._db.execute(
            "SELECT id, keys FROM batches WHERE backend = ? AND model = ? AND ended_at IS NULL "
            "ORDER BY submitted_at",
            (backend, model),
        )
        return [(batch_id, json.loads(keys)) for batch_id, keys in rows]

    def end_batch(self, batch_id: str) -> None:
        """Every answer of the job is in the cache: it is never polled again."""
        self._write("UPDATE batches SET ended_at = ? WHERE id = ?", (time.time(), batch_id))

    def owner(self) -> dict[str, str]:
        """`run_id` and `config_hash` of the run this cache belongs to (empty: nobody's yet)."""
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def claim(self, run_id: str, config_hash: str) -> None:
        """Mark the cache as this run's (a no-op when it already is)."""
        self._write("INSERT OR REPLACE INTO meta VALUES ('run_id', ?)", (run_id,))
        self._write("INSERT OR REPLACE INTO meta VALUES ('config_hash', ?)", (config_hash,))

    def _write(self, statement: str, values: tuple[object, ...]) -> None:
        with sqlite_disk_errors(self.path):
            self._db.execute(statement, values)

    def keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM calls")}

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def open_batch_jobs(path: Path) -> list[tuple[str, str, float]]:
    """(job id, backend:model, submitted at) of every batch job not read back yet, without
    writing to the file (for `synth status`)."""
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT id, backend || ':' || model, submitted_at FROM batches "
                "WHERE ended_at IS NULL ORDER BY submitted_at"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return []  # no batches table (a run without --batch-api) or a damaged file
    return [(str(job), str(who), float(at)) for job, who, at in rows]
