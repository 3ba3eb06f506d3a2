"""Paired augmentation: one random geometric + colour transform for all frames of a sample.

The paper augments with random crops, resizing, rotation, scaling and colour-channel
permutation. Every frame of a sample (blurry inputs, sharp targets) gets the same transform,
and the flow is transformed with it: if an output pixel ``p`` samples the input at
``A (p - c_out) + c_in``, a flow vector ``f`` becomes ``A^-1 f`` (rotated back, un-flipped,
scaled by the zoom). The ``valid`` mask is resampled conservatively (a pixel stays valid only
if all the input pixels it interpolates are valid) and is cleared where the flow now points
out of the crop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import UserError

#: Keys resampled as images (3 channels: colours are permuted too).
IMAGE_KEYS = ("frame_t", "frame_next", "frame_prev", "sharp_t", "sharp_next", "sharp_prev")
#: (flow key, its valid-mask key).
FLOW_KEYS = (("flow", "valid"), ("flow_prev", "valid_prev"))

# Columns of the per-sample table made by _transforms (one tensor: one host -> device copy).
_A = slice(0, 4)  # A, row-major: output pixel offsets -> input pixel offsets
_CENTRE = slice(4, 6)  # c_in (x, y)
_A_INV = slice(6, 10)  # A^-1, row-major
_ORDER = slice(10, 13)  # colour channel order


def _draw(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)


def _transforms(n: int, in_hw: tuple[int, int], out_hw: tuple[int, int],
                generator: torch.Generator, scale_range: tuple[float, float],
                max_rotation_deg: float, flips: bool, permute: bool) -> torch.Tensor:
    """Per sample, on the generator's device: the linear part A (4) and input centre (2) of
    ``p_in = A (p_out - c_out) + c_in``, chosen so the crop lies inside the input, then A^-1
    (4) and the colour order (3). Returns (N, 13) float64."""
    h, w = in_hw
    hc, wc = out_hw
    lo, hi = scale_range
    # Draw everything up front, a fixed number per sample, so streams do not depend on values.
    zoom = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * _draw(n, generator))
    angle = math.radians(max_rotation_deg) * (2 * _draw(n, generator) - 1)
    flip_x = (_draw(n, generator) < 0.5) & flips
    flip_y = (_draw(n, generator) < 0.5) & flips
    pos_x, pos_y = _draw(n, generator), _draw(n, generator)
    order = torch.argsort(torch.rand(n, 3, generator=generator, device=generator.device), 1)
    if not permute:
        order = torch.arange(3, device=order.device).expand(n, 3)
    sx = 1.0 - 2.0 * flip_x.double()
    sy = 1.0 - 2.0 * flip_y.double()
    c, s = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # A = R(angle) diag(sx, sy) / zoom: output pixels -> input pixels.
    a00, a01, a10, a11 = c * sx, -s * sy, s * sx, c * sy
    # Half extents of the crop's footprint in the input; zoom in further if it does not fit.
    hx, hy = (wc - 1) / 2, (hc - 1) / 2
    ex = a00.abs() * hx + a01.abs() * hy
    ey = a10.abs() * hx + a11.abs() * hy
    shrink = torch.maximum(ex / max((w - 1) / 2, 1e-9), ey / max((h - 1) / 2, 1e-9))
    shrink = shrink.clamp_min(1.0)
    a00, a01, a10, a11, ex, ey = (v / shrink for v in (a00, a01, a10, a11, ex, ey))
    cx = ex + pos_x * (w - 1 - 2 * ex).clamp_min(0.0)
    cy = ey + pos_y * (h - 1 - 2 * ey).clamp_min(0.0)
    det = a00 * a11 - a01 * a10
    inv = (a11 / det, -a01 / det, -a10 / det, a00 / det)
    return torch.stack([a00, a01, a10, a11, cx, cy, *inv, *order.double().unbind(1)], 1)


def augment(sample: dict[str, torch.Tensor], *, crop_size: tuple[int, int],
            generator: torch.Generator, scale_range=(0.7, 1.3), max_rotation_deg: float = 10.0,
            flips: bool = True, permute_colors: bool = True) -> dict[str, torch.Tensor]:
    """Same random transform for every image key (frame_t, frame_next, frame_prev, sharp_t,
    sharp_next, sharp_prev), flows transformed consistently (vectors rotated/flipped/scaled),
    valid masks resampled (thresholded); works on batched (N,C,H,W) tensors (one transform
    per sample) and on unbatched (C,H,W); missing keys are skipped.

    Shapes: images (N, 3, H, W) -> (N, 3, h, w) with (h, w) = ``crop_size``; flow (N, 2, H, W)
    -> (N, 2, h, w) in output pixels; valid (N, 1, H, W) -> (N, 1, h, w) in {0, 1}. A flow
    without a valid mask gets one (where the flow stays inside the crop). Other keys are
    passed through unchanged. ``generator`` drives all random choices (its device is used to
    draw them), so the same generator state gives the same output.
    """
    crop = _crop_size(crop_size)
    lo, hi = (float(v) for v in scale_range)
    if not 0 < lo <= hi:
        raise UserError(f"scale range must satisfy 0 < low <= high, got {scale_range!r}")
    keys = [k for k in IMAGE_KEYS if k in sample]
    keys += [k for pair in FLOW_KEYS for k in pair if k in sample]
    if not keys:
        return dict(sample)
    batched = sample[keys[0]].dim() == 4
    data = _as_batches(sample, keys)
    n, _, h, w = data[keys[0]].shape
    dev = data[keys[0]].device

    params = _transforms(n, (h, w), crop, generator, (lo, hi), max_rotation_deg, flips,
                         permute_colors)
    if params.device != dev:
        # One small copy; pinned and asynchronous to a GPU, so the host does not wait for it.
        if dev.type == "cuda" and params.device.type == "cpu":
            params = params.pin_memory().to(dev, non_blocking=True)
        else:
            params = params.to(dev)
    grid = _sampling_grid(params, (h, w), crop)  # (N, hc, wc, 2)

    def resample(x: torch.Tensor) -> torch.Tensor:
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=True)
        return out.to(x.dtype)

    def unbatch(x: torch.Tensor) -> torch.Tensor:
        return x if batched else x[0]

    out = dict(sample)
    perm = params[:, _ORDER].long()
    for k in IMAGE_KEYS:
        if k in data:
            img = resample(data[k])
            if permute_colors and img.shape[1] == 3:
                img = torch.gather(img, 1, perm[:, :, None, None].expand_as(img))
            out[k] = unbatch(img)
    a_inv = params[:, _A_INV].view(n, 2, 2).float()  # input flow vectors -> output vectors
    for fk, vk in FLOW_KEYS:
        mask = data.get(vk)
        if fk in data:
            flow = torch.einsum("nij,njhw->nihw", a_inv, resample(data[fk]).float())
            valid = _valid_mask(resample, mask, n, crop, dev) & _lands_inside(flow)[:, None]
            out[fk] = unbatch(flow.to(data[fk].dtype))
            out[vk] = unbatch(valid.to(data[fk].dtype if mask is None else mask.dtype))
        elif mask is not None:  # a mask without its flow: resample it alone
            out[vk] = unbatch(_valid_mask(resample, mask, n, crop, dev).to(mask.dtype))
    return out


def _crop_size(crop_size) -> tuple[int, int]:
    try:
        hc, wc = (int(v) for v in crop_size)
    except (TypeError, ValueError):
        raise UserError(f"crop size must be (height, width), got {crop_size!r}") from None
    if hc < 2 or wc < 2:
        raise UserError(f"crop size must be at least 2x2, got {crop_size!r}")
    return hc, wc


def _as_batches(sample: dict[str, torch.Tensor], keys: list[str]) -> dict[str, torch.Tensor]:
    """The tensors of ``keys`` as (N, C, H, W) batches, checked to share N, H and W."""
    ref = sample[keys[0]]
    if ref.dim() not in (3, 4):
        raise ValueError(f"augment expects (N, C, H, W) or (C, H, W) tensors, got "
                         f"{keys[0]} {tuple(ref.shape)}")
    batched = ref.dim() == 4
    data = {k: (sample[k] if batched else sample[k][None]) for k in keys}
    n, _, h, w = data[keys[0]].shape
    for k in keys:
        if data[k].dim() != 4 or data[k].shape[0] != n or data[k].shape[2:] != (h, w):
            raise ValueError(f"augment: {k} has shape {tuple(sample[k].shape)}, expected "
                             f"the batch and size of {keys[0]} {tuple(ref.shape)}")
    if h < 2 or w < 2:
        raise ValueError(f"augment needs inputs of at least 2x2 pixels, got {h}x{w}")
    return data


def _sampling_grid(params: torch.Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]
                   ) -> torch.Tensor:
    """grid_sample's grid (N, hc, wc, 2): output pixel -> input pixel -> [-1, 1] units
    (align_corners=True), from the (N, 13) table of :func:`_transforms`."""
    n = params.shape[0]
    h, w = in_hw
    hc, wc = out_hw
    dev = params.device
    a = params[:, _A].view(n, 2, 2)
    centre = params[:, _CENTRE]
    ys, xs = torch.meshgrid(torch.arange(hc, device=dev, dtype=torch.float64) - (hc - 1) / 2,
                            torch.arange(wc, device=dev, dtype=torch.float64) - (wc - 1) / 2,
                            indexing="ij")
    p_out = torch.stack([xs, ys], -1)  # (hc, wc, 2)
    p_in = torch.einsum("nij,hwj->nhwi", a, p_out) + centre[:, None, None, :]
    gx = p_in[..., 0] * (2.0 / (w - 1)) - 1.0
    gy = p_in[..., 1] * (2.0 / (h - 1)) - 1.0
    return torch.stack([gx, gy], -1).float()


def _valid_mask(resample, mask: torch.Tensor | None, n: int, crop: tuple[int, int],
                device: torch.device) -> torch.Tensor:
    """(N, 1, hc, wc) bool: the resampled ``mask``, or all True without one. Thresholded
    bilinear resampling: any invalid neighbour with weight makes the pixel invalid."""
    if mask is None:
        return torch.ones(n, 1, *crop, dtype=torch.bool, device=device)
    return resample(mask.float()) >= 1.0 - 1e-4


def _lands_inside(flow: torch.Tensor) -> torch.Tensor:
    """(N, hc, wc) bool: where ``p + flow(p)`` lies inside the (N, 2, hc, wc) flow's frame."""
    hc, wc = flow.shape[-2:]
    tx = flow[:, 0] + torch.arange(wc, device=flow.device, dtype=flow.dtype)
    ty = flow[:, 1] + torch.arange(hc, device=flow.device, dtype=flow.dtype)[:, None]
    return (tx >= 0) & (tx <= wc - 1) & (ty >= 0) & (ty <= hc - 1)
