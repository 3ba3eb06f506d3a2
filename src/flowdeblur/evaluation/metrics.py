"""Image quality metrics: PSNR and SSIM, batched, in torch (CPU or GPU).

Conventions (shared with the rest of flowdeblur): images are (N, C, H, W) floats in
``[0, data_range]`` (``data_range = 1`` for the usual [0, 1] RGB); every metric returns one value
per image, shape (N,). A (C, H, W) tensor is taken as N = 1.

* :func:`psnr` is ``10 log10(data_range^2 / MSE)`` with the MSE over all channels and pixels,
  as MATLAB's ``psnr`` and scikit-image's ``peak_signal_noise_ratio`` (``inf`` for equal images).
* :func:`ssim` equals scikit-image's MATLAB-style SSIM,
  ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=data_range, channel_axis=...)`` (Wang et al. 2004): an 11x11 Gaussian window
  (sigma 1.5, truncated at 3.5 sigma), population covariances, K1 = 0.01, K2 = 0.03, the mean over
  pixels whose window lies inside the image, then over channels. Images must be at least 11x11
  (after ``crop_border``), as in scikit-image.
* ``y_channel=True`` scores the BT.601 luma of MATLAB's ``rgb2ycbcr`` for [0, 1] input,
  ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255`` (Y in [16/255, 235/255]), the choice
  of most deblurring / super-resolution papers that report "PSNR on Y".
* ``crop_border=b`` drops ``b`` pixels on every side before scoring (both metrics).

Arithmetic: PSNR reduces in float64; SSIM runs in float32 (float64 when given float64) using
plain multiply-adds for the Gaussian window, never a convolution, so TF32 convolution on recent
GPUs cannot creep in and cost accuracy.
"""

from __future__ import annotations

import math

import torch

__all__ = ["psnr", "quantize_8bit", "rgb_to_y", "ssim", "temporal_error"]

#: MATLAB ``rgb2ycbcr`` luma row, for RGB in [0, 1] and Y in [0, 1] (BT.601, studio swing).
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0

#: SSIM constants of Wang et al. (2004) and scikit-image's MATLAB-compatible Gaussian window.
_K1, _K2 = 0.01, 0.03
_SIGMA, _TRUNCATE = 1.5, 3.5
_RADIUS = int(_TRUNCATE * _SIGMA + 0.5)  # 5, computed as scipy.ndimage does
SSIM_WINDOW = 2 * _RADIUS + 1  # 11


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round (..., H, W) floats in [0, 1] to the nearest of the 256 levels an 8-bit file holds.

    Clamps to [0, 1] first and rounds halves up (``floor(255 x + 0.5) / 255``), as MATLAB's
    ``im2uint8`` does when the authors' script writes its PNGs. Same shape and dtype as ``x``.
    """
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def rgb_to_y(x: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """BT.601 luma as MATLAB ``rgb2ycbcr``: (N, 3, H, W) RGB in [0, data_range] -> (N, 1, H, W).

    ``Y = data_range * 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255``, so for data_range 1
    Y lies in [16/255, 235/255].
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_y needs an (N, 3, H, W) tensor, got {tuple(x.shape)}")
    wr, wg, wb = _Y_WEIGHTS
    y = wr * x[:, 0:1] + wg * x[:, 1:2] + wb * x[:, 2:3]
    return y + _Y_OFFSET * data_range


def _prepare(
    output: torch.Tensor,
    target: torch.Tensor,
    crop_border: int,
    y_channel: bool,
    data_range: float,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes, batch, cast, convert to Y and crop: the steps both metrics share."""
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("output and target must be torch tensors")
    if output.dim() == 3:
        output = output.unsqueeze(0)
    if target.dim() == 3:
        target = target.unsqueeze(0)
    if output.dim() != 4 or output.shape != target.shape:
        raise ValueError(
            f"output and target must be (N, C, H, W) tensors of one shape, got "
            f"{tuple(output.shape)} and {tuple(target.shape)}"
        )
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    output = output.to(dtype)
    target = target.to(dtype)
    if y_channel:
        if output.shape[1] != 3:
            raise ValueError(f"y_channel needs 3-channel RGB images, got {output.shape[1]}")
        output = rgb_to_y(output, data_range=data_range)
        target = rgb_to_y(target, data_range=data_range)
    if crop_border:
        h, w = output.shape[-2:]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")
        b = crop_border
        output = output[..., b : h - b, b : w - b]
        target = target[..., b : h - b, b : w - b]
    return output, target


def psnr(
    output: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, one value per image.

    output, target: (N, C, H, W) (or (C, H, W)) in [0, data_range]. Returns (N,) float64 on the
    inputs' device; ``inf`` where an image equals its target.
    """
    out, tgt = _prepare(output, target, crop_border, y_channel, data_range, torch.float64)
    mse = (out - tgt).square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_taps() -> list[float]:
    """The 11 normalised taps of scipy.ndimage's Gaussian (sigma 1.5, truncate 3.5)."""
    taps = [math.exp(-0.5 * (i / _SIGMA) ** 2) for i in range(-_RADIUS, _RADIUS + 1)]
    total = sum(taps)
    return [t / total for t in taps]


def _filter_valid(x: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable Gaussian over the last two dims, valid part only: (..., H, W) -> (..., H-10, W-10).

    SSIM keeps only pixels whose window lies inside the image (scikit-image filters with
    mirrored borders and then crops the radius away), so the border values never matter and
    the padding can be skipped altogether.
    """
    k = len(taps)
    h, w = x.shape[-2:]
    rows = taps[0] * x[..., 0 : h - k + 1, :]
    for i in range(1, k):
        rows = rows + taps[i] * x[..., i : h - k + 1 + i, :]
    out = taps[0] * rows[..., 0 : w - k + 1]
    for i in range(1, k):
        out = out + taps[i] * rows[..., i : w - k + 1 + i]
    return out


def ssim(
    output: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    crop_border: int = 0,
    y_channel: bool = False,
) -> torch.Tensor:
    """Structural similarity, equal to scikit-image's Gaussian-window MATLAB-style SSIM.

    output, target: (N, C, H, W) (or (C, H, W)) in [0, data_range], H and W >= 11 after
    ``crop_border``. Returns (N,) float64: for each image the mean SSIM map over the pixels whose
    11x11 window fits inside the image, averaged over channels (scikit-image's ``channel_axis``).
    Computed in float32 unless the inputs are float64; agrees with scikit-image on float64 to
    about 1e-6.
    """
    dtype = torch.float64 if output.dtype == torch.float64 else torch.float32
    x, y = _prepare(output, target, crop_border, y_channel, data_range, dtype)
    h, w = x.shape[-2:]
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}"
        )
    taps = _gaussian_taps()
    n, c = x.shape[:2]
    # Filter the five moments in one batched pass: (5, N, C, H, W) -> (5, N, C, H-10, W-10).
    mu_x, mu_y, m_xx, m_yy, m_xy = _filter_valid(torch.stack([x, y, x * x, y * y, x * y]), taps)
    var_x = m_xx - mu_x * mu_x
    var_y = m_yy - mu_y * mu_y
    cov_xy = m_xy - mu_x * mu_y
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    # Every channel has the same number of valid pixels, so the mean over (C, H, W) equals
    # scikit-image's mean over channels of per-channel means.
    return s.reshape(n, c, -1).to(torch.float64).mean(dim=(1, 2))


def temporal_error(
    output_prev: torch.Tensor,
    output: torch.Tensor,
    target_prev: torch.Tensor,
    target: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
) -> torch.Tensor:
    """Flicker of a video result against its ground truth, one value per image pair.

    ``mean |(o_t - o_{t-1}) - (g_t - g_{t-1})|`` over channels and pixels, in units of the
    [0, 1] intensity range (x255 for 8-bit levels): how much the frame-to-frame change of the
    outputs departs from that of the sharp ground truth. It needs no optical flow (so it does
    not depend on any flow estimator), is 0 for a perfect result and for any error that stays
    constant over time, and grows with flicker. All four tensors: (N, 3, H, W) (or (3, H, W)) in
    [0, 1]. Returns (N,) float64. ``crop_border`` and ``y_channel`` as in :func:`psnr`.
    """
    d_out = output.to(torch.float64) - output_prev.to(torch.float64)
    d_tgt = target.to(torch.float64) - target_prev.to(torch.float64)
    # rgb_to_y's offset is added to both differences and cancels in their difference.
    a, b = _prepare(d_out, d_tgt, crop_border, y_channel, 1.0, torch.float64)
    return (a - b).abs().flatten(1).mean(dim=1)
