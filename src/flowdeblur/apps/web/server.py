"""The page's server: a Starlette app on uvicorn, serving one static page and a small API.

Routes (every one answers only to the session it names, by a random id the page receives
over its WebSocket):

- ``GET /``, ``GET /static/{app.js,style.css}``: the page; nothing is loaded from elsewhere
  (the Content-Security-Policy header says so to the browser too);
- ``WS /ws``: a tab's session: opened with it, ended (job cancelled, folder removed) when it
  closes; the server pushes the job's status over it;
- ``POST /api/s/{id}/upload?role=input|sharp&name=N[&reset=1]``: one file, the raw body,
  refused over the size limit; ``POST /api/s/{id}/probe?role=...``: read what was uploaded
  (frames, size) or say why it cannot be read; ``POST /api/s/{id}/start`` (the options as
  JSON), ``POST /api/s/{id}/cancel``, ``GET /api/s/{id}/status``;
- ``GET /files/{id}/{path}``: a file of the session's folder, nothing else
  (:meth:`.sessions.Session.file`); ``?download=1`` as an attachment;
- ``GET /api/health``: whether the server answers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...errors import UserError
from ...media import FrameSource
from .jobs import Job, Worker, collect_warnings
from .options import job_options, page_config
from .results import check_sharp_matches, display_facts
from .sessions import FileRefused, Session, SessionStore, safe_name

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
#: Seconds between two looks at a session's status; a change is pushed to its tab at once,
#: and the status at least every HEARTBEAT seconds (for the times shown).
PUSH_INTERVAL, HEARTBEAT = 0.25, 2.0
#: The parts of a status whose change is pushed.
CHANGES = ("state", "number", "done", "total", "ahead", "message", "seconds_per_pixel")
#: Host names a server on a loopback address answers to (not a name that some other site
#: made point here: DNS rebinding).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: Everything the page loads comes from this server; no fonts, frames, plug-ins or forms.
HEADERS = {
    "content-security-policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' blob: data:; "
        "style-src 'self'; script-src 'self'; font-src 'none'; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class App:
    """The routes, over the sessions and the worker of one server."""

    def __init__(self, sessions: SessionStore, worker: Worker, *, max_upload_mb: int,
                 device: str) -> None:
        self.sessions = sessions
        self.worker = worker
        self.max_upload_mb = max_upload_mb
        self.device = device
        self.config = {**page_config(device), "max_upload_mb": max_upload_mb}

    def starlette(self) -> Starlette:
        routes = [
            Route("/", self.index), Route("/static/{name}", self.static),
            Route("/api/health", self.health), WebSocketRoute("/ws", self.websocket),
            Route("/api/s/{sid}/upload", self.upload, methods=["POST"]),
            Route("/api/s/{sid}/probe", self.probe, methods=["POST"]),
            Route("/api/s/{sid}/start", self.start, methods=["POST"]),
            Route("/api/s/{sid}/cancel", self.cancel, methods=["POST"]),
            Route("/api/s/{sid}/status", self.status),
            Route("/files/{sid}/{path:path}", self.file),
        ]
        return Starlette(routes=routes)

    # -------------------------------------------------------------- the page

    async def index(self, request: Request) -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return _error("no such file", 404)
        return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name])

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "sessions": len(self.sessions), **self.worker.load()})

    # -------------------------------------------------------------- sessions

    async def websocket(self, ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != ws.headers.get("host"):
            await ws.close(code=1008)  # another site's page: no session for it
            return
        await ws.accept()
        session = self.sessions.create()
        pusher = None
        try:
            await ws.send_json({"type": "session", "session": session.id,
                                "config": self.config})
            pusher = asyncio.create_task(self._push(ws, session))
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if pusher is not None:
                pusher.cancel()
            self.sessions.end(session)
            self.worker.end_session(session)

    async def _push(self, ws: WebSocket, session: Session) -> None:
        """Send the session's status when it changes, and at least every few seconds."""
        last, sent = None, 0.0
        try:
            while True:
                status = self._status(session)
                key = tuple(status.get(k) for k in CHANGES) + (len(status.get("warnings", [])),)
                now = time.monotonic()
                if key != last or now - sent > HEARTBEAT:
                    await ws.send_json({"type": "status", **status})
                    last, sent = key, now
                await asyncio.sleep(PUSH_INTERVAL)
        except Exception:  # the tab has gone: the receiving side ends the session
            return

    def _session(self, request: Request) -> Session:
        return self.sessions.get(request.path_params["sid"])

    def _status(self, session: Session) -> dict:
        job, speed = session.job, {"seconds_per_pixel": self.worker.seconds_per_pixel}
        if job is None:
            return {"state": "idle", **speed}
        return {**job.status(self.worker.ahead(job)), **speed}

    # -------------------------------------------------------------- uploads

    async def upload(self, request: Request) -> Response:
        try:
            session = self._session(request)
            role = request.query_params.get("role", "input")
            folder = session.role_folder(role)
            name = safe_name(request.query_params.get("name", ""))
            if session.job is not None and session.job.active:
                raise UserError("a job is running: cancel it before uploading")
        except FileRefused as e:
            return _error(str(e), 404)
        except UserError as e:
            return _error(str(e))
        if request.query_params.get("reset") == "1":
            session.reset(role)
        upload = session.uploads[role]
        if name in upload.names:
            return _error(f"two files are named {name}: each frame needs its own name")
        limit = self.max_upload_mb * 2**20
        declared = int(request.headers.get("content-length") or 0)
        refusal = (f"{name}: the upload is over the {self.max_upload_mb} MB limit (flowdeblur "
                   "serve --max-upload-mb sets it)")
        if upload.bytes + declared > limit:
            return _error(refusal, 413)
        path, written = folder / name, 0
        with open(path, "wb") as f:
            async for chunk in request.stream():
                written += len(chunk)
                if upload.bytes + written <= limit:
                    f.write(chunk)
                # else: read to the end and drop it, so the client gets the answer, not a reset
        if upload.bytes + written > limit:
            path.unlink(missing_ok=True)
            return _error(refusal, 413)
        upload.names.append(name)
        upload.bytes += written
        upload.info = None
        return JSONResponse({"ok": True, "name": name, "bytes": written})

    async def probe(self, request: Request) -> Response:
        try:
            session = self._session(request)
            role = request.query_params.get("role", "input")
            session.role_folder(role)
        except FileRefused as e:
            return _error(str(e), 404)
        except UserError as e:
            return _error(str(e))
        if not session.uploads[role].names:
            return _error("nothing was uploaded")
        try:
            info, notes = await run_in_threadpool(self._read, session, role)
        except UserError as e:
            return _error(session.tidy(str(e)))
        return JSONResponse({"info": info, "warnings": notes})

    def _read(self, session: Session, role: str) -> tuple[dict, list[str]]:
        """What the upload of ``role`` is (UserError if it cannot be read), in a thread."""
        paths, notes = session.paths(role), []
        with collect_warnings(notes):
            try:
                source = FrameSource(paths[0] if len(paths) == 1 else paths)
                info = display_facts(source)
            except UserError:
                raise
            except Exception as e:  # a decoder's own error: still the file's fault
                raise UserError(f"cannot read {paths[0].name}: {e}") from None
        info["names"] = list(session.uploads[role].names)
        clip = session.uploads["input"].info if role == "sharp" else None
        if clip is not None:
            check_sharp_matches(clip, info)
        session.uploads[role].info = info
        return info, [session.tidy(n) for n in notes]

    # -------------------------------------------------------------- jobs

    async def start(self, request: Request) -> Response:
        try:
            session = self._session(request)
        except FileRefused as e:
            return _error(str(e), 404)
        try:
            choices = json.loads(await request.body() or b"{}")
            if not isinstance(choices, dict):
                raise UserError("the options must be a JSON object")
            job = self._new_job(session, choices)
        except json.JSONDecodeError:
            return _error("the options are not valid JSON")
        except UserError as e:
            return _error(str(e))
        self.worker.submit(job)
        return JSONResponse(self._status(session))

    def _new_job(self, session: Session, choices: dict) -> Job:
        clip = session.uploads["input"].info
        if clip is None:
            raise UserError("upload a video or images first")
        if session.job is not None and session.job.active:
            raise UserError("a job is already running: cancel it first")
        options = job_options(choices, device=self.device)
        sharp = session.uploads["sharp"]
        if sharp.names and sharp.info is None:
            raise UserError("the sharp frames could not be read: upload them again or remove "
                            "them")
        if sharp.info is not None:
            check_sharp_matches(clip, sharp.info)
        if session.job is not None:  # the previous result goes
            session.job = None
            for old in session.folder.glob("job*"):
                shutil.rmtree(old, ignore_errors=True)
        session.jobs_started += 1
        names = session.uploads["input"].names
        video = clip["kind"] == "video"
        ensemble = options.deblur["ensemble"]
        job = Job(session=session, number=session.jobs_started,
                  folder=session.folder / f"job{session.jobs_started}",
                  inputs=session.paths("input"), stem=Path(names[0]).stem if video else "frames",
                  input_suffix=Path(names[0]).suffix if video else None, options=options,
                  clip=clip, sharp=session.paths("sharp") if sharp.info is not None else None,
                  estimate=self.worker.estimate(clip, ensemble))
        session.job = job
        return job

    async def cancel(self, request: Request) -> Response:
        try:
            session = self._session(request)
        except FileRefused as e:
            return _error(str(e), 404)
        if session.job is not None and session.job.active:
            self.worker.cancel(session.job)
        return JSONResponse(self._status(session))

    async def status(self, request: Request) -> Response:
        try:
            session = self._session(request)
        except FileRefused as e:
            return _error(str(e), 404)
        return JSONResponse(self._status(session))

    # -------------------------------------------------------------- files

    async def file(self, request: Request) -> Response:
        try:
            session = self._session(request)
            path = session.file(request.path_params["path"])
        except FileRefused as e:
            return _error(str(e), 404)
        if request.query_params.get("download") == "1":
            return FileResponse(path, filename=path.name)
        return FileResponse(path)


def _host_name(scope) -> str:
    host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
    return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def with_headers(app, *, loopback: bool):
    """``app`` with :data:`HEADERS` on every HTTP response; ``loopback``: refuse requests whose
    Host header is not one of :data:`LOOPBACK_NAMES`."""
    extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    refusal = Response("this server answers only to 127.0.0.1 or localhost", 403)

    async def wrapped(scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await app(scope, receive, send)
        if loopback and _host_name(scope) not in LOOPBACK_NAMES:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            return await refusal(scope, receive, send)
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await app(scope, receive, send_with_headers)

    return wrapped
