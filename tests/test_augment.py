"""Paired augmentation: one transform for all frames, flows and masks transformed with it."""

from __future__ import annotations

import math

import pytest
import torch

from flowdeblur.data.augment import augment
from flowdeblur.data.synthetic import SceneConfig, SyntheticScenes
from flowdeblur.errors import UserError
from flowdeblur.ops import warp


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.bool().expand_as(a)
    mse = ((a - b)[m] ** 2).mean().clamp_min(1e-12)
    return float(-10 * torch.log10(mse))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_sample(n: int = 3, h: int = 20, w: int = 24) -> dict[str, torch.Tensor]:
    g = gen(123)
    return {
        "frame_t": torch.rand(n, 3, h, w, generator=g),
        "frame_next": torch.rand(n, 3, h, w, generator=g),
        "sharp_t": torch.rand(n, 3, h, w, generator=g),
        "flow": torch.randn(n, 2, h, w, generator=g),
        "valid": (torch.rand(n, 1, h, w, generator=g) > 0.2).float(),
    }


NO_CHANGE = dict(scale_range=(1.0, 1.0), max_rotation_deg=0.0, flips=False,
                 permute_colors=False)


def test_full_size_crop_without_transform_is_identity():
    s = random_sample()
    out = augment(s, crop_size=(20, 24), generator=gen(), **NO_CHANGE)
    for k in ("frame_t", "frame_next", "sharp_t", "flow"):
        torch.testing.assert_close(out[k], s[k], atol=1e-5, rtol=0)
    # Valid stays valid only where the flow target is still inside the frame.
    xs = torch.arange(24) + s["flow"][:, 0]
    ys = torch.arange(20)[:, None] + s["flow"][:, 1]
    inside = ((xs >= 0) & (xs <= 23) & (ys >= 0) & (ys <= 19))[:, None]
    assert torch.equal(out["valid"], s["valid"] * inside)


def test_flips_mirror_images_and_flow_together():
    s = random_sample(n=8)
    out = augment(s, crop_size=(20, 24), generator=gen(1),
                  **{**NO_CHANGE, "flips": True})
    seen = set()
    for i in range(8):
        for fx in (False, True):
            for fy in (False, True):
                dims = [d for d, f in ((-1, fx), (-2, fy)) if f]
                img = s["sharp_t"][i].flip(dims) if dims else s["sharp_t"][i]
                if torch.allclose(img, out["sharp_t"][i], atol=1e-5):
                    seen.add((fx, fy))
                    flow = s["flow"][i].flip(dims) if dims else s["flow"][i]
                    sign = torch.tensor([-1.0 if fx else 1.0, -1.0 if fy else 1.0]).view(2, 1, 1)
                    torch.testing.assert_close(out["flow"][i], flow * sign, atol=1e-5, rtol=0)
                    blur = s["frame_next"][i].flip(dims) if dims else s["frame_next"][i]
                    torch.testing.assert_close(out["frame_next"][i], blur, atol=1e-5, rtol=0)
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"sample {i} is no flip of its input")
    assert len(seen) >= 3  # the flips do vary


def test_colour_permutation_is_shared_by_the_frames_of_a_sample():
    s = random_sample(n=6)
    out = augment(s, crop_size=(20, 24), generator=gen(2),
                  **{**NO_CHANGE, "permute_colors": True})
    perms = set()
    for i in range(6):
        perm = [int(torch.argmin((s["sharp_t"][i] - out["sharp_t"][i, c]).abs().flatten(1)
                                 .amax(1))) for c in range(3)]
        assert sorted(perm) == [0, 1, 2]
        for k in ("frame_t", "frame_next", "sharp_t"):
            torch.testing.assert_close(out[k][i], s[k][i][perm], atol=1e-5, rtol=0)
        perms.add(tuple(perm))
    assert len(perms) > 1
    torch.testing.assert_close(out["flow"], s["flow"], atol=1e-5, rtol=0)


def test_constant_flow_rotates_and_scales_with_the_image():
    n, h, w = 6, 40, 40
    v = torch.tensor([3.0, -2.0])
    s = {"sharp_t": torch.rand(n, 3, h, w, generator=gen(5)),
         "flow": v.view(1, 2, 1, 1).expand(n, 2, h, w).clone()}
    out = augment(s, crop_size=(24, 24), generator=gen(3), scale_range=(0.8, 1.25),
                  max_rotation_deg=40.0)
    assert "valid" in out and out["valid"].shape == (n, 1, 24, 24)
    angles = []
    for i in range(n):
        f = out["flow"][i].flatten(1)
        torch.testing.assert_close(f, f[:, :1].expand_as(f), atol=1e-4, rtol=0)
        ratio = float(f[:, 0].norm() / v.norm())
        assert 0.8 - 1e-4 <= ratio <= 1.25 + 1e-4
        # The direction turns by at most the rotation, after the flips mirrored it.
        angle = math.atan2(float(f[1, 0]), float(f[0, 0]))
        turns = [abs(math.remainder(angle - math.atan2(sy * -2.0, sx * 3.0), 2 * math.pi))
                 for sx in (1, -1) for sy in (1, -1)]
        assert min(turns) <= math.radians(40.0) + 1e-4
        angles.append(angle)
    assert len({round(a, 3) for a in angles}) == n


def test_warp_consistency_survives_augmentation():
    cfg = SceneConfig(size=(80, 80), textures="smooth", max_layers=3, max_camera_motion=8.0,
                      max_object_motion=8.0, still_probability=0.0, noise_std=(0.0, 0.0),
                      three_frames=True)
    b = SyntheticScenes(cfg, seed=21).sample(3)
    out = augment(b, crop_size=(56, 48), generator=gen(4), max_rotation_deg=30.0)
    assert out["sharp_t"].shape == (3, 3, 56, 48) and out["flow_prev"].shape == (3, 2, 56, 48)
    pairs = (("sharp_next", "flow", "valid"), ("sharp_prev", "flow_prev", "valid_prev"))
    for other, fk, vk in pairs:
        warped = warp(out[other], out[fk])
        for i in range(3):
            valid = out[vk][i : i + 1]
            assert float(valid.mean()) > 0.3
            assert masked_psnr(warped[i : i + 1], out["sharp_t"][i : i + 1], valid) >= 40


def test_samples_without_flow_unbatched_and_deterministic():
    s = {k: v[0] for k, v in random_sample().items() if k in ("frame_t", "frame_next", "sharp_t")}
    s["name"] = "clip_7"
    a = augment(s, crop_size=(16, 12), generator=gen(9))
    b = augment(s, crop_size=(16, 12), generator=gen(9))
    assert set(a) == {"frame_t", "frame_next", "sharp_t", "name"} and a["name"] == "clip_7"
    for k in ("frame_t", "frame_next", "sharp_t"):
        assert a[k].shape == (3, 16, 12)
        assert torch.equal(a[k], b[k])
    c = augment(s, crop_size=(16, 12), generator=gen(10))
    assert not torch.equal(a["sharp_t"], c["sharp_t"])


def test_crop_larger_than_input_zooms_in():
    s = random_sample(n=2, h=10, w=12)
    out = augment(s, crop_size=(30, 30), generator=gen(0), max_rotation_deg=5.0)
    assert out["frame_t"].shape == (2, 3, 30, 30)
    assert float(out["flow"].abs().max()) > float(s["flow"].abs().max())  # vectors scale up


def test_bad_arguments():
    s = random_sample()
    with pytest.raises(UserError):
        augment(s, crop_size=(0, 10), generator=gen())
    with pytest.raises(UserError):
        augment(s, crop_size=(8, 8), generator=gen(), scale_range=(1.2, 0.8))
    with pytest.raises(ValueError):
        augment({"frame_t": torch.rand(3, 8, 8), "flow": torch.rand(1, 2, 8, 8)},
                crop_size=(4, 4), generator=gen())
