"""One training per run folder: an OS lock that the training process holds while it runs.

The lock is ``fcntl.flock`` on ``run_dir/.lock``: the kernel releases it when the process
ends in any way, ``kill -9`` included, so a stopped run never leaves its folder stuck. Under
torchrun only rank 0 takes it (all ranks share one run folder).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import UserError

LOCK_NAME = ".lock"


def make_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` (and its parents), or say in one line why it cannot be."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"run_dir {run_dir} exists and is not a folder") from None
    except NotADirectoryError:
        raise UserError(f"run_dir {run_dir} lies under a file, not a folder") from None
    except OSError as e:
        raise UserError(f"cannot create run_dir {run_dir}: {e.strerror or e}") from None


class RunLock:
    """Context manager: hold the lock of ``run_dir`` or raise UserError naming the holder.

    A run folder that this lock created and that holds nothing but the lock when the run
    fails is removed again, so a run that stops at once leaves nothing behind.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        self._created = not self.path.parent.exists()
        make_run_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot write in run_dir {self.path.parent}: "
                            f"{e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another training (process "
                            f"{holder}); wait for it, or choose another run_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._fd is None:
            return
        os.close(self._fd)  # closing releases the lock
        self._fd = None
        folder = self.path.parent
        if exc_type is not None and self._created and \
                [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            self.path.unlink(missing_ok=True)
            folder.rmdir()
