"""Classical baselines to compare the network against.

Unsharp masking is the classical yardstick: ``out = x + amount * (x - G_sigma * x)``, with
(sigma, amount) tuned for PSNR on training data (:func:`tune_unsharp_mask`), so a network must
beat the best sharpening a fixed filter can do, not just the blurry input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from .metrics import psnr


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), reflect-padded, radius ceil(3 sigma)."""
    if sigma <= 0:
        return image
    radius = max(1, int(3 * sigma + 0.999))
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = image.shape[1]
    pad_h = min(radius, image.shape[-2] - 1)
    pad_w = min(radius, image.shape[-1] - 1)
    out = F.pad(image, (pad_w, pad_w, 0, 0), mode="reflect" if pad_w else "replicate")
    out = F.pad(out, (radius - pad_w, radius - pad_w, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, pad_h, pad_h), mode="reflect" if pad_h else "replicate")
    out = F.pad(out, (0, 0, radius - pad_h, radius - pad_h), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def unsharp_mask(image: torch.Tensor, sigma: float, amount: float) -> torch.Tensor:
    """``clamp(x + amount * (x - gaussian_blur(x, sigma)), 0, 1)`` for (N, C, H, W) in [0, 1]."""
    return (image + amount * (image - gaussian_blur(image, sigma))).clamp(0, 1)


def tune_unsharp_mask(
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    sigmas: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0),
    amounts: Sequence[float] = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0),
) -> tuple[float, float, float]:
    """Grid-search (sigma, amount) maximising the mean PSNR over (blurry, sharp) batches.

    Returns (sigma, amount, mean PSNR in dB). amount 0 (the blurry input itself) is in the
    grid, so the tuned baseline is never worse than doing nothing on the tuning data.
    """
    pairs = list(pairs)
    best = (0.0, 0.0, float("-inf"))
    for sigma in sigmas:
        for amount in amounts:
            scores = [psnr(unsharp_mask(b, sigma, amount), s) for b, s in pairs]
            score = torch.cat(scores).mean().item()
            if score > best[2]:
                best = (float(sigma), float(amount), score)
    return best
