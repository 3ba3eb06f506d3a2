"""PSNR, SSIM and temporal error against hand computations and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from flowdeblur.evaluation.metrics import psnr, quantize_8bit, rgb_to_y, ssim, temporal_error


def _sk_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """scikit-image's MATLAB-style SSIM of one (C, H, W) pair: the reference."""
    a = x.permute(1, 2, 0).double().numpy()
    b = y.permute(1, 2, 0).double().numpy()
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        channel_axis=2,
    )


def _pairs(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random image and a noisy, blurred-ish version of it (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    y = 0.7 * x + 0.3 * x.roll(1, -1) + 0.05 * noise
    return x, y.clamp(0, 1)


def _structured(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth gradients, a hard edge and a checkerboard; the target is a shifted, darker copy."""
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, w, dtype=torch.float64),
        indexing="ij",
    )
    checker = ((torch.arange(h)[:, None] // 4 + torch.arange(w)[None] // 4) % 2).double()
    img = torch.stack([xx, (xx > 0.5).double() * 0.8 + 0.1, 0.5 * yy + 0.5 * checker])[None]
    target = (0.9 * img.roll(2, -1) + 0.03).clamp(0, 1)
    return img, target


def test_psnr_hand_computation():
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    y = x.clone()
    y[0, 0, 0, 0] = 0.5  # MSE = 0.25 / 48
    assert psnr(x, y).item() == pytest.approx(10 * math.log10(48 / 0.25), abs=1e-12)
    # data_range scales the peak: same image pair scaled by 255.
    assert psnr(x * 255, y * 255, data_range=255.0).item() == pytest.approx(
        10 * math.log10(48 / 0.25), abs=1e-9
    )
    assert math.isinf(psnr(x, x).item())


@pytest.mark.parametrize("shape", [(2, 3, 32, 48), (1, 3, 17, 29)])
def test_psnr_matches_skimage(shape):
    x, y = _pairs(shape, seed=1)
    ours = psnr(x.float(), y.float())
    assert ours.shape == (shape[0],)
    for i in range(shape[0]):
        ref = peak_signal_noise_ratio(x[i].float().numpy(), y[i].float().numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)


def test_psnr_crop_and_y_by_hand():
    x, y = _pairs((1, 3, 20, 24), seed=2)
    ours = psnr(x, y, crop_border=3, y_channel=True).item()
    ya = rgb_to_y(x)[..., 3:-3, 3:-3]
    yb = rgb_to_y(y)[..., 3:-3, 3:-3]
    assert ours == pytest.approx(-10 * math.log10(((ya - yb) ** 2).mean().item()), abs=1e-9)


def test_rgb_to_y_matches_matlab_formula_and_skimage():
    x, _ = _pairs((1, 3, 5, 7), seed=3)
    ours = rgb_to_y(x)[0, 0]
    r, g, b = x[0]
    assert torch.allclose(ours, 16 / 255 + (65.481 * r + 128.553 * g + 24.966 * b) / 255)
    ref = rgb2ycbcr(x[0].permute(1, 2, 0).numpy())[..., 0] / 255  # Y in [16, 235]
    assert np.abs(ours.numpy() - ref).max() < 1e-12
    assert rgb_to_y(torch.ones(1, 3, 1, 1)).item() == pytest.approx(235 / 255, abs=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 32, 48), (1, 3, 37, 53), (1, 3, 11, 11)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_matches_skimage_random(shape, dtype):
    x, y = _pairs(shape, seed=4)
    ours = ssim(x.to(dtype), y.to(dtype))
    assert ours.shape == (shape[0],) and ours.dtype == torch.float64
    for i in range(shape[0]):
        assert abs(ours[i].item() - _sk_ssim(x[i], y[i])) < 1e-4
    if dtype == torch.float64:  # same arithmetic as scikit-image: far tighter than asked
        assert abs(ours[0].item() - _sk_ssim(x[0], y[0])) < 1e-10


def test_ssim_matches_skimage_structured_crop_and_y():
    x, y = _structured(41, 67)
    assert abs(ssim(x, y).item() - _sk_ssim(x[0], y[0])) < 1e-4
    # Border crop: the same as scoring the cropped images.
    ours = ssim(x.float(), y.float(), crop_border=4).item()
    assert abs(ours - _sk_ssim(x[0, :, 4:-4, 4:-4], y[0, :, 4:-4, 4:-4])) < 1e-4
    # Y channel: scikit-image on the MATLAB luma as a single-channel image.
    ours_y = ssim(x.float(), y.float(), y_channel=True, crop_border=1).item()
    ya = rgb2ycbcr(x[0].permute(1, 2, 0).numpy())[1:-1, 1:-1, 0] / 255
    yb = rgb2ycbcr(y[0].permute(1, 2, 0).numpy())[1:-1, 1:-1, 0] / 255
    ref = structural_similarity(
        ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert abs(ours_y - ref) < 1e-4
    # and the metric actually sees a difference between these choices
    assert abs(ours_y - ssim(x, y).item()) > 1e-3


def test_ssim_identity_and_bounds():
    x, y = _pairs((1, 3, 16, 16), seed=5)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, 1 - x).item() < 0.0 < ssim(x, y).item() < 1.0


def test_ssim_rejects_small_images_and_bad_shapes():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 10, 20), torch.rand(1, 3, 10, 20))
    with pytest.raises(ValueError, match="11x11"):  # the crop makes it too small
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), crop_border=3)
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))


def test_three_dim_input_is_one_image():
    x, y = _pairs((1, 3, 16, 16), seed=6)
    assert ssim(x[0], y[0]).shape == (1,)
    assert torch.equal(psnr(x[0], y[0]), psnr(x, y))


def test_quantize_8bit_rounds_half_up_and_clamps():
    x = torch.tensor([-0.1, 0.0, 0.5 / 255, 1.49 / 255, 127.5 / 255, 1.0, 1.3], dtype=torch.float64)
    q = quantize_8bit(x) * 255
    assert q.tolist() == [0.0, 0.0, 1.0, 1.0, 128.0, 255.0, 255.0]


def test_temporal_error_definition():
    g = torch.Generator().manual_seed(7)
    g0, g1 = torch.rand(2, 1, 3, 12, 12, generator=g, dtype=torch.float64)
    # A constant error over time is no flicker; a change of the error is.
    assert temporal_error(g0 + 0.1, g1 + 0.1, g0, g1).item() == pytest.approx(0.0, abs=1e-12)
    o1 = g1.clone()
    o1[..., :6, :] += 0.2  # half of the pixels brighten between frames
    assert temporal_error(g0, o1, g0, g1).item() == pytest.approx(0.1, abs=1e-12)
    assert temporal_error(g0, o1, g0, g1, crop_border=3).item() == pytest.approx(
        0.2 * 3 / 6, abs=1e-12
    )
    # Y: a grey change of 0.2 moves Y by 0.2 * 219 / 255.
    assert temporal_error(g0, o1, g0, g1, y_channel=True).item() == pytest.approx(
        0.1 * 219 / 255, abs=1e-9
    )


@pytest.mark.gpu
def test_ssim_psnr_on_gpu_match_skimage():
    x, y = _pairs((3, 3, 64, 80), seed=8)
    ours = ssim(x.float().cuda(), y.float().cuda())
    assert ours.device.type == "cuda"
    for i in range(3):
        assert abs(ours[i].item() - _sk_ssim(x[i], y[i])) < 1e-4
    ref = psnr(x.float(), y.float())
    assert torch.allclose(psnr(x.float().cuda(), y.float().cuda()).cpu(), ref, atol=1e-6)
