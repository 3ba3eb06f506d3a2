"""Image files: formats, bit depths, round trips, natural order and user errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import no_temp_files
from PIL import Image

from flowdeblur.errors import UserError
from flowdeblur.media import list_images, natural_key, read_image, write_image


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_natural_order_and_hidden_files(tmp_path):
    for name in ["frame10.png", "frame2.png", "frame1.png", "._frame3.png", "notes.txt", "a.JPG"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == [
        "a.JPG", "frame1.png", "frame2.png", "frame10.png"
    ]
    assert sorted(["x10", "x9", "x09b"], key=natural_key) == ["x9", "x09b", "x10"]


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(UserError, match="not a folder"):
        list_images(tmp_path / "f.png")


def test_read_grayscale_png(tmp_path):
    arr = _rng().integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.shape == (3, 5, 7) and img.dtype == torch.float32
    expected = torch.from_numpy(arr).float() / 255
    for c in range(3):
        assert torch.equal(img[c], expected)


def test_read_rgba_drops_alpha(tmp_path):
    arr = _rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    arr[..., 3] = 0  # fully transparent: compositing would change the colours, dropping not
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert torch.equal(img, torch.from_numpy(arr[..., :3]).permute(2, 0, 1).float() / 255)


def test_read_16bit_grayscale_png(tmp_path):
    arr = _rng(2).integers(0, 65536, (5, 7), dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    expected = torch.from_numpy(arr.astype(np.float32)) / 65535
    assert torch.allclose(img[1], expected, atol=1e-7)
    assert torch.equal(img[0], img[2])


def test_16bit_rgb_png_round_trip(tmp_path):
    # Values on the 16-bit grid, off the 8-bit grid: an 8-bit truncation would be caught.
    arr = _rng(3).integers(0, 65536, (3, 5, 7)).astype(np.float64) / 65535
    image = torch.from_numpy(arr).float()
    write_image(tmp_path / "c16.png", image, bits=16)
    with Image.open(tmp_path / "c16.png") as im:
        assert im.size == (7, 5)
    back = read_image(tmp_path / "c16.png")
    assert torch.allclose(back, image, atol=1e-6)
    assert no_temp_files(tmp_path)


def test_tiffs(tmp_path):
    import tifffile

    arr = _rng(4).integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "t.tif", arr, photometric="rgb")
    expected = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1) / 65535
    assert torch.allclose(read_image(tmp_path / "t.tif"), expected)
    planar = np.ascontiguousarray(np.moveaxis(arr, -1, 0))  # (3, 4, 6), stored plane by plane
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    assert torch.allclose(read_image(tmp_path / "p.tif"), expected)
    pal = Image.new("P", (3, 2))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "pal.tif")  # palette: colours, not indices
    img = read_image(tmp_path / "pal.tif")
    assert img[:, 0, 0].tolist() == [1.0, 0.0, 0.0] and img[:, 1, 1].tolist() == [0.0, 1.0, 0.0]


def test_palette_png(tmp_path):
    pal = Image.new("P", (3, 2))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img[:, 0, 0].tolist() == [1.0, 0.0, 0.0] and img[:, 1, 1].tolist() == [0.0, 1.0, 0.0]


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (4, 2), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").shape == (3, 4, 2)


def test_8bit_round_trip_and_clipping(tmp_path):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 9, 11, generator=g) * 1.2 - 0.1
    image[0, 0, 0] = float("nan")
    write_image(tmp_path / "out" / "x.png", image)  # parent folder created
    back = read_image(tmp_path / "out" / "x.png")
    expected = torch.nan_to_num(image, nan=0.0).clamp(0, 1)
    assert (back - expected).abs().max() <= 0.5 / 255 + 1e-6
    assert back[0, 0, 0] == 0
    assert no_temp_files(tmp_path / "out")


def test_write_image_errors(tmp_path):
    img = torch.zeros(3, 2, 2)
    with pytest.raises(UserError, match="extension"):
        write_image(tmp_path / "x.xyz", img)
    with pytest.raises(UserError, match="16-bit"):
        write_image(tmp_path / "x.jpg", img, bits=16)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        write_image(tmp_path / "x.png", torch.zeros(1, 3, 2, 2))


def test_read_image_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(_rng().integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="bad.png"):
        read_image(tmp_path / "bad.png")
