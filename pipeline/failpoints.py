"""Failpoints: named places where a test makes this process die or find its disk full.

Resume is only as good as the worst moment to die, so the tests kill real `synth` processes at
exact places (in the middle of a parquet write, inside the SQLite statement that commits an LLM
answer) instead of at random times. `SYNTH_FAILPOINTS` arms them, comma-separated:

- `parquet-mid:3`: the third time this process reaches `parquet-mid`, it SIGKILLs itself;
- `parquet-mid@round-001/screen`: the first time it reaches `parquet-mid` for a path that
  contains `round-001/screen`;
- `file-mid:2:enospc`: the second `file-mid` raises `OSError(ENOSPC)`, as a full disk would;
- `llama-probe`: the child that tries llama.cpp on this CPU dies as on a CPU that faults, so a
  test takes the local backend's fallback on any machine.

`SYNTH_FAILPOINTS_TRACE=FILE` appends every arrival (`name<TAB>what`) to FILE, so a test can learn
the points an uninterrupted run passes and pick where to kill. Unset, as outside tests, an
arrival costs two truth tests.
"""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: every point and where it is
POINTS = {
    "parquet-mid": "a parquet file (part, plan) half written to its temp file, before the rename",
    "parquet-renamed": "a parquet file renamed into place, before run.json counts it",
    "file-mid": "another file (run.json, report.html) half written to its temp file",
    "sqlite-insert": "inside the SQLite statement that commits an LLM answer to calls.sqlite",
    "vectors-insert": "inside the SQLite transaction that commits a batch of embeddings",
    "corpus-swap": "between moving the old corpus/ aside and renaming the new one in",
    "llama-probe": "in the child that tries llama.cpp on this CPU, after the model loaded "
    "(`llama-probe@extra-buffers-on` fails only the try with the extra buffer types on)",
}
ACTIONS = ("kill", "enospc")


@dataclass
class _Armed:
    name: str
    nth: int
    action: str
    within: str | None
    seen: int = 0


def _parse(spec: str) -> list[_Armed]:
    armed = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        head, _, action = entry.partition(":")
        name, _, within = head.partition("@")
        nth = 1
        if action and action.split(":")[0].isdigit():
            count, _, action = action.partition(":")
            nth = int(count)
        action = action or "kill"
        if name not in POINTS or action not in ACTIONS:
            raise ValueError(f"SYNTH_FAILPOINTS: unknown failpoint or action in {entry!r}")
        armed.append(_Armed(name, nth, action, within or None))
    return armed


_ARMED = _parse(os.environ.get("SYNTH_FAILPOINTS", ""))
_TRACE = os.environ.get("SYNTH_FAILPOINTS_TRACE")


def due(name: str, what: str = "") -> str | None:
    """Count an arrival at `name` (for `what`, a path or key); the action if it fires now."""
    if not _ARMED and not _TRACE:
        return None
    if _TRACE:
        with open(_TRACE, "a", encoding="utf-8") as trace:
            trace.write(f"{name}\t{what}\n")
    for point in _ARMED:
        if point.name != name or (point.within and point.within not in what):
            continue
        point.seen += 1
        if point.seen == point.nth:
            return point.action
    return None


def act(action: str, what: str) -> None:
    """Die (SIGKILL: no cleanup, no atexit, like a power cut or the OOM killer) or fail."""
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), what)


def reached(name: str, what: str = "", before: Callable[[], None] | None = None) -> None:
    """An arrival at `name`; when it fires, `before` runs first (e.g. to cut a file in half)."""
    action = due(name, what)
    if action is not None:
        if before is not None and action == "kill":
            before()
        act(action, what)


def halve(path: str | Path) -> Callable[[], None]:
    """Cut a file to half its length: what a write interrupted half way leaves."""

    def cut() -> None:
        size = os.path.getsize(path)
        os.truncate(path, size // 2)

    return cut


def inside_statement(db: sqlite3.Connection, name: str, what: str) -> None:
    """An arrival at `name` just before a write on `db`. A kill fires inside the next statement
    (SQLite calls the progress handler between steps of its virtual machine, so the process dies
    with the write half done); a full disk raises what SQLite raises then."""
    action = due(name, what)
    if action == "kill":
        db.set_progress_handler(lambda: act("kill", what), 1)
    elif action == "enospc":
        raise sqlite3.OperationalError("database or disk is full")
