"""Scene cuts: is frame t's pairing neighbour from another shot?

The flow network assumes its two frames show one scene. Across a cut no flow explains frame t
from its neighbour, and the gates computed from that pair put stripes into the output. The test
reuses the flow the network has just estimated, at its finest scale (1/4 resolution), so it
costs one small warp per frame: the neighbour warped by the flow should reproduce frame t far
better than the unwarped neighbour does whenever the two frames share a scene, however fast
the camera moves; across a cut the flow helps little, and the residual stays large.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import stack_frames
from ..ops import warp

#: A pair is a cut when the flow-compensated error (mean absolute difference on [0, 1] values,
#: at 1/4 resolution) is above this ...
CUT_MIN_ERROR = 0.05
#: ... and the flow removes less than this fraction of the uncompensated error.
CUT_MIN_UNEXPLAINED = 0.35


def pair_errors(frame_t: torch.Tensor, frame_pair: torch.Tensor,
                flow_quarter: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(flow-compensated error, uncompensated error), each (N,), of a frame pair.

    frame_t, frame_pair: (N, 3, H, W) in [0, 1], as given to the network.
    flow_quarter: (N, F, Hp/4, Wp/4), the network's finest flow (``output.flows[0]``) at the
        padded size; channels 0-1 are the t -> pair flow in pixels of that scale.
    """
    padded = stack_frames([frame_t, frame_pair]).float()
    small = F.avg_pool2d(padded, 4)  # (N, 6, Hp/4, Wp/4): the flow's own grid
    t_small, pair_small = small[:, :3], small[:, 3:]
    warped, inside = warp(pair_small, flow_quarter[:, :2].float(), return_mask=True)
    residual = (t_small - warped).abs().mean(1, keepdim=True) * inside
    compensated = residual.sum((1, 2, 3)) / inside.sum((1, 2, 3)).clamp(min=1.0)
    uncompensated = (t_small - pair_small).abs().mean((1, 2, 3))
    return compensated, uncompensated


def is_scene_cut(frame_t: torch.Tensor, frame_pair: torch.Tensor,
                 flow_quarter: torch.Tensor) -> torch.Tensor:
    """(N,) bool: True where ``frame_pair`` belongs to another shot than ``frame_t``."""
    compensated, uncompensated = pair_errors(frame_t, frame_pair, flow_quarter)
    return (compensated > CUT_MIN_ERROR) & (compensated > CUT_MIN_UNEXPLAINED * uncompensated)
