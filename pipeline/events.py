"""`events.jsonl`: the run's structured log, one JSON object per line, flushed per event."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline.store import naming


class EventLog:
    """Append-only; a line cut short by a kill is skipped by readers, never fatal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        try:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as error:
            raise naming(error, self.path) from None

    def close(self) -> None:
        self._file.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event in the log."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
