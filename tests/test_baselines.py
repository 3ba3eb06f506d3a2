"""Unsharp masking baseline."""

from __future__ import annotations

import torch

from flowdeblur.evaluation.baselines import gaussian_blur, tune_unsharp_mask, unsharp_mask


def test_gaussian_blur_keeps_constants_and_matches_a_direct_sum():
    const = torch.full((1, 3, 9, 10), 0.3)
    torch.testing.assert_close(gaussian_blur(const, 1.5), const)
    img = torch.rand(1, 1, 15, 15, dtype=torch.float64)
    sigma = 1.0
    out = gaussian_blur(img, sigma)
    # Interior pixel: the 2-D Gaussian-weighted sum over the 7x7 support.
    r = torch.arange(-3, 4, dtype=torch.float64)
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    k2 = torch.outer(k, k) / k.sum() ** 2
    expected = (img[0, 0, 4:11, 4:11] * k2).sum()
    torch.testing.assert_close(out[0, 0, 7, 7], expected)


def test_unsharp_mask_amount_zero_is_identity_and_sharpening_raises_contrast():
    img = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(unsharp_mask(img, 1.0, 0.0), img)
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    soft = gaussian_blur(edge, 1.0)
    sharpened = unsharp_mask(soft, 1.0, 1.0)
    assert (sharpened - edge).abs().mean() < (soft - edge).abs().mean()


def test_tuning_finds_sharpening_for_blurred_images_and_identity_for_sharp_ones():
    g = torch.Generator().manual_seed(0)
    sharp = gaussian_blur(torch.rand(4, 3, 32, 32, generator=g), 0.7)  # some texture
    blurry = gaussian_blur(sharp, 1.0)
    sigma, amount, _ = tune_unsharp_mask([(blurry, sharp)])
    assert amount > 0
    _, amount_sharp, _ = tune_unsharp_mask([(sharp, sharp)])
    assert amount_sharp == 0.0
