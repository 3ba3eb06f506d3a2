"""Deblurred frames as outputs take them: :func:`deblurred_frames`, each frame with its source
timestamp, turned for display where the output shows pictures upright, beside its input for a
side-by-side output, with its flow if asked; for a whole source or for a chunk of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..media import FrameSource, rotate_flow_for_display, rotate_for_display
from ..models import FlowDeblurNet
from ..viz import side_by_side as beside
from .deblur import deblur_frames
from .outputs import display_rotation

__all__ = ["OutputFrame", "deblurred_frames"]


@dataclass
class OutputFrame:
    """One deblurred frame ready to write, with its source's timestamp."""

    index: int  # the frame's position in its source
    image: torch.Tensor  # (3, H, W), or (3, H, 2W) input | output
    flow: torch.Tensor | None  # (2, H, W) pixels
    pts: int | None


@dataclass
class _InputFacts:
    """What a frame's output needs from its input: its index and pts, the input itself for
    side-by-side pictures."""

    index: int
    pts: int | None
    frame: torch.Tensor | None


def deblurred_frames(
    source: FrameSource, model: FlowDeblurNet, *, side_by_side: bool, want_flow: bool,
    upright: bool, start: int = 0, stop: int | None = None, **options
) -> Iterator[OutputFrame]:
    """``source``'s frames deblurred by :func:`~.deblur.deblur_frames` (``options``), in order;
    with ``upright``, the pictures (and always the flows) turned for display as a player turns
    a rotated video's frames, so that side-by-side and flow pictures read the right way up.

    ``start``, ``stop``: frames ``start`` .. ``stop - 1`` only (a chunk; ``stop`` None: to the
    end), paired as in the whole source (one frame beside them is read on each side).
    """
    # Per-frame facts waiting for the frame's output: bounded by the window of
    # deblur_frames (batch + 2 frames), never the whole video.
    pending: deque[_InputFacts] = deque()
    rotation = display_rotation(source)

    def turn(picture: torch.Tensor) -> torch.Tensor:
        return rotate_for_display(picture, rotation) if upright and rotation else picture

    def frames() -> Iterator[torch.Tensor]:
        for item in source.iterate_with_pts(max(start - 1, 0)):
            if item.index >= start and (stop is None or item.index < stop):
                pending.append(_InputFacts(item.index, item.pts,
                                           item.image if side_by_side else None))
            yield item.image
            if stop is not None and item.index >= stop:
                return

    for item in deblur_frames(model, frames(), return_flow=want_flow, start=start, stop=stop,
                              **options):
        image, flow = item if want_flow else (item, None)
        src = pending.popleft()
        image = turn(image)
        if side_by_side:
            image = beside(turn(src.frame), image)
        if flow is not None and rotation:
            flow = rotate_flow_for_display(flow, rotation)
        yield OutputFrame(src.index, image, flow, src.pts)
