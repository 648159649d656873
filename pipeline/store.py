"""The run directory on disk: atomic writes and the parquet parts every stage checkpoints to.

Layout (the unit of resume): `round-NNN/<stage>/part-NNNNN.parquet`, one file per finished batch.
Part names are deterministic, so writing a part twice is harmless and what is done is counted from
the files themselves, never from a manifest that may lag.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import failpoints
from pipeline.errors import UserError

PART_PATTERN = re.compile(r"^part-(\d{5})\.parquet$")
ROUND_PATTERN = re.compile(r"^round-(\d{3})$")
#: the pseudo-round of the stages that run once over every round's accepted items
FINAL_ROUND = 0
FINAL_DIR = "final"


def replace_atomically(path: Path, write: Callable[[str], None]) -> None:
    """`write` fills a temp file in the same directory; fsync, then rename over `path`, so
    readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    kind = "parquet" if path.suffix == ".parquet" else "file"
    try:
        write(temp_name)
        failpoints.reached(f"{kind}-mid", str(path), failpoints.halve(temp_name))
        with open(temp_name, "rb") as temp_file:
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    if kind == "parquet":
        failpoints.reached("parquet-renamed", str(path))


def write_atomic(path: Path, data: bytes) -> None:
    replace_atomically(path, lambda name: Path(name).write_bytes(data))


def write_json_atomic(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def write_parquet_atomic(path: Path, frame: pl.DataFrame) -> None:
    replace_atomically(path, frame.write_parquet)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class RunDir:
    """Paths inside one `outputs/<run>/` directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def manifest(self) -> Path:
        return self.root / "run.json"

    @property
    def calls(self) -> Path:
        return self.root / "calls.sqlite"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise UserError(
                f"{self.root}: output directory is not writable ({error.strerror}); "
                "choose another with --out"
            ) from None

    def remove_temp_files(self) -> list[Path]:
        """Temp files of writes a killed process never finished (`.part-00003.parquet.x1y2.tmp`):
        never read, since only whole files are renamed into place, so they are only removed."""
        stale = [path for path in self.root.rglob(".*.tmp") if path.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def round_dir(self, round_index: int) -> Path:
        """`round-NNN/`; `FINAL_ROUND` is `final/`, where the run-level stages (balance,
        respond) keep their parts once every round is done."""
        if round_index == FINAL_ROUND:
            return self.root / FINAL_DIR
        return self.root / f"round-{round_index:03d}"

    def rounds(self) -> list[int]:
        if not self.root.is_dir():
            return []
        found = (ROUND_PATTERN.match(path.name) for path in self.root.iterdir())
        return sorted(int(match.group(1)) for match in found if match)

    def stage_dir(self, round_index: int, stage: str) -> Path:
        return self.round_dir(round_index) / stage

    def part_path(self, round_index: int, stage: str, part_index: int) -> Path:
        return self.stage_dir(round_index, stage) / f"part-{part_index:05d}.parquet"

    def parts(self, round_index: int, stage: str) -> list[Path]:
        directory = self.stage_dir(round_index, stage)
        if not directory.is_dir():
            return []
        return sorted(path for path in directory.iterdir() if PART_PATTERN.match(path.name))

    def read_stage(self, round_index: int, stage: str) -> pl.DataFrame | None:
        """All finished parts of one stage in one round, in part order; None if there are none."""
        parts = self.parts(round_index, stage)
        if not parts:
            return None
        return pl.concat([pl.read_parquet(part) for part in parts], how="vertical_relaxed")
