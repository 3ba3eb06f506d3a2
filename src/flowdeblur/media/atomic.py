"""Files and folders that appear only once complete.

Every output of the package goes through here: data is written to a hidden temporary sibling
(same folder, so the same file system) and renamed over the target only when it is whole, so
a reader never sees half a file, even after a crash or ``kill -9``. Temporary names start with
``.{target name}.`` and end with ``.tmp`` (plus the optional ``suffix``). Temporaries are
created with the user's usual permissions (``0o666`` less the umask), so a published file has
the mode a plain ``open(path, "w")`` would have given it.

Two shapes of the same rule: :func:`atomic_file` for a write that fits in one ``with`` block,
:class:`PendingFile` for a writer that outlives one (a video encoder open across many calls).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError

PathLike = str | os.PathLike

#: Suffix of every temporary file or folder made here.
TEMP_SUFFIX = ".tmp"


def temp_prefix(target: Path) -> str:
    """Name prefix of the temporaries made for ``target`` (for cleaning them up)."""
    return f".{target.name}."


def _temp_name(target: Path, suffix: str = "") -> Path:
    return target.parent / f"{temp_prefix(target)}{secrets.token_hex(4)}{TEMP_SUFFIX}{suffix}"


class PendingFile:
    """A new, empty temporary file beside ``target``, published by :meth:`commit` or removed
    by :meth:`discard`.

    ``suffix`` is appended after ``.tmp`` for writers that choose the format by extension
    (FFmpeg, Pillow). The target's folder is created if missing; OSError if it cannot be.

    Attributes:
        target: where the file appears on :meth:`commit`.
        path: the temporary file to write.
    """

    def __init__(self, target: PathLike, *, suffix: str = ""):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        while True:
            path = _temp_name(self.target, suffix)
            try:
                # O_EXCL: never reuse a name another writer holds; mode 0o666 & ~umask.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            os.close(fd)
            self.path = path
            return

    def commit(self) -> None:
        """fsync the temporary file and rename it over ``target``."""
        with open(self.path, "rb") as f:
            os.fsync(f.fileno())  # the rename must not become durable before the data
        os.replace(self.path, self.target)

    def discard(self) -> None:
        """Remove the temporary file (if it is still there); ``target`` is left as it was."""
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is fsynced and renamed to
    ``path``, on an exception it is removed and ``path`` is left as it was.

    ``suffix`` is appended after ``.tmp`` for writers that choose the format by extension
    (e.g. ``suffix=".png"``).
    """
    pending = PendingFile(path, suffix=suffix)
    try:
        yield pending.path
        pending.commit()
    except BaseException:
        pending.discard()
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all."""
    atomic_write_bytes(path, text.encode("utf-8"))


def temp_dir_beside(path: PathLike) -> Path:
    """Create and return a new hidden, empty folder next to ``path``.

    Made with ``mkdir`` rather than ``mkdtemp`` so it gets the user's usual permissions.
    Raises OSError when the parent cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(path)
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def make_parent_folder(path: PathLike) -> None:
    """Create the folder ``path`` will be written in (and its parents).

    Raises:
        UserError: naming the folder, when it cannot be created.
    """
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {parent}: {e.strerror or e}") from e
