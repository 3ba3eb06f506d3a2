"""Starting the page's server: checks, the listening socket, the model, uvicorn.

:func:`serve` binds the socket itself before anything slow, so a taken port is said in one
line at once; it then loads the model, starts the job worker and runs uvicorn on that socket
until Ctrl-C (or SIGTERM), and on the way out cancels the jobs and removes every session's
folder.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from typing import TextIO

import uvicorn

from ...cli.common import load_model
from ...errors import OptionError, UserError
from ...runtime import Runtime
from .jobs import Worker, routed_warnings
from .server import App, with_headers
from .sessions import SessionStore

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
DEFAULT_MAX_UPLOAD_MB = 1024


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port); UserError if it cannot be."""
    if not 0 <= port <= 65535:
        raise OptionError("port", f"{{option}} must be from 0 to 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise OptionError("host", f"{{option}} {host!r} is not an address of this machine "
                          f"({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise OptionError("port", f"cannot listen on {host}:{port}: the port is in use "
                              "(choose another with {option})") from None
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)  # connections wait from now on, before the server accepts them
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB, weights: str | None = None,
          device: str = "auto", out: TextIO | None = None) -> None:
    """Serve the page on ``host``:``port`` until interrupted (see the module docstring).

    ``max_upload_mb``: the largest upload (a clip, or its sharp frames, all files together);
    ``weights``: a weights file (default: the shipped ones); ``device``: where jobs run.
    Prints the page's address on ``out`` (stdout) once it answers."""
    out = out or sys.stdout
    if max_upload_mb < 1:
        raise OptionError("max_upload_mb", f"{{option}} must be at least 1, got {max_upload_mb}")
    Runtime.resolve(device, "auto")  # a wrong device is said before anything starts
    if not is_loopback(host):
        print(f"flowdeblur: warning: listening on {host}, not only on this machine: anyone who "
              "can reach it can use the page and see its uploads (there is no authentication)",
              file=sys.stderr, flush=True)
    sock = bind(host, port)
    sessions = worker = None
    try:
        model = load_model(weights)
        sessions = SessionStore()
        worker = Worker(model, device=device, weights=weights)
        app = App(sessions, worker, max_upload_mb=max_upload_mb, device=device)
        config = uvicorn.Config(
            with_headers(app.starlette(), loopback=is_loopback(host)), log_level="warning",
            access_log=False, server_header=False, date_header=False, proxy_headers=False,
            lifespan="off", timeout_graceful_shutdown=2, log_config=None)
        server = uvicorn.Server(config)
        worker.start()
        print(f"flowdeblur: the page is at {address(sock)} (Ctrl-C stops)", file=out, flush=True)
        with routed_warnings():
            server.run(sockets=[sock])
    finally:
        if worker is not None:
            worker.stop()
        if sessions is not None:
            sessions.close()
        sock.close()
