"""Textures from the user's own photographs: only sharp regions are kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from flowdeblur.data.synthetic import SceneConfig, SyntheticScenes
from flowdeblur.data.textures import PHOTO_TILE, load_photo_dirs, sharp_tiles, texture_bank
from flowdeblur.errors import UserError


def _half_sharp_photo(h: int = 512, w: int = 1024, seed: int = 0) -> np.ndarray:
    """Left half: fine random texture (sharp); right half: the same heavily blurred (bokeh)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, h, w, generator=g)
    blurred = F.avg_pool2d(F.pad(noise, (15, 15, 15, 15), mode="replicate"), 31, stride=1)
    blurred = F.avg_pool2d(F.pad(blurred, (15, 15, 15, 15), mode="replicate"), 31, stride=1)
    img = torch.cat([noise[..., : w // 2], blurred[..., w // 2 :]], dim=-1)[0]
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_sharp_tiles_skip_out_of_focus_regions():
    photo = torch.from_numpy(_half_sharp_photo()).permute(2, 0, 1).float() / 255
    kept = sharp_tiles(photo)
    columns = {j for _, j, _ in kept}
    assert kept and all(t.shape == (3, PHOTO_TILE, PHOTO_TILE) for _, _, t in kept)
    assert columns == {0, 1}  # the two sharp tile columns of the left half, none of the right


def test_photo_folder_tiles_join_the_bank_and_render(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_half_sharp_photo()).save(folder / "scene.png")
    (folder / "notes.txt").write_text("not an image")
    tiles, gray, names = load_photo_dirs((str(folder),))
    assert len(tiles) == 4 and not any(gray)  # 2 rows x 2 sharp columns at 512 px
    assert all(n.startswith("scene.png[") for n in names)
    base = texture_bank("smooth")
    bank = texture_bank("smooth", (str(folder),))
    assert len(bank) == len(base) + 4
    cfg = SceneConfig(size=(32, 32), textures="smooth", photo_dirs=[str(folder)],
                      max_camera_motion=4, max_object_motion=4, renderer="torch")
    assert cfg.photo_dirs == (str(folder),)
    batch = SyntheticScenes(cfg, seed=0).sample(2)
    assert batch["frame_t"].shape == (2, 3, 32, 32) and torch.isfinite(batch["frame_t"]).all()


def test_bad_photo_folders_are_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_photo_dirs((str(tmp_path / "missing"),))
    with pytest.raises(UserError, match="holds no images"):
        load_photo_dirs((str(tmp_path),))
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(UserError, match="no sharp"):
        load_photo_dirs((str(tmp_path),))
    with pytest.raises(UserError, match="list of folders"):
        SceneConfig(photo_dirs=str(tmp_path))
