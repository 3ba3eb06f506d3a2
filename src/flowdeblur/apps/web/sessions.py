"""Sessions of the page: one per open tab, each with its own temporary folder.

A session starts when a tab connects (its WebSocket) and ends when the tab goes: its job is
cancelled and its folder removed (by the worker once the job has stopped, if one runs).
Every file the server reads or serves for a session lies in that folder: uploads are written
there under sanitised names, and :meth:`Session.file` refuses any path that leads elsewhere.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError

#: What an upload may be: the clip to deblur, or its sharp frames (for PSNR/SSIM).
ROLES = ("input", "sharp")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FileRefused(UserError):
    """A path asked of a session that is not one of its files."""


def safe_name(name: str) -> str:
    """``name`` as a file name to store an upload under: its last component only, characters
    other than letters, digits, ``.``, ``_`` and ``-`` replaced, no leading dot."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).lstrip(".")
    if not base or base in ("_",):
        raise UserError(f"cannot store a file named {name!r}: give it a name")
    stem, dot, suffix = base.rpartition(".")
    if dot and len(base) > 120:
        base = stem[: 119 - len(suffix)] + "." + suffix
    return base[:120]


@dataclass
class Upload:
    """The files of one role (the clip or its sharp frames), in the order the page sent them."""

    names: list[str] = field(default_factory=list)
    bytes: int = 0
    info: dict | None = None  # what probing found (frames, size, ...), once probed


class Session:
    """One tab's state: its folder, its uploads and its current job."""

    def __init__(self, root: Path) -> None:
        self.id = secrets.token_urlsafe(16)
        self.folder = Path(tempfile.mkdtemp(prefix="session-", dir=root))
        self.uploads = {role: Upload() for role in ROLES}
        self.job = None  # the session's latest job (jobs.Job), if any
        self.jobs_started = 0
        self.ended = False
        self.lock = threading.Lock()

    def role_folder(self, role: str) -> Path:
        if role not in ROLES:
            raise UserError(f"unknown upload role {role!r}; use one of {', '.join(ROLES)}")
        return self.folder / role

    def reset(self, role: str) -> None:
        """Forget the files of ``role`` (a new upload replaces the previous one)."""
        folder = self.role_folder(role)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        self.uploads[role] = Upload()

    def paths(self, role: str) -> list[Path]:
        return [self.role_folder(role) / n for n in self.uploads[role].names]

    def file(self, relative: str) -> Path:
        """The session's file at ``relative`` (a path inside its folder, as the page names
        it); FileRefused for anything else: absolute paths, ``..``, links that lead out of
        the folder, hidden files (temporaries of writers), folders, missing files."""
        root = self.folder.resolve()
        if not relative or "\x00" in relative:
            raise FileRefused("not a file of this session")
        target = (root / relative).resolve()
        if root not in target.parents or not target.is_file():
            raise FileRefused("not a file of this session")
        if any(part.startswith(".") for part in target.relative_to(root).parts):
            raise FileRefused("not a file of this session")
        return target

    def tidy(self, message: str) -> str:
        """``message`` with the session's folders left out of the paths it names, so that the
        page names an upload as the user named it."""
        for folder in [*(self.folder / role for role in ROLES), self.folder]:
            message = message.replace(f"{folder}{os.sep}", "")
        return message

    def relative(self, path: Path) -> str:
        """``path`` (inside the folder) as the page names it."""
        return path.relative_to(self.folder).as_posix()

    def remove_folder(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class SessionStore:
    """Every live session, under one temporary root folder removed at :meth:`close`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="flowdeblur-serve-"))
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self) -> Session:
        session = Session(self.root)
        for role in ROLES:
            session.role_folder(role).mkdir()
        with self._lock:
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str) -> Session:
        """The live session ``session_id``; UserError when there is none (ended, or never)."""
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or session.ended:
            raise FileRefused("no such session (it ended when its tab closed): reload the page")
        return session

    def end(self, session: Session) -> None:
        """Forget ``session``; the caller stops its job, then its folder goes."""
        with self._lock:
            self._sessions.pop(session.id, None)
        session.ended = True

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def close(self) -> None:
        """End every session and remove the root folder with everything in it."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.ended = True
        shutil.rmtree(self.root, ignore_errors=True)
