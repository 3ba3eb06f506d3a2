"""Fused Triton renderer for the synthetic scenes (GPU fast path of
``compositing.render_linear``, the torch reference beside it).

Same function as the torch renderer in ``compositing.py``: for every exposure b and pixel p,

    out[b, :, p] = 1/S sum_s composite_l( tint_l * atlas(q_l,s(p)), alpha_l,s(p) )

where ``[u, q, w] = rows[b, l, s] @ (x, y, 1)`` gives the layer coordinates ``u / w`` and the
tile coordinates ``q / w`` (mirrored into the tile), the background (l = 0) is opaque and each
object layer is composited over what lies behind it with ``alpha = clamp(offset + slope *
(1 - rho(v) + a cos(k phi + phase)))``, ``v = E u`` (see ``synthetic.shapes.shape_value``).

Why a kernel: the torch version materialises every intermediate of every layer of every
sub-frame (~50 full-size passes per layer sample); on a GPU that is memory bound at ~15 ms for
a batch of 20 at 256x256. Here a program owns a block of pixels of one exposure and loops over
sub-frames and layers in registers: the only memory traffic is the texture fetches (cached:
neighbouring pixels read neighbouring texels) and one store per output value. Object layers
skip their texture fetches where their alpha is 0, and skip everything for a block of pixels
that lies outside the circle beyond which the object's alpha is surely 0.

``cos(k phi + phase)`` is computed as ``Re((v/|v|)^k e^{i phase})`` (k is a small integer)
because the interpreter has no atan2; it equals the torch version's ``cos(k atan2(vy, vx) +
phase)`` except at v = 0, where alpha is 1 either way.

Runs on CUDA, or on CPU tensors under ``TRITON_INTERPRET=1`` (read by ``triton.jit`` when this
module is imported), which is how the tests compare it with the torch renderer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_BLOCK = 256
_ROW = 15  # a 5x3 map per (exposure, layer, sub-frame)


@triton.jit
def _reflect(q, last):
    # Mirror into [0, last] without repeating the edge pixel (period 2 * last).
    period = 2.0 * last
    t = q - period * tl.floor(q / period)
    return last - tl.abs(t - last)


@triton.jit
def _bilinear_rgb(atlas_ptr, ax, ay, wa, plane, mask):
    # Bilinear taps at pixel-centre coordinates (ax, ay) of a (3, Ha, Wa) atlas; the tiles'
    # replicated gutters keep the +1 taps inside valid memory.
    x0 = tl.floor(ax)
    y0 = tl.floor(ay)
    fx = ax - x0
    fy = ay - y0
    i00 = y0.to(tl.int32) * wa + x0.to(tl.int32)
    w00 = (1.0 - fx) * (1.0 - fy)
    w01 = fx * (1.0 - fy)
    w10 = (1.0 - fx) * fy
    w11 = fx * fy
    r = (tl.load(atlas_ptr + i00, mask=mask, other=0.0) * w00
         + tl.load(atlas_ptr + i00 + 1, mask=mask, other=0.0) * w01
         + tl.load(atlas_ptr + i00 + wa, mask=mask, other=0.0) * w10
         + tl.load(atlas_ptr + i00 + wa + 1, mask=mask, other=0.0) * w11)
    g_ptr = atlas_ptr + plane
    g = (tl.load(g_ptr + i00, mask=mask, other=0.0) * w00
         + tl.load(g_ptr + i00 + 1, mask=mask, other=0.0) * w01
         + tl.load(g_ptr + i00 + wa, mask=mask, other=0.0) * w10
         + tl.load(g_ptr + i00 + wa + 1, mask=mask, other=0.0) * w11)
    b_ptr = atlas_ptr + 2 * plane
    b = (tl.load(b_ptr + i00, mask=mask, other=0.0) * w00
         + tl.load(b_ptr + i00 + 1, mask=mask, other=0.0) * w01
         + tl.load(b_ptr + i00 + wa, mask=mask, other=0.0) * w10
         + tl.load(b_ptr + i00 + wa + 1, mask=mask, other=0.0) * w11)
    return r, g, b


@triton.jit
def _layer_colour(atlas_ptr, row_ptr, tile_ptr, tint_ptr, px, py, iw, wa, plane, mask):
    # Tinted linear colour of one layer at one sub-frame.
    qx = (tl.load(row_ptr + 6) * px + tl.load(row_ptr + 7) * py + tl.load(row_ptr + 8)) * iw
    qy = (tl.load(row_ptr + 9) * px + tl.load(row_ptr + 10) * py + tl.load(row_ptr + 11)) * iw
    ax = tl.load(tile_ptr + 0) + _reflect(qx, tl.load(tile_ptr + 2))
    ay = tl.load(tile_ptr + 1) + _reflect(qy, tl.load(tile_ptr + 3))
    r, g, b = _bilinear_rgb(atlas_ptr, ax, ay, wa, plane, mask)
    return r * tl.load(tint_ptr + 0), g * tl.load(tint_ptr + 1), b * tl.load(tint_ptr + 2)


@triton.jit
def _shape_value(sp, ux, uy, BLOCK: tl.constexpr):
    # 1 - rho(v) + a cos(k phi + phase), v = E u (synthetic.shapes.shape_value).
    vx = tl.load(sp + 0) * ux + tl.load(sp + 1) * uy
    vy = tl.load(sp + 2) * ux + tl.load(sp + 3) * uy
    e = tl.load(sp + 4)
    # Super-ellipse norm (|vx|^e + |vy|^e)^(1/e) via exp2/log2 (0 stays 0).
    rho = tl.exp2(tl.load(sp + 5) * tl.log2(tl.exp2(e * tl.log2(tl.abs(vx)))
                                            + tl.exp2(e * tl.log2(tl.abs(vy)))))
    # cos(k phi + phase) = Re(z^k e^{i phase}), z = v / |v|.
    norm = tl.sqrt(vx * vx + vy * vy)
    inv = tl.where(norm > 0, 1.0 / norm, 0.0)
    c = vx * inv
    si = vy * inv
    zr = tl.zeros([BLOCK], dtype=tl.float32) + 1.0
    zi = tl.zeros([BLOCK], dtype=tl.float32)
    for _ in range(tl.load(sp + 6).to(tl.int32)):
        zr, zi = zr * c - zi * si, zr * si + zi * c
    phase = tl.load(sp + 8)
    wobble = zr * tl.cos(phase) - zi * tl.sin(phase)
    return 1.0 - rho + tl.load(sp + 7) * wobble


@triton.jit
def _render_kernel(atlas_ptr, rows_ptr, tile_ptr, tint_ptr, shape_ptr, out_ptr,
                   W, HW, S, L1, wa, plane, inv_s,
                   NP: tl.constexpr, ROW: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    b = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < HW
    px = (offs % W).to(tl.float32)
    py = (offs // W).to(tl.float32)
    acc_r = tl.zeros([BLOCK], dtype=tl.float32)
    acc_g = tl.zeros([BLOCK], dtype=tl.float32)
    acc_b = tl.zeros([BLOCK], dtype=tl.float32)
    for s in range(S):
        # Background: opaque.
        row = rows_ptr + ((b * L1) * S + s) * ROW
        w = tl.load(row + 12) * px + tl.load(row + 13) * py + tl.load(row + 14)
        cr, cg, cb = _layer_colour(atlas_ptr, row, tile_ptr + b * L1 * 4, tint_ptr + b * L1 * 3,
                                   px, py, 1.0 / w, wa, plane, m)
        for layer in range(1, L1):
            row = rows_ptr + ((b * L1 + layer) * S + s) * ROW
            iw = 1.0 / (tl.load(row + 12) * px + tl.load(row + 13) * py + tl.load(row + 14))
            ux = (tl.load(row + 0) * px + tl.load(row + 1) * py + tl.load(row + 2)) * iw
            uy = (tl.load(row + 3) * px + tl.load(row + 4) * py + tl.load(row + 5)) * iw
            sp = shape_ptr + (b * (L1 - 1) + layer - 1) * NP
            near = m & (ux * ux + uy * uy <= tl.load(sp + 14))
            # Skip the layer where the whole block is surely outside the object.
            if tl.max(near.to(tl.int32), axis=0) > 0:
                value = _shape_value(sp, ux, uy, BLOCK)
                alpha = tl.load(sp + 12) + value * tl.load(sp + 11)
                alpha = tl.where(near, tl.minimum(tl.maximum(alpha, 0.0), 1.0), 0.0)
                lr, lg, lb = _layer_colour(atlas_ptr, row, tile_ptr + (b * L1 + layer) * 4,
                                           tint_ptr + (b * L1 + layer) * 3, px, py, iw, wa,
                                           plane, alpha > 0.0)
                cr = cr + alpha * (lr - cr)
                cg = cg + alpha * (lg - cg)
                cb = cb + alpha * (lb - cb)
        acc_r += cr
        acc_g += cg
        acc_b += cb
    out = out_ptr + b * 3 * HW + offs
    tl.store(out, acc_r * inv_s, mask=m)
    tl.store(out + HW, acc_g * inv_s, mask=m)
    tl.store(out + 2 * HW, acc_b * inv_s, mask=m)


@triton.jit
def _hom(m_ptr, x, y):
    # Apply a row-major 3x3 homography (scalar or per-pixel pointer) to points (x, y).
    iw = 1.0 / (tl.load(m_ptr + 6) * x + tl.load(m_ptr + 7) * y + tl.load(m_ptr + 8))
    return ((tl.load(m_ptr + 0) * x + tl.load(m_ptr + 1) * y + tl.load(m_ptr + 2)) * iw,
            (tl.load(m_ptr + 3) * x + tl.load(m_ptr + 4) * y + tl.load(m_ptr + 5)) * iw)


@triton.jit
def _distance(sp, ux, uy, BLOCK: tl.constexpr):
    # synthetic.shapes.signed_distance, very negative for unused slots.
    d = _shape_value(sp, ux, uy, BLOCK) * tl.load(sp + 9)
    return tl.where(tl.load(sp + 13) > 0, d, -1e4)


@triton.jit
def _flow_kernel(inv_a_ptr, a_to_b_ptr, inv_b_ptr, shape_ptr, flow_ptr, valid_ptr,
                 W, H, HW, L1, NP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    n = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < HW
    px = (offs % W).to(tl.float32)
    py = (offs // W).to(tl.float32)
    # The owner: topmost layer whose alpha is >= 1/2 at p in frame a.
    owner = tl.zeros([BLOCK], dtype=tl.int32)
    for layer in range(1, L1):
        sp = shape_ptr + (n * (L1 - 1) + layer - 1) * NP
        ux, uy = _hom(inv_a_ptr + (n * L1 + layer) * 9, px, py)
        d = _distance(sp, ux, uy, BLOCK)
        alpha = tl.minimum(tl.maximum(tl.load(sp + 12) + d / tl.load(sp + 10), 0.0), 1.0)
        owner = tl.where(alpha >= 0.5, layer, owner)
    # Where the owner's point is in frame b (a per-pixel choice of map: a gather).
    bx, by = _hom(a_to_b_ptr + (n * L1 + owner) * 9, px, py)
    valid = m & (bx >= 0) & (bx <= W - 1) & (by >= 0) & (by <= H - 1)
    for layer in range(1, L1):
        sp = shape_ptr + (n * (L1 - 1) + layer - 1) * NP
        margin = tl.load(sp + 10) * 0.5 + 1.5
        ux, uy = _hom(inv_a_ptr + (n * L1 + layer) * 9, px, py)
        d_a = _distance(sp, ux, uy, BLOCK)
        vx, vy = _hom(inv_b_ptr + (n * L1 + layer) * 9, bx, by)
        d_b = _distance(sp, vx, vy, BLOCK)
        clear = (d_a <= -margin) & (d_b <= -margin)
        valid = valid & ((layer <= owner) | clear)  # nothing in front of the owner covers it
        valid = valid & ((layer != owner) | (d_a >= margin))  # well inside the owner
    out = flow_ptr + n * 2 * HW + offs
    tl.store(out, bx - px, mask=m)
    tl.store(out + HW, by - py, mask=m)
    tl.store(valid_ptr + n * HW + offs, valid.to(tl.float32), mask=m)


def flow_and_valid(inv_a: torch.Tensor, a_to_b: torch.Tensor, inv_b: torch.Tensor,
                   shape: torch.Tensor, height: int, width: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``synthetic.flow.flow_and_valid`` in one kernel: flow (N, 2, H, W) from frame a to b
    (``frame_a(p) ~ frame_b(p + flow(p))``) and valid (N, 1, H, W).

    Args:
        inv_a, inv_b: (N, L1, 3, 3) image -> layer coordinates at the two frame times.
        a_to_b: (N, L1, 3, 3) image a -> image b for a point of that layer.
        shape: (N, L1 - 1, P) object shape parameters.
    """
    n, l1 = inv_a.shape[:2]
    hw = height * width
    dev = inv_a.device
    flow = torch.empty(n, 2, height, width, device=dev, dtype=torch.float32)
    valid = torch.empty(n, 1, height, width, device=dev, dtype=torch.float32)
    if n == 0:
        return flow, valid
    np_ = shape.shape[-1] if shape.numel() else 1
    shape = shape if shape.numel() else torch.zeros(1, device=dev)
    grid = (triton.cdiv(hw, _BLOCK), n)
    _flow_kernel[grid](inv_a.contiguous(), a_to_b.contiguous(), inv_b.contiguous(),
                       shape.contiguous(), flow, valid, width, height, hw, l1, NP=np_,
                       BLOCK=_BLOCK)
    return flow, valid


# Under TRITON_INTERPRET=1 (read by triton.jit when the kernels above were decorated, not
# later) the kernels are Python functions run on CPU tensors; tests use that, the GPU never does.
_INTERPRETED = not isinstance(_render_kernel, triton.runtime.jit.JITFunction)


def is_available(device: torch.device | str) -> bool:
    """Whether the kernels can run on ``device``: CUDA, or the CPU when they were built under
    ``TRITON_INTERPRET=1`` (the interpreter)."""
    device = torch.device(device)
    if _INTERPRETED:
        return device.type in ("cpu", "cuda")
    return device.type == "cuda" and torch.cuda.is_available()


def render_linear(atlas: torch.Tensor, rows: torch.Tensor, tile: torch.Tensor,
                  tint: torch.Tensor, shape: torch.Tensor, height: int, width: int
                  ) -> torch.Tensor:
    """Average over S sub-frames of the composited layers, linear light.

    Args:
        atlas: (1, 3, Ha, Wa) float32 linear textures.
        rows: (B, L1, S, 5, 3) float32 pixel -> [u, q, w] maps.
        tile: (B, L1, 4) float32 [origin x, origin y, width - 1, height - 1] in atlas pixels.
        tint: (B, L1, 3) float32. shape: (B, L1 - 1, P) float32 object shape parameters.
    Returns:
        (B, 3, height, width) float32.
    """
    b, l1, s = rows.shape[:3]
    hw = height * width
    out = torch.empty(b, 3, height, width, device=rows.device, dtype=torch.float32)
    if b == 0:
        return out
    np_ = shape.shape[-1] if shape.numel() else 1
    shape = shape if shape.numel() else torch.zeros(1, device=rows.device)
    ha, wa = atlas.shape[-2:]
    grid = (triton.cdiv(hw, _BLOCK), b)
    _render_kernel[grid](atlas.contiguous(), rows.contiguous(), tile.contiguous(),
                         tint.contiguous(), shape.contiguous(), out, width, hw, s, l1, wa,
                         ha * wa, 1.0 / s, NP=np_, ROW=_ROW, BLOCK=_BLOCK)
    return out
