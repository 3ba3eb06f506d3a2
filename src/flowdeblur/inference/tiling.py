"""Deblurring a frame tile by tile, for frames that do not fit in memory.

Tiles overlap and are blended with a raised-cosine window, so their seams do not show.
"""

from __future__ import annotations

import math

import torch

from ..errors import OptionError
from ..models import pad_to_multiple
from .forward import Deblurred, Forward, run_network

#: Smallest tile: the network downsamples six times, so anything smaller is padded to 64 anyway.
MIN_TILE = 64

#: Largest default overlap between tiles, in pixels (see :func:`default_tile_overlap`).
MAX_DEFAULT_TILE_OVERLAP = 128

#: Tile size :func:`deblur_tiled` uses when given none (a multiple of 64: no padding waste).
DEFAULT_TILE = 256


def default_tile_overlap(tile: int) -> int:
    """Overlap used when none is given: a quarter of the tile, at most 128 pixels.

    The spatial RNNs propagate across the whole tile (a global receptive field) and the
    U-Net's 1/8-scale 5x5 convolutions see about +-70 pixels, so a tile's border pixels differ
    from an untiled run; the raised-cosine window hides them only under a generous overlap.
    A quarter of the tile costs about 1.8x the untiled work.
    """
    return min(MAX_DEFAULT_TILE_OVERLAP, tile // 4)


def check_tiling(tile: int | None, overlap: int | None) -> int | None:
    """Validate tiling options and return the overlap to use (None when not tiling).

    UserError unless ``tile`` is None or >= 64 and 0 <= ``overlap`` <= tile / 2;
    ``overlap=None`` picks :func:`default_tile_overlap`.
    """
    if tile is None:
        return None
    if tile < MIN_TILE:
        raise OptionError("tile", f"{{option}} {tile} is too small: tiles must be at least "
                          f"{MIN_TILE} pixels")
    if overlap is None:
        return default_tile_overlap(tile)
    if overlap < 0 or 2 * overlap > tile:
        raise OptionError(
            "tile_overlap",
            f"{{option}} {overlap} must be between 0 and half the tile size ({tile // 2})",
        )
    return overlap


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering [0, size) with >= ``overlap`` shared."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    starts.append(size - tile)
    return starts


def _ramp_window(length: int, start: int, size: int, overlap: int) -> torch.Tensor:
    """1-D blending weights of one tile: a raised cosine over ``overlap`` pixels on each side
    that meets another tile, flat 1 elsewhere. Two facing ramps sum to 1 (cos^2 + sin^2),
    and every weight is > 0, so normalising by the summed weights is always defined."""
    w = torch.ones(length, dtype=torch.float32)
    ramp_len = min(overlap, length // 2)
    if ramp_len <= 0:
        return w
    i = torch.arange(ramp_len, dtype=torch.float32)
    ramp = 0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / ramp_len)
    if start > 0:
        w[:ramp_len] = ramp
    if start + length < size:
        w[length - ramp_len :] = torch.minimum(w[length - ramp_len :], ramp.flip(0))
    return w


class _Blend:
    """Running weighted sums of tile outputs over the padded frame (N, C, h, w)."""

    def __init__(self, n: int, h: int, w: int, device: torch.device, want_flow: bool) -> None:
        self.h, self.w = h, w
        self.image = torch.zeros(n, 3, h, w, device=device)
        self.flow = torch.zeros(n, 2, h, w, device=device) if want_flow else None
        self.weight = torch.zeros(1, 1, h, w, device=device)

    def add(self, y: int, x: int, tile: Deblurred, overlap: int) -> None:
        th, tw = tile.image.shape[-2:]
        win = _ramp_window(th, y, self.h, overlap)[:, None] * _ramp_window(tw, x, self.w, overlap)
        win = win.to(self.image.device)
        self.image[:, :, y : y + th, x : x + tw] += tile.image * win
        if self.flow is not None:
            self.flow[:, :, y : y + th, x : x + tw] += tile.flow * win
        self.weight[:, :, y : y + th, x : x + tw] += win

    def result(self, size: tuple[int, int]) -> Deblurred:
        """The normalised blend, cropped to the unpadded ``size`` (H, W)."""
        image = (self.image / self.weight)[:, :, : size[0], : size[1]]
        flow = None
        if self.flow is not None:
            flow = (self.flow / self.weight)[:, :, : size[0], : size[1]]
        return Deblurred(image, flow)


def deblur_tiles(
    forward: Forward,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None,
    frame_prev: torch.Tensor | None,
    *,
    tile: int,
    overlap: int,
    batch: int = 1,
    want_flow: bool = False,
) -> Deblurred:
    """:func:`deblur_tiled` on (N, 3, H, W) frames with a checked ``overlap``."""
    # Pad the whole frame as the untiled network would (replicate to a multiple of 64), so
    # the tiles on the bottom/right border see the same padding as an untiled run; without
    # this, those borders disagree by ~0.1 on a random-init network.
    size = tuple(frame_t.shape[-2:])
    frames = [None if f is None else pad_to_multiple(f) for f in (frame_t, frame_next, frame_prev)]
    n, _, h, w = frames[0].shape
    th, tw = min(tile, h), min(tile, w)
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    positions = [(y, x) for y in ys for x in xs]
    blend = _Blend(n, h, w, frames[0].device, want_flow)
    step = max(1, batch)
    for first in range(0, len(positions), step):
        group = positions[first : first + step]
        # The same window of every input frame, so the flow network compares like with like.
        crops = [
            None if f is None else torch.cat([f[:, :, y : y + th, x : x + tw] for y, x in group])
            for f in frames
        ]
        out = run_network(forward, *crops, want_flow=want_flow)
        for j, (y, x) in enumerate(group):
            part = slice(j * n, (j + 1) * n)
            flow = None if out.flow is None else out.flow[part]
            blend.add(y, x, Deblurred(out.image[part], flow), overlap)
    return blend.result(size)


def deblur_tiled(
    model: Forward,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    *,
    frame_prev: torch.Tensor | None = None,
    batch: int = 1,
    return_flow: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Deblur ``frame_t`` tile by tile and blend the tiles with a raised-cosine window.

    The same tile of every input frame goes to the network, so the flow network compares
    like with like. Tiles are ``tile`` x ``tile`` (clipped to the frame), spaced so that
    neighbours share at least ``overlap`` pixels; the last row/column of tiles is shifted to
    end on the frame's border. Multiples of 64 waste nothing on padding. Runs on the tensors'
    device under the caller's autocast context, without gradients; ``batch`` tiles go through
    at once.

    Args:
        model: a :class:`~flowdeblur.models.FlowDeblurNet`, or a forward made by
            :meth:`flowdeblur.runtime.Runtime.prepare`.
        frame_t, frame_next, frame_prev: (N, 3, H, W) or (3, H, W) in [0, 1]
            (``frame_next`` unused by 'single_frame'; ``frame_prev`` only for 'bidirectional').
    Returns:
        (N, 3, H, W) or (3, H, W) float32 (and, with ``return_flow``, the blended flow
        t -> neighbour (N, 2, H, W) or (2, H, W) in pixels).
    """
    overlap = check_tiling(tile, overlap)
    single = frame_t.dim() == 3

    def batched(x: torch.Tensor | None) -> torch.Tensor | None:
        return x.unsqueeze(0) if x is not None and single else x

    out = deblur_tiles(
        model, batched(frame_t), batched(frame_next), batched(frame_prev), tile=tile,
        overlap=overlap, batch=batch, want_flow=return_flow,
    )
    image, flow = out.image, out.flow
    if single:
        image = image[0]
        flow = flow[0] if flow is not None else None
    return (image, flow) if return_flow else image
