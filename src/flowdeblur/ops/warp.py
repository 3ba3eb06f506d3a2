"""Backward warping by a dense flow field (docs/DESIGN.md, "Flow sign and channels")."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _base_grid(n: int, h: int, w: int, device, dtype) -> torch.Tensor:
    ys = torch.arange(h, device=device, dtype=dtype)
    xs = torch.arange(w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=0).unsqueeze(0).expand(n, 2, h, w)


def warp(
    image: torch.Tensor, flow: torch.Tensor, *, return_mask: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``image`` by ``flow``: ``out(p) = image(p + flow(p))``, bilinear.

    Pixel centres sit at integer coordinates (0 .. W-1, 0 .. H-1); flow is in pixels,
    channel 0 = x (right), channel 1 = y (down). So if ``frame_t(p) = frame_next(p + flow(p))``,
    ``warp(frame_next, flow)`` reproduces ``frame_t``.

    Outside the image: a sample at (x, y) takes bilinear weights only from the pixels that
    exist; missing neighbours count as zero (``padding_mode="zeros"``), so output fades to 0
    within one pixel of the border and is 0 beyond it. ``return_mask=True`` also returns a
    (N, 1, H, W) float mask, 1 where the sample point lies inside ``[0, W-1] x [0, H-1]``
    (fully supported by real pixels) and 0 elsewhere; losses should ignore masked-out pixels.

    Args:
        image: (N, C, H, W).
        flow: (N, 2, H, W), same N, H, W.
    Returns:
        warped (N, C, H, W) [, mask (N, 1, H, W)].
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"warp expects image (N, C, H, W) and flow (N, 2, H, W), got {tuple(image.shape)} "
            f"and {tuple(flow.shape)}"
        )
    n, _, h, w = image.shape
    if flow.shape[0] != n or flow.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"warp: flow {tuple(flow.shape)} does not match image {tuple(image.shape)}"
        )
    # grid_sample needs one dtype; compute coordinates in the flow's precision (fp32 at least).
    cdtype = torch.promote_types(flow.dtype, torch.float32)
    coords = _base_grid(n, h, w, flow.device, cdtype) + flow.to(cdtype)
    # With align_corners=False, normalised g maps to pixel coordinate ((g + 1) * size - 1) / 2,
    # so pixel centre c is g = (2c + 1) / size - 1; this stays valid for size 1.
    gx = (2.0 * coords[:, 0] + 1.0) / w - 1.0
    gy = (2.0 * coords[:, 1] + 1.0) / h - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    warped = F.grid_sample(
        image.to(cdtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    ).to(image.dtype)
    if not return_mask:
        return warped
    eps = 1e-3
    inside = (
        (coords[:, 0] >= -eps)
        & (coords[:, 0] <= w - 1 + eps)
        & (coords[:, 1] >= -eps)
        & (coords[:, 1] <= h - 1 + eps)
    )
    return warped, inside.unsqueeze(1).to(image.dtype)
