"""Files and folders that appear only once complete.

Every output of the package goes through here: data is written to a hidden temporary sibling
(same folder, so the same file system) and renamed over the target only when it is whole, so
a reader never sees half a file, even after a crash or ``kill -9``. Temporary names start with
``.{target name}.`` and end with ``.tmp``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

PathLike = str | os.PathLike

#: Suffix of every temporary file or folder made here.
TEMP_SUFFIX = ".tmp"


def temp_prefix(target: Path) -> str:
    """Name prefix of the temporaries made for ``target`` (for cleaning them up)."""
    return f".{target.name}."


@contextlib.contextmanager
def atomic_file(path: PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it is fsynced and renamed to
    ``path``, on an exception it is removed and ``path`` is left as it was.

    ``suffix`` is appended after ``.tmp`` for writers that choose the format by extension
    (e.g. ``suffix=".png"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX + suffix,
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)  # the rename must not become durable before the data
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
        tmp = path.parent / f"{temp_prefix(path)}{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
