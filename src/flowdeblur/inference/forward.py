"""One network call of inference: frames in, a clamped image and the full-resolution flow out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import UserError
from ..models import FlowDeblurOutput, full_resolution_flow

#: What inference calls: a :class:`~flowdeblur.models.FlowDeblurNet`, or the fast path
#: :meth:`flowdeblur.runtime.Runtime.prepare` made from one; both are called as
#: ``forward(frame_t, frame_next, frame_prev)`` and return a FlowDeblurOutput.
Forward = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], FlowDeblurOutput]


@dataclass
class Deblurred:
    """What inference keeps of a forward: the image, and the flow when it was asked for.

    image: (N, 3, H, W) float32 in [0, 1].
    flow: (N, 2, H, W) float32, pixels, frame t -> the frame paired with it; or None.
    flow_quarter: the network's finest flow as it made it, (N, F, Hp/4, Wp/4) in pixels of
        the 1/4 scale (``FlowDeblurOutput.flows[0]``); None for variants without flow.
    """

    image: torch.Tensor
    flow: torch.Tensor | None = None
    flow_quarter: torch.Tensor | None = None


def run_network(
    forward: Forward,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None,
    frame_prev: torch.Tensor | None,
    *,
    want_flow: bool,
) -> Deblurred:
    """One call on (N, 3, h, w) frames (or crops) -> :class:`Deblurred` of the same size."""
    with torch.no_grad():
        out = forward(frame_t, frame_next, frame_prev)
    image = out.image.float().clamp_(0, 1)
    quarter = out.flows[0] if out.flows else None
    if not want_flow:
        return Deblurred(image, None, quarter)
    if quarter is None:
        raise UserError("this network variant has no flow network, so no flow to save")
    return Deblurred(image, full_resolution_flow(quarter, tuple(frame_t.shape[-2:])), quarter)
