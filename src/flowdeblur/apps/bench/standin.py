"""The "convolutions only" baseline of ``flowdeblur bench``: the spatial RNN's stand-in.

:func:`use_standin_rnn` temporarily replaces every spatial RNN by ``x.repeat(1, 4, 1, 1) * w``,
an elementwise op of the same input and output shapes: the network then costs what its
convolutions cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ...models import SpatialRNN


class StandInRNN(nn.Module):
    """Same shapes as :class:`SpatialRNN` in ``mode="rnn"``, no recurrence.

    ``(N, C, H, W)`` features and ``(N, 4C, H, W)`` gates -> ``x.repeat(1, 4, 1, 1) * w``,
    ``(N, 4C, H, W)``: one elementwise kernel that reads and writes what the RNN reads and
    writes, so the network around it does exactly the same convolutions.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.mode = "standin"

    @property
    def out_channels(self) -> int:
        return 4 * self.channels

    def forward(self, x: torch.Tensor, gates: torch.Tensor | None) -> torch.Tensor:
        if gates is None:
            raise ValueError("StandInRNN needs gates")
        return x.repeat(1, 4, 1, 1) * gates.to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


@contextlib.contextmanager
def use_standin_rnn(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, each ``SpatialRNN`` of ``model`` in mode "rnn" is a :class:`StandInRNN`.

    The modules are swapped in place (``model`` itself is yielded) and the original ones put
    back on exit, even after an exception. Layers in ``"identity"`` or ``"concat"`` mode (the
    Table IV ablations) have no recurrence and are left as they are. A private copy made
    inside the block (a :meth:`flowdeblur.runtime.Runtime.prepare` callable, a compiled
    function) keeps the stand-in after the block ends; a callable that runs ``model`` itself
    does not.
    """
    # Collect first, then swap: replacing children while iterating modules() would skip some.
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, SpatialRNN) and child.mode == "rnn"
    ]
    try:
        for parent, name, child in targets:
            setattr(parent, name, StandInRNN(child.channels))
        yield model
    finally:
        for parent, name, child in targets:
            setattr(parent, name, child)
