"""`run.json`: the config snapshot and its hash, package versions, per-stage status and counters.

The snapshot decides whether a rerun may resume: any setting that changes results (taxonomy, prompt
files, --n, seed, generator) refuses to resume, and the error names the first setting that changed.
It never holds an API key: only what is passed in the snapshot is written.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.errors import UserError
from pipeline.store import FINAL_DIR, FINAL_ROUND, write_json_atomic

VERSIONED_PACKAGES = ("polars", "pydantic", "jinja2", "llama_cpp_python", "pyarrow")


def snapshot_hash(snapshot: dict[str, Any]) -> str:
    canonical = json.dumps(snapshot, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted paths whose values differ, e.g. `taxonomy.categories.crime_advice.weight`."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    return sorted(
        key for key in old_flat.keys() | new_flat.keys() if old_flat.get(key) != new_flat.get(key)
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        items: dict[str, Any] = {}
        for key, inner in value.items():
            items.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
        return _flatten({entry["id"]: entry for entry in value}, prefix)
    return {prefix: json.dumps(value, sort_keys=True, ensure_ascii=False)}


def _versions() -> dict[str, str]:
    versions = {"synth": __version__, "python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


#: the call counters each stage record of run.json may hold
CALL_COUNTERS = (
    "calls",
    "cache_hits",
    "retries",
    "bad_finishes",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "unpriced_calls",
)


def calls_by_stage(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each stage's call counters summed over its rounds (`round-001/generate` and
    `round-002/generate` are one `generate`), in the order stages first appear."""
    totals: dict[str, dict[str, float]] = {}
    for name, record in records.items():
        row = totals.setdefault(name.split("/", 1)[1], dict.fromkeys(CALL_COUNTERS, 0))
        for key in CALL_COUNTERS:
            row[key] += record.get(key, 0)
    return totals


def stage_key(round_index: int, stage: str) -> str:
    """`round-001/generate`, or `final/respond` for the run-level stages (round 0)."""
    return (
        f"{FINAL_DIR}/{stage}" if round_index == FINAL_ROUND else f"round-{round_index:03d}/{stage}"
    )


class DamagedManifest(UserError):
    """run.json cannot be read; `reason` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path}: run manifest is damaged ({reason}); rerun with --fresh to start over"
        )
        self.reason = reason


class Manifest:
    """The parsed run.json, saved atomically after every change."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: Path) -> Manifest | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "config_hash" not in data:
                raise ValueError("missing config_hash")
        except (ValueError, UnicodeDecodeError) as error:
            raise DamagedManifest(path, str(error)) from None
        return cls(path, data)

    @classmethod
    def create(cls, path: Path, snapshot: dict[str, Any], run_id: str | None = None) -> Manifest:
        now = time.time()
        manifest = cls(
            path,
            {
                "run_id": run_id or uuid.uuid4().hex,
                "config_hash": snapshot_hash(snapshot),
                "config": snapshot,
                "versions": _versions(),
                "created_at": now,
                "updated_at": now,
                "status": "running",
                "quota_by_category": {},
                "stages": {},
            },
        )
        manifest.save()
        return manifest

    @property
    def run_id(self) -> str:
        """Names the run in calls.sqlite, so a cache copied from another run is never trusted
        (runs made before run ids get one on their next start)."""
        return str(self.data.setdefault("run_id", uuid.uuid4().hex))

    def require_same_config(self, snapshot: dict[str, Any]) -> None:
        if self.data["config_hash"] == snapshot_hash(snapshot):
            return
        changed = changed_settings(self.data.get("config", {}), snapshot)
        first = changed[0] if changed else "config"
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise UserError(
            f"{self.path.parent}: setting '{first}'{more} changed since this run started; "
            "rerun with --fresh to start over, or pick a new --out"
        )

    def stage(self, round_index: int, stage: str) -> dict[str, Any]:
        """The mutable record of one stage in one round."""
        return self.data["stages"].setdefault(stage_key(round_index, stage), {})

    def save(self) -> None:
        self.data["updated_at"] = time.time()
        self.data["versions"] = _versions()
        write_json_atomic(self.path, self.data)
