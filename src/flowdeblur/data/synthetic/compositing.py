"""Layers composited and exposures integrated in linear light (the torch reference renderer),
and the camera response applied afterwards.

For every exposure b and pixel p::

    out[b, :, p] = 1/S sum_s composite_l( tint_l * atlas(q_l,s(p)), alpha_l,s(p) )

where ``[u, q, w] = rows[b, l, s] @ (x, y, 1)`` gives the layer coordinates ``u / w`` and the
tile coordinates ``q / w`` (mirrored into the tile), the background (l = 0) is opaque and
each object layer is composited over what lies behind it. Light adds linearly, so averaging
the sub-frames of linear intensities is the exposure. ``render_cpu`` (numba) and
``render_triton`` (CUDA) compute the same in one fused pass; the tests hold them to this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .shapes import alpha_from_value, shape_value


def composite_subframes(atlas: torch.Tensor, rows: torch.Tensor, pix_x: torch.Tensor,
                        pix_y: torch.Tensor, last: torch.Tensor, far_edge: torch.Tensor,
                        scale: torch.Tensor, tint: torch.Tensor, shape: torch.Tensor
                        ) -> torch.Tensor:
    """Sum over a chunk of sub-frames of the layers composited front over back, linear light.

    Args:
        atlas: (1, 3, Ha, Wa). rows: (nb, L1, Sc, 5, 3) pixel -> [u, q, w] maps.
        pix_x, pix_y: (HW,) pixel coordinates.
        last: (nb, L1, 1, 2, 1) tile size - 1 (x, y), pixels.
        far_edge: (nb, L1, 1, 2, 1) the tile's last pixel in grid_sample units.
        scale: (2, 1) atlas pixels -> grid units.
        tint: (3, nb, L1, 1, 1). shape: (nb, L1 - 1, 1, 1, SHAPE_PARAMS).
    Returns:
        (3, nb, HW).
    """
    nb, l1, sc = rows.shape[:3]
    hw = pix_x.shape[0]
    # r = rows @ [x, y, 1]: two fused multiply-adds instead of a K=3 matmul.
    r = torch.addcmul(torch.addcmul(rows[..., 2:3], rows[..., 0:1], pix_x), rows[..., 1:2], pix_y)
    inv_w = 1.0 / r[..., 4:5, :]  # (nb, L1, Sc, 1, HW)
    # Mirror tile coordinates into the tile (reflection without repeating the edge pixel) so
    # layers extend smoothly beyond their texture, and map them to grid units in one go.
    t = torch.remainder(r[..., 2:4, :] * inv_w, 2.0 * last)  # (nb, L1, Sc, 2, HW)
    grid = torch.addcmul(far_edge, (t - last).abs(), scale, value=-1.0).transpose(-1, -2)
    # One sampling call for every layer of every exposure and sub-frame of the chunk.
    col = F.grid_sample(atlas, grid.reshape(1, -1, hw, 2), mode="bilinear",
                        padding_mode="border", align_corners=True)
    col = col.view(3, nb, l1, sc, hw) * tint
    acc = col[:, :, 0]  # background, (3, nb, Sc, HW)
    if l1 > 1:
        u = r[:, 1:, :, 0:2] * inv_w[:, 1:]  # (nb, L1-1, Sc, 2, HW)
        alpha = alpha_from_value(shape_value(u[..., 0, :], u[..., 1, :], shape), shape)
        for layer in range(1, l1):
            acc = torch.lerp(acc, col[:, :, layer], alpha[:, layer - 1])  # layer over acc
    return acc.sum(2)


def render_linear(atlas: torch.Tensor, rows: torch.Tensor, tile: torch.Tensor,
                  tint: torch.Tensor, shape: torch.Tensor, height: int, width: int,
                  chunk_points: int) -> torch.Tensor:
    """Average over S sub-frames of the composited layers, in linear light (torch version;
    ``render_triton.render_linear`` and ``render_cpu.render_linear`` compute the same).

    Works in chunks of about ``chunk_points`` layer samples to bound memory.

    Args:
        atlas: (1, 3, Ha, Wa) linear textures.
        rows: (B, L1, S, 5, 3) pixel -> [u, q, w] maps of B exposures.
        tile: (B, L1, 4) [origin x, origin y, width - 1, height - 1] of each layer's tile.
        tint: (B, L1, 3). shape: (B, L1 - 1, SHAPE_PARAMS).
    Returns:
        (B, 3, H, W) float32.
    """
    b, l1, s = rows.shape[:3]
    hw = height * width
    dev = atlas.device
    ha, wa = atlas.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=torch.float32),
                            torch.arange(width, device=dev, dtype=torch.float32), indexing="ij")
    pix_x, pix_y = xs.reshape(-1), ys.reshape(-1)
    # Atlas pixel -> grid_sample's [-1, 1] (align_corners=True: -1 and 1 are pixel centres).
    # Built from the atlas so no host -> device copy (and so no wait) happens here.
    scale = torch.stack([atlas.new_full((), 2.0 / (wa - 1)), atlas.new_full((), 2.0 / (ha - 1))])
    out = torch.empty(b, 3, hw, device=dev)
    per_exposure = l1 * hw
    b_step = max(1, min(b, chunk_points // per_exposure))
    for b0 in range(0, b, b_step):
        b1 = min(b, b0 + b_step)
        nb = b1 - b0
        s_step = max(1, chunk_points // (nb * per_exposure))
        last = tile[b0:b1, :, None, 2:4, None]
        far_edge = ((tile[b0:b1, :, 0:2] + tile[b0:b1, :, 2:4]) * scale - 1.0)[:, :, None, :, None]
        tint_c = tint[b0:b1].permute(2, 0, 1)[..., None, None]
        shape_c = shape[b0:b1, :, None, None, :]
        acc_sum = None
        for s0 in range(0, s, s_step):
            part = composite_subframes(atlas, rows[b0:b1, :, s0 : s0 + s_step], pix_x, pix_y,
                                       last, far_edge, scale[:, None], tint_c, shape_c)
            acc_sum = part if acc_sum is None else acc_sum + part
        out[b0:b1] = (acc_sum / s).transpose(0, 1)
    return out.view(b, 3, height, width)


def camera_response(linear: torch.Tensor, gamma: float) -> torch.Tensor:
    """Linear intensity -> the camera's encoded values, ``x ** (1 / gamma)`` on [0, 1]."""
    return linear.clamp(0.0, 1.0).pow(1.0 / gamma)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] values to the 8-bit grid (what a written frame holds)."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0
