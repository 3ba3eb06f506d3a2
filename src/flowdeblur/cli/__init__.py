"""`flowdeblur` command line: each subcommand lives in its own module of this package.

Every module has ``add_parser(subparsers)`` and ``run(args) -> int``; this file only builds
the parser, calls the chosen subcommand and turns user mistakes into one clear line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator

from .. import __version__
from ..errors import OptionError, UserError
from . import batch, bench, deblur, demo, export, import_release, info, serve, synth, train
from . import eval as eval_command
from .common import one_line_warnings

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (deblur, batch, demo, serve, train, eval_command, synth, bench, import_release,
            export, info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowdeblur",
        description="Remove motion blur from videos with optical-flow-guided spatial RNNs.",
    )
    parser.add_argument("--version", action="version", version=f"flowdeblur {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    for command in sub.choices.values():
        command.set_defaults(option_flags=option_flags(command))
    return parser


def option_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's destination name -> its long flag (``tile_overlap`` -> ``--tile-overlap``),
    so that an :class:`OptionError` raised by the library names the flag the user typed."""
    flags = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's options
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs:
            flags.setdefault(action.dest, longs[0])
    return flags


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so every output in progress is removed."""


@contextlib.contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs (the training loop installs
    its own handler while it trains: finish the step, save, exit)."""

    def handle(signum, frame) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with one_line_warnings(), terminate_like_interrupt():
            return int(args.run(args) or 0)
    except UserError as e:
        flag = isinstance(e, OptionError) and args.option_flags.get(e.option)
        print(f"flowdeblur: error: {e.with_flag(flag) if flag else e}", file=sys.stderr)
        return 2
    except Terminated:
        print("flowdeblur: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("flowdeblur: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (e.g. `flowdeblur info | head`): not an error of
        # ours. Point stdout at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
