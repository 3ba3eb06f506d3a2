"""Camera and codec degradations of the blurry input frames (never of the sharp targets).

Real footage reaches the network with sensor noise whose variance grows with the signal, and
with the block quantisation of a lossy codec (JPEG frames, H.264 / HEVC video). Training only on
clean renders teaches the network to sharpen that noise and those block edges too. Applied to
``frame_t``, ``frame_next`` and ``frame_prev`` of a batch, after cropping, with parameters drawn
per sample from the batch's generator:

- **noise**: Poisson-Gaussian in linear light, ``var = a * x + b`` with ``a`` (shot) and ``b``
  (read) log-uniform in their ranges, independent per frame and pixel;
- **compression**: the JPEG / intra-frame video pipeline: BT.601 YCbCr, 4:2:0 chroma,
  8 x 8 DCT quantised with the standard tables scaled to a quality drawn per sample (both
  frames of a sample share it, like consecutive frames of one clip).

Each is applied to a sample with its own probability, so part of every batch stays clean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .blur_synthesis import linear_to_srgb, srgb_to_linear

#: Batch keys of the network's blurry inputs: the only ones degraded.
INPUT_KEYS = ("frame_t", "frame_next", "frame_prev")

# Standard JPEG quantisation tables (ITU-T T.81 Annex K), luminance and chrominance.
_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61), (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56), (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77), (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101), (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99), (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99), (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99), (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99), (99, 99, 99, 99, 99, 99, 99, 99),
)


@dataclass(frozen=True)
class DegradeConfig:
    """How often and how strongly the blurry inputs are degraded (ranges are (low, high))."""

    noise_probability: float = 0.0
    shot_noise: tuple[float, float] = (1e-4, 1e-2)  # a: variance per unit of linear signal
    read_noise: tuple[float, float] = (1e-6, 1e-4)  # b: variance floor, linear units
    compression_probability: float = 0.0
    quality: tuple[float, float] = (40.0, 95.0)  # JPEG quality scale, 1..100

    def __post_init__(self) -> None:
        for name in ("noise_probability", "compression_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("shot_noise", "read_noise"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"{name} must be a (low, high) range with 0 < low <= high")
        lo, hi = self.quality
        if not 1.0 <= lo <= hi <= 100.0:
            raise ValueError(f"quality must be a range within [1, 100], got {self.quality}")

    @property
    def active(self) -> bool:
        return self.noise_probability > 0 or self.compression_probability > 0


def degrade_batch(batch: dict[str, torch.Tensor], config: DegradeConfig,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Return ``batch`` with its blurry inputs degraded (other keys untouched, same tensors).

    Images are (N, 3, H, W) sRGB in [0, 1]. Random draws come from ``generator`` (a CPU
    generator, so runs resume exactly); the noise itself is drawn on the images' device.
    """
    keys = [k for k in INPUT_KEYS if k in batch]
    if not config.active or not keys:
        return batch
    n = batch[keys[0]].shape[0]
    noisy = _chosen(n, config.noise_probability, generator)
    shot = _log_uniform(n, config.shot_noise, generator)
    read = _log_uniform(n, config.read_noise, generator)
    compressed = _chosen(n, config.compression_probability, generator)
    quality = config.quality[0] + (config.quality[1] - config.quality[0]) * torch.rand(
        n, generator=generator, dtype=torch.float64)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    noise_gen = torch.Generator(device=batch[keys[0]].device).manual_seed(seed)
    out = dict(batch)
    for key in keys:
        image = batch[key]
        if noisy.any():
            image = torch.where(_rows(noisy, image),
                                add_sensor_noise(image, shot, read, noise_gen), image)
        if compressed.any():
            image = torch.where(_rows(compressed, image), jpeg_quantise(image, quality), image)
        out[key] = image
    return out


def add_sensor_noise(image: torch.Tensor, shot: torch.Tensor, read: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Poisson-Gaussian noise in linear light: (N, C, H, W) sRGB in [0, 1] -> same.

    shot, read: (N,) variances (per unit of linear signal, and constant). The Poisson part is
    approximated by a Gaussian of the same variance, accurate at these photon counts.
    """
    linear = srgb_to_linear(image.float().clamp(0, 1))
    a = shot.to(linear).view(-1, 1, 1, 1)
    b = read.to(linear).view(-1, 1, 1, 1)
    sigma = (a * linear + b).sqrt()
    noise = torch.randn(linear.shape, generator=generator, device=linear.device,
                        dtype=linear.dtype)
    return linear_to_srgb((linear + sigma * noise).clamp(0, 1)).to(image.dtype)


def jpeg_quantise(image: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-style lossy coding and decoding: (N, 3, H, W) in [0, 1] -> same, quality (N,).

    8-bit values, BT.601 full-range YCbCr, chroma averaged over 2 x 2 and upsampled back,
    8 x 8 DCT blocks quantised by the standard tables scaled as the IJG encoder does. Frames
    are edge-padded to whole blocks and cropped back.
    """
    n, _, h, w = image.shape
    x = (image.float().clamp(0, 1) * 255).round()
    x = F.pad(x, (0, (-w) % 16, 0, (-h) % 16), mode="replicate")
    ycc = _rgb_to_ycbcr(x) - 128.0
    luma = _quantise_blocks(ycc[:, :1], _scaled_table(_LUMA_TABLE, quality))
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    chroma = _quantise_blocks(chroma, _scaled_table(_CHROMA_TABLE, quality))
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    rgb = _ycbcr_to_rgb(torch.cat([luma, chroma], dim=1) + 128.0)
    return (rgb.round().clamp(0, 255) / 255)[:, :, :h, :w].to(image.dtype)


def _chosen(n: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) < probability


def _log_uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64))


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(N,) bool -> (N, 1, 1, 1) on ``like``'s device, for torch.where over images."""
    return mask.to(like.device).view(-1, 1, 1, 1)


def _scaled_table(table, quality: torch.Tensor) -> torch.Tensor:
    """(N,) qualities -> (N, 1, 1, 1, 8, 8) quantisation steps (IJG scaling, steps >= 1)."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)  # percent
    base = torch.tensor(table, dtype=torch.float64)
    steps = ((base[None] * scale.view(-1, 1, 1) + 50.0) / 100.0).floor().clamp(min=1.0)
    return steps.float().view(-1, 1, 1, 1, 8, 8)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    """Orthonormal 8-point DCT-II matrix D, so coefficients = D @ block @ D.T."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float().to(device)


def _quantise_blocks(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Quantise the 8 x 8 DCT of (N, C, H, W) (H, W multiples of 8) with steps (N,1,1,1,8,8)."""
    n, c, h, w = x.shape
    blocks = x.view(n, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (N,C,bh,bw,8,8)
    d = _dct_matrix(x.device)
    coeffs = d @ blocks @ d.T
    steps = steps.to(x.device)
    blocks = d.T @ ((coeffs / steps).round() * steps) @ d
    return blocks.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def _rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.cat([y, cb, cr], dim=1)


def _ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    y, cb, cr = x[:, 0:1], x[:, 1:2] - 128.0, x[:, 2:3] - 128.0
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return torch.cat([r, g, b], dim=1)
