"""One run writes one directory: an advisory `flock` on `<run>/.lock`.

The kernel drops the lock when its process dies, however it dies (SIGKILL, power loss), so a lock
is never stale; the file only holds the owner's pid for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from pipeline.errors import UserError


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: int | None = None

    def __enter__(self) -> RunLock:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = (
                os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "another process"
            )
            os.close(descriptor)
            raise UserError(
                f"{self.path.parent}: another synth run (pid {owner}) is writing this run "
                "directory; wait for it or use another --out"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        self._descriptor = descriptor
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None
