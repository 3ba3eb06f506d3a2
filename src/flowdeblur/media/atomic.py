"""Files and folders that appear only once complete.

Every output of the package goes through here: data is written to a hidden temporary sibling
(same folder, so the same file system) and renamed over the target only when it is whole, so
a reader never sees half a file, even after a crash or ``kill -9``. Temporary names are
``.{target name}.{pid}-{random}.tmp`` (plus the optional ``suffix``): the writer's process id in
the name lets a later run remove what a killed writer left (:func:`remove_stale_temporaries`)
and never touch a live one's. Temporaries are created with the user's usual permissions
(``0o666`` less the umask), so a published file has the mode a plain ``open(path, "w")`` would
have given it.

Two shapes of the same rule: :func:`atomic_file` for a write that fits in one ``with`` block,
:class:`PendingFile` for a writer that outlives one (a video encoder open across many calls).
:func:`file_sha256` is the one digest used to verify files (checkpoints, downloaded sources).
:class:`TargetLock` keeps two writers of one output apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError

PathLike = str | os.PathLike

#: Suffix of every temporary file or folder made here.
TEMP_SUFFIX = ".tmp"


def temp_prefix(target: Path) -> str:
    """Name prefix of the temporaries made for ``target`` (for cleaning them up)."""
    return f".{target.name}."


#: What follows :func:`temp_prefix` in a temporary's name: the writer's pid, a random tag.
_TEMP_TAIL = re.compile(r"^(\d+)-[0-9a-f]{8}" + re.escape(TEMP_SUFFIX))


def _temp_name(target: Path, suffix: str = "") -> Path:
    tail = f"{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}{suffix}"
    return target.parent / f"{temp_prefix(target)}{tail}"


def _is_running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: PathLike) -> list[Path]:
    """Remove the temporaries of ``target`` whose writer is no longer running (killed before
    it could clean up); those of a live writer are left alone. Returns what was removed.

    Writers are told apart by the pid in the name, so this holds for writers on this machine
    (a folder shared over a network may hold live temporaries of other machines: do not call
    this on one). A pid reused since by an unrelated process keeps its temporary, the safe way.
    """
    target = Path(target)
    prefix = temp_prefix(target)
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = _TEMP_TAIL.match(entry.name[len(prefix):])
        if match is None or _is_running(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def replace_path(new: PathLike, target: PathLike) -> None:
    """Put ``new`` (a finished file or folder beside ``target``) in place of ``target``.

    A folder cannot be renamed over a non-empty one, so an existing ``target`` is first renamed
    aside to a temporary name, ``new`` renamed in, and only then the old one removed: at every
    moment ``target`` is either the old output or the new one, whole.
    """
    new, target = Path(new), Path(target)
    if not target.exists() and not target.is_symlink():
        os.replace(new, target)
        return
    old = _temp_name(target)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)  # put the old output back
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


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


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def check_can_create(target: PathLike, what: str) -> None:
    """UserError unless something could be created at ``target`` (a file or a folder), checked
    before a long job rather than after it: the nearest existing folder on the way is probed
    with a temporary file, created and removed at once (nothing else is created).

    ``what`` names the target in the message (e.g. "OUTPUT", "--json").
    """
    target = Path(target).expanduser().absolute()
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {what} {target}: {folder} is not a folder")
    probe = _temp_name(folder / ".write-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise UserError(f"cannot write {what} {target}: {e.strerror or e}") from None
    os.unlink(probe)


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


def _lock_folder() -> Path:
    """This user's folder of target locks (outside the output folders, so that a lock can be
    taken before the output's folder exists and leaves nothing there)."""
    folder = Path(tempfile.gettempdir()) / f"flowdeblur-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


class TargetLock:
    """Context manager: hold the one lock of an output ``target`` for the whole time it is
    checked, written and published, so that two writers of the same target cannot both
    succeed; UserError naming the holder's pid if another process holds it.

    The lock is ``fcntl.flock`` on a file named after the SHA-256 of the target's absolute,
    resolved path, in a per-user folder of the system's temporary folder: the kernel releases
    it when the process ends in any way (``kill -9`` included). Writers of other users, or on
    other machines sharing a network folder, are not seen.
    """

    def __init__(self, target: PathLike, what: str = "OUTPUT") -> None:
        self.target = Path(target)
        self.what = what
        key = hashlib.sha256(str(Path(target).expanduser().resolve()).encode()).hexdigest()
        self._name = key[:32] + ".lock"
        self._fd: int | None = None
        self.path: Path | None = None

    def __enter__(self) -> TargetLock:
        self.path = _lock_folder() / self._name
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UserError(
                    f"{self.what} {self.target} is being written by another flowdeblur "
                    f"process ({holder}); wait for it to finish, or choose another name"
                ) from None
            # The previous holder unlinks the file before it lets go: a lock taken on an
            # unlinked file is no lock, so take it again on the file now at that name.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held: see __enter__
        os.close(self._fd)
        self._fd = None
