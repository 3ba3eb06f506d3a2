"""Conversions between the package's images, (3, H, W) float32 in [0, 1], and the integer
arrays that image and video codecs read and write: interleaved (H, W, 3) RGB, and planar
Y'CbCr of any bit depth (:func:`yuv_to_rgb`, :func:`rgb_to_yuv`)."""

from __future__ import annotations

import numpy as np
import torch

#: (Kr, Kb) luma weights of each Y'CbCr matrix, keyed by FFmpeg's AVColorSpace number:
#: 1 BT.709, 4 FCC, 5/6 BT.601 (BT.470BG, SMPTE 170M), 7 SMPTE 240M, 9/10 BT.2020 (the
#: constant-luminance variant 10 is decoded as non-constant, as swscale does).
LUMA_WEIGHTS = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
                7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
#: The matrix assumed for a stream tagged with none of the above (FFmpeg's default, BT.601).
DEFAULT_MATRIX = 6


def to_tensor(array: np.ndarray, scale: float) -> torch.Tensor:
    """(H, W, 3) integer array -> (3, H, W) float32 divided by ``scale``, contiguous."""
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
    return t.to(torch.float32).div_(scale)


def quantize(image: torch.Tensor, bits: int) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) integer codes 0 .. 2**bits - 1, rounded: uint8
    for ``bits`` <= 8, else uint16 (``bits=16`` for 16-bit PNG and rgb48, 10 or 12 for deep
    planar video); values outside [0, 1] are clipped and NaN becomes 0.

    Raises:
        ValueError: ``image`` is not (3, H, W).
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    top = 2**bits - 1
    x = torch.nan_to_num(image.detach().to("cpu", torch.float32), nan=0.0)
    x = x.clamp(0.0, 1.0).mul(top).round_()
    dtype = torch.uint8 if bits <= 8 else torch.int32  # torch has no uint16 arithmetic on CPU
    arr = x.to(dtype).permute(1, 2, 0).contiguous().numpy()
    return arr if bits <= 8 else arr.astype(np.uint16)


def _code_scales(bits: int, full_range: bool) -> tuple[float, float, float, float]:
    """(luma offset, luma scale, chroma offset, chroma scale) of ``bits``-bit code values:
    limited range puts Y' in 16..235 and Cb, Cr in 16..240 (times 2^(bits-8)); full range
    uses 0..2^bits-1 with chroma centred on 2^(bits-1)."""
    if full_range:
        top = float(2**bits - 1)
        return 0.0, top, float(2 ** (bits - 1)), top
    step = float(2 ** (bits - 8))
    return 16.0 * step, 219.0 * step, 128.0 * step, 224.0 * step


def _upsample_chroma(c: torch.Tensor, shift_x: int, shift_y: int, height: int,
                     width: int) -> torch.Tensor:
    """Chroma plane(s) (..., h, w) -> (..., height, width), bilinear, for the chroma siting
    of MPEG-2, H.264 and HEVC's default: co-sited with even luma columns horizontally, half
    way between two luma rows vertically."""
    if shift_x:
        right = torch.cat((c[..., 1:], c[..., -1:]), dim=-1)
        c = torch.stack((c, (c + right) / 2), dim=-1).flatten(-2)
    if shift_y:
        up = torch.cat((c[..., :1, :], c[..., :-1, :]), dim=-2)
        down = torch.cat((c[..., 1:, :], c[..., -1:, :]), dim=-2)
        c = torch.stack((0.75 * c + 0.25 * up, 0.75 * c + 0.25 * down), dim=-2).flatten(-3, -2)
    return c[..., :height, :width]


def _downsample_chroma(c: torch.Tensor, shift_x: int, shift_y: int) -> torch.Tensor:
    """Full-size chroma (..., H, W) -> subsampled, with the siting :func:`_upsample_chroma`
    assumes: [1, 2, 1] / 4 around even columns, the mean of each pair of rows."""
    if shift_x:
        if c.shape[-1] % 2:
            c = torch.cat((c, c[..., -1:]), dim=-1)
        even, odd = c[..., 0::2], c[..., 1::2]
        left = torch.cat((even[..., :1], odd[..., :-1]), dim=-1)  # edge replicated
        c = (left + 2 * even + odd) / 4
    if shift_y:
        if c.shape[-2] % 2:
            c = torch.cat((c, c[..., -1:, :]), dim=-2)
        c = (c[..., 0::2, :] + c[..., 1::2, :]) / 2
    return c


def yuv_to_rgb(planes: tuple[np.ndarray, np.ndarray, np.ndarray], *, bits: int, matrix: int,
               full_range: bool, shift: tuple[int, int]) -> torch.Tensor:
    """Planar Y'CbCr code values -> (3, H, W) float32 R'G'B' in [0, 1].

    ``planes``: the Y' plane (H, W) and the Cb, Cr planes (subsampled by 2**shift[0] across
    and 2**shift[1] down, shifts 0 or 1); ``bits`` the code depth; ``matrix`` an AVColorSpace
    number (:data:`LUMA_WEIGHTS`, others decode as :data:`DEFAULT_MATRIX`). Computed in float32
    (exact to about 1e-6), unlike swscale's high-bit-depth paths.
    """
    kr, kb = LUMA_WEIGHTS.get(matrix, LUMA_WEIGHTS[DEFAULT_MATRIX])
    y_off, y_scale, c_off, c_scale = _code_scales(bits, full_range)
    y = (torch.from_numpy(planes[0].astype(np.float32)) - y_off) / y_scale
    cbcr = torch.from_numpy(np.stack(planes[1:]).astype(np.float32)).sub_(c_off).div_(c_scale)
    cb, cr = _upsample_chroma(cbcr, shift[0], shift[1], *y.shape)
    r = y + 2 * (1 - kr) * cr
    b = y + 2 * (1 - kb) * cb
    g = (y - kr * r - kb * b) / (1 - kr - kb)
    return torch.stack((r, g, b)).clamp_(0.0, 1.0)


def rgb_to_yuv(image: torch.Tensor, *, bits: int, matrix: int, full_range: bool,
               shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(3, H, W) R'G'B' in [0, 1] -> planar Y'CbCr uint16 code values, the inverse of
    :func:`yuv_to_rgb` (same matrix numbers, range, chroma siting and subsampling); values
    outside [0, 1] are clipped and NaN becomes 0."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    kr, kb = LUMA_WEIGHTS.get(matrix, LUMA_WEIGHTS[DEFAULT_MATRIX])
    y_off, y_scale, c_off, c_scale = _code_scales(bits, full_range)
    x = torch.nan_to_num(image.detach().to("cpu", torch.float32), nan=0.0).clamp(0.0, 1.0)
    r, g, b = x
    y = kr * r + (1 - kr - kb) * g + kb * b
    cbcr = torch.stack(((b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))))
    cbcr = _downsample_chroma(cbcr, shift[0], shift[1])
    top = 2**bits - 1
    y_codes = (y * y_scale + y_off).round_().clamp_(0, top).to(torch.int32).numpy()
    c_codes = (cbcr * c_scale + c_off).round_().clamp_(0, top).to(torch.int32).numpy()
    return y_codes.astype(np.uint16), c_codes[0].astype(np.uint16), c_codes[1].astype(np.uint16)
