"""`flowdeblur` command line: each subcommand lives in its own module of this package.

Every module has ``add_parser(subparsers)`` and ``run(args) -> int``; this file only builds
the parser, calls the chosen subcommand and turns user mistakes into one clear line.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import UserError
from . import info
from .common import one_line_warnings

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = [info]


def _optional_commands() -> list:
    """Subcommands whose modules may not exist yet in a partial checkout."""
    import importlib

    found = []
    for name in ("deblur", "demo", "train", "eval", "synth", "bench", "import_release"):
        try:
            found.append(importlib.import_module(f"{__name__}.{name}"))
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowdeblur",
        description="Remove motion blur from videos with optical-flow-guided spatial RNNs.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _optional_commands() + COMMANDS:
        module.add_parser(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return f"flowdeblur {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with one_line_warnings():
            return int(args.run(args) or 0)
    except UserError as e:
        print(f"flowdeblur: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowdeblur: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `flowdeblur info | head`): not an error of
        # ours. Point stdout at devnull so the interpreter's final flush does not fail again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
