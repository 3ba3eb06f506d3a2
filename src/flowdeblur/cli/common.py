"""Helpers shared by the subcommands: warnings as one line, and loading the model."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

from tqdm import tqdm

from ..errors import UserError
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
