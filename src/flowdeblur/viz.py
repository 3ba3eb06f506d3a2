"""Pictures of what the network sees and makes: flow colour wheel, gate maps, side-by-side.

Everything here takes and returns float tensors in [0, 1] (RGB, channels first), so the results
go straight to :func:`flowdeblur.media.write_image` or a :class:`~flowdeblur.media.VideoWriter`.
"""

from __future__ import annotations

import math

import torch

#: Hues of the Middlebury flow colour wheel (Baker et al., "A Database and Evaluation
#: Methodology for Optical Flow"): red-yellow, yellow-green, green-cyan, cyan-blue,
#: blue-magenta, magenta-red. The uneven counts make perceptually even steps.
WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))

#: Factor applied to colours whose flow is beyond ``max_flow`` (out of range).
OUT_OF_RANGE_DARKEN = 0.75


def color_wheel() -> torch.Tensor:
    """The 55 hues of the Middlebury wheel, (55, 3) float in [0, 1], starting at red.

    Each segment ramps one RGB channel linearly (in steps of 255 / length, floored as the
    8-bit original does) while another stays at full intensity.
    """
    # (constant channel, ramped channel, ramps up?) per segment, channels 0=R 1=G 2=B.
    ramps = {
        "RY": (0, 1, True),
        "YG": (1, 0, False),
        "GC": (1, 2, True),
        "CB": (2, 1, False),
        "BM": (2, 0, True),
        "MR": (0, 2, False),
    }
    rows = []
    for name, length in WHEEL_SEGMENTS:
        full, ramped, up = ramps[name]
        seg = torch.zeros(length, 3, dtype=torch.float64)
        steps = torch.floor(255.0 * torch.arange(length, dtype=torch.float64) / length)
        seg[:, full] = 255.0
        seg[:, ramped] = steps if up else 255.0 - steps
        rows.append(seg)
    return (torch.cat(rows) / 255.0).float()


def flow_to_color(flow: torch.Tensor, max_flow: float | None = None) -> torch.Tensor:
    """Colour-code optical flow with the Middlebury wheel.

    Hue gives the direction (right = red, down = yellow, left = cyan, up = blue-violet),
    saturation the magnitude divided by ``max_flow``: zero flow is white, flow of length
    ``max_flow`` is the pure hue, and longer (out-of-range) flow is darkened by 0.75.
    Non-finite flow is drawn black.

    Args:
        flow: (2, H, W) or (N, 2, H, W), pixels, channel 0 = x (right), 1 = y (down).
        max_flow: magnitude drawn fully saturated. None: each image's own largest finite
            magnitude (so every picture uses its full range; pass a number to compare pictures).
    Returns:
        (3, H, W) or (N, 3, H, W) float32 RGB in [0, 1], on ``flow``'s device.
    """
    if flow.dim() not in (3, 4) or flow.shape[-3] != 2:
        raise ValueError(f"flow must be (2, H, W) or (N, 2, H, W), got {tuple(flow.shape)}")
    if max_flow is not None and not (max_flow > 0 and math.isfinite(max_flow)):
        raise ValueError(f"max_flow must be a positive number, got {max_flow}")
    single = flow.dim() == 3
    f = (flow.unsqueeze(0) if single else flow).detach().float()
    finite = torch.isfinite(f).all(dim=1)  # (N, H, W)
    f = torch.where(finite.unsqueeze(1), f, torch.zeros_like(f))
    u, v = f[:, 0], f[:, 1]
    magnitude = torch.sqrt(u * u + v * v)  # (N, H, W)
    if max_flow is None:
        scale = magnitude.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1)
    else:
        scale = torch.full_like(magnitude[:, :1, :1], float(max_flow))
    radius = magnitude / scale

    wheel = color_wheel().to(f.device)  # (K, 3)
    k = wheel.shape[0]
    # Angle measured from the negative x axis: flow to the right lands on the wheel's seam
    # (red at both ends), flow to the left half-way round (cyan); y points down on screen.
    angle = torch.atan2(-v, -u) / math.pi  # (-1, 1]
    position = (angle + 1) / 2 * (k - 1)  # [0, K-1]
    k0 = position.floor().long().clamp(0, k - 1)
    k1 = (k0 + 1) % k
    frac = (position - k0.float()).unsqueeze(-1)  # (N, H, W, 1)
    hue = (1 - frac) * wheel[k0] + frac * wheel[k1]  # (N, H, W, 3)

    r = radius.unsqueeze(-1)
    inside = 1 - r * (1 - hue)  # desaturate towards white for small flow
    color = torch.where(r <= 1, inside, hue * OUT_OF_RANGE_DARKEN)
    color = torch.where(finite.unsqueeze(-1), color, torch.zeros_like(color))
    color = color.permute(0, 3, 1, 2).clamp(0, 1).contiguous()  # (N, 3, H, W)
    return color[0] if single else color


def gates_to_image(gates: torch.Tensor) -> torch.Tensor:
    """Show spatial-RNN gates as a 2x2 grid of grey maps, one per direction.

    Each panel is the gate averaged over the C channels of one direction, mapped from
    (-1, 1) to (0, 1): white = the RNN carries its state on (long-range propagation), mid grey
    = it resets to the input, black = negative gates (sign-flipping recurrence). Panels:
    top-left left->right, top-right right->left, bottom-left top->bottom,
    bottom-right bottom->top (the gate order of :func:`flowdeblur.ops.spatial_rnn`).

    Args:
        gates: (4C, H, W) or (N, 4C, H, W), values in [-1, 1].
    Returns:
        (3, 2H, 2W) or (N, 3, 2H, 2W) float32 in [0, 1].
    """
    if gates.dim() not in (3, 4) or gates.shape[-3] % 4 != 0:
        raise ValueError(
            f"gates must be (4C, H, W) or (N, 4C, H, W) with 4C channels, got {tuple(gates.shape)}"
        )
    single = gates.dim() == 3
    g = (gates.unsqueeze(0) if single else gates).detach().float()
    n, c4, h, w = g.shape
    per_direction = g.view(n, 4, c4 // 4, h, w).mean(dim=2)  # (N, 4, H, W)
    grey = ((per_direction + 1) / 2).clamp(0, 1)
    top = torch.cat([grey[:, 0], grey[:, 1]], dim=-1)  # (N, H, 2W)
    bottom = torch.cat([grey[:, 2], grey[:, 3]], dim=-1)
    grid = torch.cat([top, bottom], dim=-2).unsqueeze(1).expand(n, 3, 2 * h, 2 * w)
    grid = grid.contiguous()
    return grid[0] if single else grid


def side_by_side(a: torch.Tensor, b: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
    """Concatenate images left to right: ``side_by_side(input, output)`` is input | output.

    Args:
        a, b, *more: (C, H, W) or (N, C, H, W), all with the same N, C and H.
    Returns:
        (C, H, sum of W) or (N, C, H, sum of W).
    """
    images = (a, b, *more)
    first = images[0]
    for i, x in enumerate(images[1:], start=1):
        if x.dim() != first.dim() or x.shape[:-1] != first.shape[:-1]:
            raise ValueError(
                f"side_by_side: image {i} has shape {tuple(x.shape)}, which does not stack "
                f"beside {tuple(first.shape)} (all but the width must match)"
            )
    if first.dim() not in (3, 4):
        raise ValueError(
            f"side_by_side expects (C, H, W) or (N, C, H, W), got {tuple(first.shape)}"
        )
    return torch.cat([x.to(first.dtype) for x in images], dim=-1)
