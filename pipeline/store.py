"""The run directory on disk: atomic writes and the parquet parts every stage checkpoints to.

Layout (the unit of resume): `round-NNN/<stage>/part-NNNNN.parquet`, one file per finished batch.
Part names are deterministic, so writing a part twice is harmless and what is done is counted from
the files themselves, never from a manifest that may lag.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

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
    except OSError as error:
        Path(temp_name).unlink(missing_ok=True)
        raise naming(error, path) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    if kind == "parquet":
        failpoints.reached("parquet-renamed", str(path))


def naming(error: OSError, path: Path) -> OSError:
    """The error, naming the file it is about (pyarrow and plain writes leave that out), so a full
    disk is reported as one line that says where."""
    if error.filename is not None:
        return error
    return OSError(error.errno, error.strerror or str(error), str(path))


#: how SQLite says that the disk refused a write
SQLITE_DISK_ERRORS = {"disk is full": errno.ENOSPC, "disk I/O error": errno.EIO}


@contextmanager
def sqlite_disk_errors(path: Path) -> Iterator[None]:
    """Turn SQLite's disk-full and I/O errors into `OSError`s that name the database."""
    try:
        yield
    except sqlite3.OperationalError as error:
        for phrase, number in SQLITE_DISK_ERRORS.items():
            if phrase in str(error):
                raise OSError(number, str(error), str(path)) from None
        raise


def write_atomic(path: Path, data: bytes) -> None:
    replace_atomically(path, lambda name: Path(name).write_bytes(data))


def write_json_atomic(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def write_parquet_atomic(path: Path, frame: pl.DataFrame) -> None:
    """With a CRC per page, so a part whose bytes changed on disk is caught, not read as data."""
    replace_atomically(
        path,
        lambda name: frame.write_parquet(
            name,
            compression="zstd",
            use_pyarrow=True,
            pyarrow_options={"write_page_checksum": True},
        ),
    )


def parquet_damage(path: Path) -> str | None:
    """Why a parquet file cannot be trusted (cut short, a page's bytes changed), or None: every
    page is read and checked against its CRC."""
    try:
        pq.ParquetFile(path, page_checksum_verification=True).read()
    except (OSError, pa.ArrowException) as error:
        return (str(error).strip().splitlines() or [type(error).__name__])[0]
    return None


def set_aside(path: Path, why: str) -> Path:
    """Rename a file nothing may trust to `<name>.<why>` (never delete it: it may be evidence, or
    worth money), numbered if one is already there; returns the new path."""
    target = path.with_name(f"{path.name}.{why}")
    number = 1
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.{why}-{number}")
    path.rename(target)
    return target


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

    def checkpoint_files(self) -> list[Path]:
        """Every plan and part of every round and of `final/`."""
        files: list[Path] = []
        for directory in [*map(self.round_dir, self.rounds()), self.round_dir(FINAL_ROUND)]:
            if directory.is_dir():
                files.extend(sorted(directory.glob("*.parquet")))
                files.extend(sorted(directory.glob("*/part-*.parquet")))
        return files

    def set_aside_damaged_parts(self) -> list[tuple[Path, str]]:
        """Check every checkpoint; a damaged one is set aside as `<name>.damaged` (so the stage
        computes it again) and returned with what is wrong with it."""
        damaged = []
        for path in self.checkpoint_files():
            problem = parquet_damage(path)
            if problem is not None:
                damaged.append((set_aside(path, "damaged"), problem))
        return damaged

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
