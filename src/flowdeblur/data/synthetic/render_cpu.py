"""Compiled CPU renderer for the synthetic scenes (numba; CPU fast path of
``compositing.render_linear``, the torch reference beside it).

Same function as the torch renderer and the Triton kernel (``render_triton``): the average over
S sub-frames of all layers composited front over back, in linear light. The torch version
materialises every intermediate of every layer sample (~50 passes over memory each); here every
output pixel loops over its sub-frames and layers in registers, and the rows of the image are
shared among threads (``prange``), so the CPU does arithmetic instead of waiting on memory.

The kernel is compiled on first use and cached on disk by the same rule as the spatial RNN's
CPU kernels (``ops.rnn_cpu``): ``__pycache__`` beside this file, else numba's user cache
directory, else a private temporary directory, else no disk cache (with a warning), so that a
read-only install still imports.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

# The one numba cache rule of the package (with its fallbacks) lives with the RNN kernels.
from ...ops.rnn_cpu import cached_jit


def _render_rows_py(atlas, rows, tile, tint, shape, out):
    """out[b, c, y, x] = mean over s of the composite; see ``render_linear``."""
    n_exp, l1, n_sub = rows.shape[0], rows.shape[1], rows.shape[2]
    height, width = out.shape[2], out.shape[3]
    for job in numba.prange(n_exp * height):
        b = job // height
        y = float(job % height)
        for xi in range(width):
            x = float(xi)
            acc0 = 0.0
            acc1 = 0.0
            acc2 = 0.0
            for s in range(n_sub):
                c0 = 0.0
                c1 = 0.0
                c2 = 0.0
                for layer in range(l1):
                    r = rows[b, layer, s]
                    iw = 1.0 / (r[12] * x + r[13] * y + r[14])
                    alpha = 1.0
                    if layer > 0:
                        p = shape[b, layer - 1]
                        ux = (r[0] * x + r[1] * y + r[2]) * iw
                        uy = (r[3] * x + r[4] * y + r[5]) * iw
                        if ux * ux + uy * uy > p[14]:
                            continue  # surely outside the object: alpha is 0
                        vx = p[0] * ux + p[1] * uy
                        vy = p[2] * ux + p[3] * uy
                        rho = (abs(vx) ** p[4] + abs(vy) ** p[4]) ** p[5]
                        wobble = math.cos(p[6] * math.atan2(vy, vx) + p[8])
                        value = 1.0 - rho + p[7] * wobble
                        alpha = min(max(p[12] + value * p[11], 0.0), 1.0)
                        if alpha <= 0.0:
                            continue
                    qx = (r[6] * x + r[7] * y + r[8]) * iw
                    qy = (r[9] * x + r[10] * y + r[11]) * iw
                    t = tile[b, layer]
                    # Mirror into the tile (period 2 * last, edge pixel not repeated).
                    px = 2.0 * t[2]
                    py = 2.0 * t[3]
                    qx = qx - px * math.floor(qx / px)
                    qy = qy - py * math.floor(qy / py)
                    ax = t[0] + t[2] - abs(qx - t[2])
                    ay = t[1] + t[3] - abs(qy - t[3])
                    x0 = math.floor(ax)
                    y0 = math.floor(ay)
                    fx = ax - x0
                    fy = ay - y0
                    ix = int(x0)
                    iy = int(y0)
                    w00 = (1.0 - fx) * (1.0 - fy)
                    w01 = fx * (1.0 - fy)
                    w10 = (1.0 - fx) * fy
                    w11 = fx * fy
                    tt = tint[b, layer]
                    v0 = (atlas[0, iy, ix] * w00 + atlas[0, iy, ix + 1] * w01
                          + atlas[0, iy + 1, ix] * w10 + atlas[0, iy + 1, ix + 1] * w11) * tt[0]
                    v1 = (atlas[1, iy, ix] * w00 + atlas[1, iy, ix + 1] * w01
                          + atlas[1, iy + 1, ix] * w10 + atlas[1, iy + 1, ix + 1] * w11) * tt[1]
                    v2 = (atlas[2, iy, ix] * w00 + atlas[2, iy, ix + 1] * w01
                          + atlas[2, iy + 1, ix] * w10 + atlas[2, iy + 1, ix + 1] * w11) * tt[2]
                    c0 += alpha * (v0 - c0)
                    c1 += alpha * (v1 - c1)
                    c2 += alpha * (v2 - c2)
                acc0 += c0
                acc1 += c1
                acc2 += c2
            out[b, 0, int(y), xi] = acc0 / n_sub
            out[b, 1, int(y), xi] = acc1 / n_sub
            out[b, 2, int(y), xi] = acc2 / n_sub


_render_rows = cached_jit(_render_rows_py)  # parallel, nogil, no fastmath, cached


def render_linear(atlas: torch.Tensor, rows: torch.Tensor, tile: torch.Tensor,
                  tint: torch.Tensor, shape: torch.Tensor, height: int, width: int
                  ) -> torch.Tensor:
    """Average over S sub-frames of the composited layers, linear light, on the CPU.

    Arguments and result as ``compositing.render_linear`` (all float32 CPU tensors), without
    its chunking: (B, 3, height, width) float32.
    """
    b, l1, s = rows.shape[:3]
    out = np.zeros((b, 3, height, width), np.float32)
    if b:
        shape_np = shape.numpy() if shape.numel() else np.zeros((b, 1, 15), np.float32)
        _render_rows(atlas[0].numpy(), np.ascontiguousarray(rows.reshape(b, l1, s, 15).numpy()),
                  tile.numpy(), tint.numpy(), shape_np, out)
    return torch.from_numpy(out)
