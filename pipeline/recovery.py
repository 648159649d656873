"""What a run finds on disk when it starts, checked before anything is trusted.

A killed process leaves nothing damaged (every write is atomic), but disks fail, files get copied
between runs and people edit what they should not. Each problem is found here, said in one warning
line, and its file set aside under a telling name (`part-00003.parquet.damaged`,
`calls.sqlite.foreign`), never deleted: the stages compute what is missing again, and the call
cache of another run is never used to answer this one's calls.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.callcache import CallCache
from pipeline.errors import UserError
from pipeline.manifest import DamagedManifest, Manifest, snapshot_hash
from pipeline.store import RunDir, set_aside

#: where the vector caches live (`pipeline.embed.VectorCache`)
EMBEDDINGS_DIR = "embeddings"
#: the files SQLite keeps beside a database in WAL mode; they move with it
SQLITE_COMPANIONS = ("-wal", "-shm")


@dataclass
class Recovery:
    """Warnings (one line each) about what was found and set aside."""

    warnings: list[str] = field(default_factory=list)

    def checkpoints(self, run_dir: RunDir) -> None:
        """Half-written temp files are removed; damaged parts are set aside to be redone."""
        run_dir.remove_temp_files()
        for kept, problem in run_dir.set_aside_damaged_parts():
            original = kept.with_name(kept.name.rsplit(".", 1)[0])
            self.warnings.append(
                f"{original.relative_to(run_dir.root)} is damaged ({problem}); kept as "
                f"{kept.name} and computed again"
            )
        for path in sorted((run_dir.root / EMBEDDINGS_DIR).glob("*.sqlite")):
            problem = sqlite_damage(path)
            if problem is not None:
                kept = _set_aside_sqlite(path, "damaged")
                self.warnings.append(
                    f"{path} is damaged ({problem}); kept as {kept.name}; vectors are made again"
                )

    def manifest(self, run_dir: RunDir, snapshot: dict[str, Any]) -> Manifest:
        """run.json, or a new one. A damaged run.json is rebuilt only when calls.sqlite confirms
        that the run was started with these very settings; otherwise the user decides."""
        path = run_dir.manifest
        recorded = _cache_owner(run_dir.calls)
        try:
            manifest = Manifest.load(path)
        except DamagedManifest as error:
            if recorded.get("config_hash") != snapshot_hash(snapshot):
                raise UserError(
                    f"{path}: run manifest is damaged ({error.reason}) and calls.sqlite cannot "
                    "confirm this run's settings; move the run directory away, or rerun with "
                    "--fresh to start over"
                ) from None
            kept = set_aside(path, "damaged")
            self.warnings.append(
                f"{path} is damaged ({error.reason}); kept as {kept.name} and rebuilt from the "
                "settings, which calls.sqlite confirms (call counts and spend restart)"
            )
            manifest = None
        if manifest is not None:
            manifest.require_same_config(snapshot)
            return manifest
        same_run = recorded.get("config_hash") == snapshot_hash(snapshot)
        return Manifest.create(path, snapshot, recorded.get("run_id") if same_run else None)

    def call_cache(self, run_dir: RunDir, manifest: Manifest) -> CallCache:
        """calls.sqlite, checked: a damaged file or one of another run is set aside for a new
        one (its answers kept on disk, not used)."""
        path = run_dir.calls
        problem = sqlite_damage(path)
        if problem is not None:
            kept = _set_aside_sqlite(path, "damaged")
            self.warnings.append(
                f"{path} is damaged ({problem}); kept as {kept.name}; calls whose answers are "
                "not in a checkpoint yet are made again"
            )
        cache = CallCache(path)
        owner = cache.owner()
        if owner.get("run_id") not in (None, manifest.run_id):
            cache.close()
            kept = _set_aside_sqlite(path, "foreign")
            self.warnings.append(
                f"{path} belongs to another run (run id {owner['run_id'][:8]}); kept as "
                f"{kept.name}, not used; this run's calls are made and cached anew"
            )
            cache = CallCache(path)
        cache.claim(manifest.run_id, manifest.data["config_hash"])
        return cache


def sqlite_damage(path: Path) -> str | None:
    """Why an SQLite file cannot be trusted (not a database, a damaged page), or None."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(path)
        try:
            result = str(db.execute("PRAGMA quick_check").fetchone()[0])
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    return None if result == "ok" else result.splitlines()[0]


def _set_aside_sqlite(path: Path, why: str) -> Path:
    kept = set_aside(path, why)
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(kept.with_name(kept.name + suffix))
    return kept


def _cache_owner(path: Path) -> dict[str, str]:
    """The run calls.sqlite says it belongs to, read without writing (empty when unknown)."""
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return dict(db.execute("SELECT key, value FROM meta").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return {}
