"""Geometric self-ensemble: deblur flipped and transposed copies of the frames, average back.

Camera and object motion have no preferred direction, the CPU training runs draw their
synthetic scenes under every flip and transpose (``data/pool.py``), and the network's spatial
RNNs scan all four directions; yet a trained network is not exactly symmetric, so its
outputs for a frame and for the frame's mirror image differ a little, and their average is
closer to the sharp frame than either (docs/BENCHMARKS.md, "Self-ensemble"). Each copy costs one
forward, so ``size`` copies cost ``size`` times the time of one; memory stays that of one
forward, as the copies run one after another.

The copies are the first ``size`` elements of :data:`SYMMETRIES`, the eight symmetries of the
square; the first 1, 2, 4 and 8 each form a group, so every copy's inverse is in the set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import OptionError
from ..models import FlowDeblurOutput
from .forward import Forward

#: The ensemble sizes :func:`self_ensemble` accepts.
ENSEMBLE_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Symmetry:
    """One symmetry of the image plane on the last two dims of (..., H, W) tensors.

    ``apply`` maps a frame to its copy, ``undo`` maps the network's output for the copy back.
    """

    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    undo: Callable[[torch.Tensor], torch.Tensor]


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


SYMMETRIES: tuple[Symmetry, ...] = (
    Symmetry("identity", lambda x: x, lambda x: x),
    Symmetry("flip W", lambda x: x.flip(-1), lambda x: x.flip(-1)),
    Symmetry("flip H", lambda x: x.flip(-2), lambda x: x.flip(-2)),
    Symmetry("rotate 180", lambda x: x.flip(-2, -1), lambda x: x.flip(-2, -1)),
    Symmetry("transpose", _t, _t),
    # transpose then flip: undone by flipping back, then transposing back
    Symmetry("transpose, flip W", lambda x: _t(x).flip(-1), lambda x: _t(x.flip(-1))),
    Symmetry("transpose, flip H", lambda x: _t(x).flip(-2), lambda x: _t(x.flip(-2))),
    Symmetry("anti-transpose", lambda x: _t(x).flip(-2, -1), lambda x: _t(x.flip(-2, -1))),
)


def check_ensemble(size: int) -> int:
    """``size`` if it is one of :data:`ENSEMBLE_SIZES`, else a UserError naming them."""
    if size not in ENSEMBLE_SIZES:
        sizes = ", ".join(map(str, ENSEMBLE_SIZES))
        raise OptionError("ensemble", f"{{option}} must be one of {sizes} (copies per frame), "
                                      f"got {size}")
    return size


def self_ensemble(forward: Forward, size: int) -> Forward:
    """``forward`` averaged over the first ``size`` :data:`SYMMETRIES` of its input frames.

    The returned callable takes and returns what ``forward`` does (frames (N, 3, H, W); a
    :class:`~flowdeblur.models.FlowDeblurOutput`). Its ``image`` is the float32 mean of the
    copies' images, each mapped back; its ``flows``, ``gates`` and ``padded_size`` are those of
    the untransformed frames (the first copy), so flow outputs and the scene-cut test see the
    frames as they are. ``size`` 1 returns ``forward`` itself.
    """
    symmetries = SYMMETRIES[:check_ensemble(size)]
    if size == 1:
        return forward
    assert symmetries[0].name == "identity"  # the first copy is the frames as they are

    def averaged(frame_t: torch.Tensor, frame_next: torch.Tensor | None,
                 frame_prev: torch.Tensor | None) -> FlowDeblurOutput:
        first = forward(frame_t, frame_next, frame_prev)
        # Copies, not the outputs themselves: a fast path may hand back buffers that its next
        # call overwrites.
        total = first.image.float().clone()
        flows = [f.clone() for f in first.flows]
        for sym in symmetries[1:]:
            out = forward(*(None if f is None else sym.apply(f)
                            for f in (frame_t, frame_next, frame_prev)))
            total += sym.undo(out.image).float()
        return FlowDeblurOutput(image=total / len(symmetries), flows=flows, gates=first.gates,
                                padded_size=first.padded_size)

    return averaged
