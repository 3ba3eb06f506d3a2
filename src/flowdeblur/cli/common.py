"""Helpers shared by the subcommands: the options several commands take (declared once here),
warnings as one line, and loading the model."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator

from tqdm import tqdm

from ..errors import UserError
from ..inference.ensemble import ENSEMBLE_SIZES
from ..models import FlowDeblurNet
from ..weights import load_pretrained, load_weights


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings as ``flowdeblur: warning: ...`` lines on stderr (no file/line noise),
    above a progress bar if one is showing rather than through it."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        tqdm.write(f"flowdeblur: warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        # Our own warnings (UserWarning) show once per run, even in a long-lived process.
        warnings.filterwarnings("default", category=UserWarning)
        warnings.showwarning = show
        yield


def load_model(weights: str | None) -> FlowDeblurNet:
    """The network from ``weights``, or the shipped one (UserError if neither exists)."""
    if weights is not None:
        return load_weights(weights)
    try:
        return load_pretrained()
    except UserError as e:
        raise UserError(f"{e}; pass --weights FILE") from None


# ----------------------------------------------------------------------------- shared options

#: What ``--precision`` may be for the commands that run the network once per call.
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")


def add_weights_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--weights", metavar="FILE", help="weights file (default: the shipped ones)")


def add_runtime_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                        auto_precision: str) -> None:
    """``--device`` and ``--precision``; ``auto_precision`` says what ``auto`` means for the
    command (deblur: the fastest exact-enough precision; demo and eval: fp32, as reported)."""
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or "
                   "cuda:N")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help=f"auto (default): {auto_precision}; or fp32, or autocast to bf16/fp16 "
                   "(fp16 needs CUDA)")


def add_ensemble_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                        default: int | None = 1) -> None:
    sizes = ", ".join(map(str, ENSEMBLE_SIZES))
    p.add_argument("--ensemble", type=int, default=default, metavar="N",
                   help=f"average the outputs for N flipped/transposed copies of each frame: "
                   f"{sizes} (default 1); sharper (docs/BENCHMARKS.md, \"Self-ensemble\"), N "
                   "times slower")


def add_progress_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--no-progress", "--quiet", "-q", dest="no_progress", action="store_true",
                   help="no progress bar")
