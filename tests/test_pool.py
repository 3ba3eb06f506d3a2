"""ScenePool: exact storage, flows that move with the pixels, determinism, training resume."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_config

from flowdeblur.data.pool import ScenePool, _transform
from flowdeblur.data.synthetic import SceneConfig, SyntheticScenes
from flowdeblur.ops import warp
from flowdeblur.training import loop as T


def scenes(side: int = 48, seed: int = 4) -> SyntheticScenes:
    cfg = SceneConfig(size=(side, side), textures="smooth", max_camera_motion=3.0,
                      max_object_motion=3.0)
    return SyntheticScenes(cfg, seed=seed)


def warp_error(sample: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean |warp(sharp_next, flow) - sharp_t| over valid pixels, per sample."""
    warped = warp(sample["sharp_next"], sample["flow"])
    m = sample["valid"].float()
    return ((warped - sample["sharp_t"]).abs() * m).sum((1, 2, 3)) / (3 * m.sum((1, 2, 3)))


def test_storage_round_trip_is_exact():
    rendered = scenes().sample(3)
    pool = ScenePool(scenes(), 3, 48)  # the same stream: the same 3 samples
    for key, value in rendered.items():
        back = pool.data[key].float()
        if key.startswith(("frame", "sharp")):
            back = back / 255.0
        torch.testing.assert_close(back, value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("symmetry", range(8))
def test_flow_moves_with_the_pixels(symmetry):
    sample = scenes(40, seed=7).sample(2)
    before = warp_error(sample)
    assert float(before.max()) < 0.02  # the warp explains the pair before the transform
    moved = {k: torch.stack([_transform(v[i], k == "flow", symmetry & 1, symmetry & 2,
                                        symmetry & 4) for i in range(2)])
             for k, v in sample.items()}
    after = warp_error(moved)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-6)
    if symmetry:  # and the transform did change the pictures
        assert not torch.equal(moved["sharp_t"], sample["sharp_t"])


def test_samples_are_crops_of_stored_ones_and_deterministic():
    pool = ScenePool(scenes(48), 4, 32, chunk=3)
    g = torch.Generator().manual_seed(11)
    state = g.get_state()
    batch = pool.sample(6, g)
    assert set(batch) == set(pool.data)
    assert batch["frame_t"].shape == (6, 3, 32, 32) and batch["flow"].shape == (6, 2, 32, 32)
    assert batch["valid"].dtype == torch.float32
    g.set_state(state)
    again = pool.sample(6, g)
    for k in batch:
        assert torch.equal(batch[k], again[k]), k
    # Every drawn crop's colour histogram matches one stored sample's values (as a multiset
    # of 8-bit levels over its channels, a crop is a subset of some stored sample).
    stored = pool.data["sharp_t"]
    for crop in batch["sharp_t"]:
        levels = set(torch.round(crop * 255).to(torch.uint8).unique().tolist())
        assert any(levels <= set(s.unique().tolist()) for s in stored)


def test_pool_rejects_a_crop_larger_than_the_scenes():
    with pytest.raises(ValueError, match="larger than the scenes"):
        ScenePool(scenes(32), 2, 48)


def test_training_with_a_pool_resumes_exactly(tmp_path):
    overrides = ["data.synthetic_pool=5", "data.scene_size=80", "steps=4",
                 "log.checkpoint_every=2"]
    reference = T.train(tiny_config(tmp_path / "reference", *overrides))
    config = tiny_config(tmp_path / "split", *overrides, "steps=2")
    T.train(config)
    resumed = T.train(tiny_config(tmp_path / "split", *overrides), resume=True)
    assert resumed["final_step"] == 4
    assert resumed["last_loss"] == pytest.approx(reference["last_loss"], rel=1e-5)
