"""`flowdeblur serve`: a local web page to deblur a clip and compare before and after.

    flowdeblur serve                      # http://127.0.0.1:7860/
    flowdeblur serve --port 8000 --max-upload-mb 4096

Needs the ``[ui]`` extra (``pip install "flowdeblur[ui]"``). The work is in
:mod:`flowdeblur.apps.web`; this module parses the options and says when the extra is missing.
"""

from __future__ import annotations

import argparse

from ..errors import UserError
from .common import add_weights_option

#: Defaults, as :mod:`flowdeblur.apps.web.launch` has them (not imported from there: it needs
#: the extra, and ``--help`` must work without it).
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_UPLOAD_MB = "127.0.0.1", 7860, 1024


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page: drop a clip, watch it deblur, compare before and after",
        description=(
            "Serve a web page on this machine to deblur a video or images with the options of "
            "`deblur`, follow the progress, compare input and output of any frame with a "
            "divider, see the estimated flow, score against sharp frames and download the "
            "results. It listens on 127.0.0.1 unless --host says otherwise, sends nothing "
            "anywhere, and keeps each tab's files in a temporary folder removed when the tab "
            "closes. Needs the [ui] extra: pip install \"flowdeblur[ui]\"."
        ),
    )
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                   "the page has no authentication)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB, metavar="N",
                   help=f"refuse uploads over N MB: a clip, or its sharp frames, all files "
                   f"together (default {DEFAULT_MAX_UPLOAD_MB})")
    add_weights_option(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or "
                   "cuda:N: where the jobs run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..apps.web.launch import serve
    except ModuleNotFoundError as e:
        raise UserError(f"the web page needs the [ui] extra, which is not installed (no "
                        f"module {e.name}): pip install \"flowdeblur[ui]\"") from None
    try:
        serve(host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
              weights=args.weights, device=args.device)
    except KeyboardInterrupt as e:  # Ctrl-C is how a server is stopped: not an error
        if type(e) is not KeyboardInterrupt:  # SIGTERM: said by the command line's main
            raise
    print("flowdeblur: stopped; every session's files are removed")
    return 0
