"""data/degrade.py: sensor noise and codec quantisation of the blurry inputs only."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from flowdeblur.data.blur_synthesis import srgb_to_linear
from flowdeblur.data.degrade import (
    DegradeConfig,
    add_sensor_noise,
    degrade_batch,
    jpeg_quantise,
)
from flowdeblur.evaluation.metrics import psnr


def _photo(h: int = 96, w: int = 120) -> torch.Tensor:
    """A smooth-plus-edges RGB test image (1, 3, H, W) in [0, 1]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    r = 0.5 + 0.4 * torch.sin(9 * x) * torch.cos(7 * y)
    g = (x + y > 0.9).float() * 0.6 + 0.2
    b = 0.5 + 0.3 * torch.cos(23 * x * y)
    return torch.stack([r, g, b]).unsqueeze(0).clamp(0, 1)


def _pil_jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    arr = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality, subsampling=2)
    out = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return torch.from_numpy(out).permute(2, 0, 1).float().unsqueeze(0) / 255


@pytest.mark.parametrize("quality", [20, 50, 90, 100])
def test_jpeg_quantise_matches_libjpeg(quality):
    image = _photo(93, 117)  # not a multiple of 8 or 16: padded and cropped back
    ours = jpeg_quantise(image, torch.tensor([float(quality)]))
    ref = _pil_jpeg(image, quality)
    assert ours.shape == image.shape
    # libjpeg's integer DCT and chroma upsampling differ slightly from ours: the two decoded
    # images agree far better than either agrees with the input ...
    agreement = psnr(ours, ref).item()
    loss_ours, loss_ref = psnr(ours, image).item(), psnr(ref, image).item()
    assert agreement > loss_ref + 4
    # ... and lose about as much as libjpeg at the same quality.
    assert abs(loss_ours - loss_ref) < 1.5, (loss_ours, loss_ref)


def test_lower_quality_loses_more():
    image = _photo()
    scores = [psnr(jpeg_quantise(image, torch.tensor([q])), image).item() for q in (10, 40, 90)]
    assert scores[0] < scores[1] < scores[2]


def test_sensor_noise_variance_grows_with_the_signal():
    n, shot, read = 2, torch.tensor([4e-3, 4e-3]), torch.tensor([1e-5, 1e-5])
    levels = (0.2, 0.8)
    gen = torch.Generator().manual_seed(1)
    for level in levels:
        image = torch.full((n, 3, 128, 128), level)
        noisy = add_sensor_noise(image, shot, read, gen)
        lin, lin_noisy = srgb_to_linear(image), srgb_to_linear(noisy)
        var = (lin_noisy - lin).var().item()
        expected = 4e-3 * lin.mean().item() + 1e-5
        assert abs(var - expected) < 0.1 * expected, (level, var, expected)


def _batch(n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    frames = {k: torch.rand(n, 3, 32, 40, generator=g) for k in
              ("frame_t", "frame_next", "sharp_t", "sharp_next")}
    frames["flow"] = torch.randn(n, 2, 32, 40, generator=g)
    return frames


def test_degrade_batch_touches_only_the_blurry_inputs_and_is_reproducible():
    cfg = DegradeConfig(noise_probability=1.0, compression_probability=1.0)
    batch = _batch()
    a = degrade_batch(batch, cfg, torch.Generator().manual_seed(5))
    b = degrade_batch(batch, cfg, torch.Generator().manual_seed(5))
    for key in ("sharp_t", "sharp_next", "flow"):
        assert a[key] is batch[key]
    for key in ("frame_t", "frame_next"):
        assert not torch.equal(a[key], batch[key])
        assert torch.equal(a[key], b[key])
        assert a[key].min() >= 0 and a[key].max() <= 1


def test_probabilities_choose_samples_and_zero_leaves_the_batch_alone():
    batch = _batch(n=64)
    assert degrade_batch(batch, DegradeConfig(), torch.Generator()) is batch
    out = degrade_batch(batch, DegradeConfig(compression_probability=0.5),
                        torch.Generator().manual_seed(2))
    changed = (out["frame_t"] != batch["frame_t"]).flatten(1).any(1)
    assert 16 <= int(changed.sum()) <= 48  # about half, and both kinds present
    # a sample's two frames are coded alike: both changed or neither
    assert torch.equal(changed, (out["frame_next"] != batch["frame_next"]).flatten(1).any(1))


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="noise_probability"):
        DegradeConfig(noise_probability=1.5)
    with pytest.raises(ValueError, match="quality"):
        DegradeConfig(quality=(0.0, 50.0))
