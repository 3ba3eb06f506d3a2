"""The plain, obviously correct spatially variant RNN (paper Eq. 13): the ground truth.

Every fast backend is tested against this loop. It is deliberately naive: one Python
iteration per row or column, autograd does the backward. Do not optimise it.
"""

from __future__ import annotations

import torch

#: Direction names in the order of the output blocks (docs/DESIGN.md, "Gate and direction order").
DIRECTIONS = ("left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")


def scan_reference(x: torch.Tensor, w: torch.Tensor, direction: str) -> torch.Tensor:
    """One directional recurrence ``h[i] = (1 - w[i]) * x[i] + w[i] * h[i-1]``, ``h[-1] = 0``.

    Args:
        x, w: (N, C, H, W) input features and gates, same shape.
        direction: one of :data:`DIRECTIONS`.
    Returns:
        h: (N, C, H, W).
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    horizontal = direction in ("left_to_right", "right_to_left")
    length = x.shape[-1] if horizontal else x.shape[-2]
    order = range(length)
    if direction in ("right_to_left", "bottom_to_top"):
        order = reversed(order)
    outputs: list[torch.Tensor | None] = [None] * length
    h = torch.zeros_like(x[..., 0] if horizontal else x[..., 0, :])
    for i in order:
        xi = x[..., i] if horizontal else x[..., i, :]
        wi = w[..., i] if horizontal else w[..., i, :]
        h = (1 - wi) * xi + wi * h
        outputs[i] = h
    return torch.stack(outputs, dim=-1 if horizontal else -2)


def spatial_rnn_reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Four-direction RNN, reference loop. x: (N, C, H, W), w: (N, 4C, H, W) -> (N, 4C, H, W)."""
    gates = w.chunk(4, dim=1)
    return torch.cat([scan_reference(x, g, d) for g, d in zip(gates, DIRECTIONS)], dim=1)
