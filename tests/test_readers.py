"""Dataset readers on tiny fake trees of every layout, including user errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowdeblur.data.readers import DVD_TEST_VIDEOS, LAYOUTS, PairedFrames, find_sequences
from flowdeblur.errors import UserError
from flowdeblur.media import read_image, write_image


def _frame(value: int, size=(4, 6)) -> torch.Tensor:
    """A flat frame whose 8-bit value identifies it after a PNG round trip."""
    return torch.full((3, *size), value / 255)


def _frames(folder: Path, names: list[str], base: int, ext=".png", size=(4, 6)) -> None:
    for i, name in enumerate(names):
        write_image(folder / f"{name}{ext}", _frame(base + i, size))


def _value(img: torch.Tensor) -> int:
    return round(img[0, 0, 0].item() * 255)


def _names(seqs) -> list[str]:
    return [s.name for s in seqs]


def test_layouts_constant():
    assert LAYOUTS == ("dvd", "gopro", "gopro_gamma", "reds", "bsd", "folders")
    assert len(DVD_TEST_VIDEOS) == 10


def _dvd(root: Path) -> Path:
    q = root / "DeepVideoDeblurring_Dataset" / "quantitative_datasets"
    for video, base in [("IMG_0003", 10), ("IMG_0001", 50), ("720p_240fps_2", 90)]:
        _frames(q / video / "input", ["00000", "00001", "00002"], base, ".jpg")
        _frames(q / video / "GT", ["00000", "00001", "00002"], base + 100, ".jpg")
    return q


def test_dvd_splits_and_roots(tmp_path):
    q = _dvd(tmp_path)
    assert _names(find_sequences(q, "dvd", "test")) == ["720p_240fps_2", "IMG_0003"]
    assert _names(find_sequences(q, "dvd", "train")) == ["IMG_0001"]
    assert len(find_sequences(q, "dvd", "all")) == 3
    # Lenient roots: the dataset folder and its parent give the same answer.
    assert _names(find_sequences(q.parent, "dvd")) == ["720p_240fps_2", "IMG_0003"]
    assert _names(find_sequences(tmp_path, "dvd")) == ["720p_240fps_2", "IMG_0003"]
    (single,) = find_sequences(q / "IMG_0001", "dvd", "test")  # one video folder
    assert single.name == "IMG_0001" and len(single) == 3
    seq = find_sequences(q, "dvd")[1]
    assert [p.name for p in seq.blur] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert [p.parent.name for p in seq.sharp] == ["GT"] * 3


def _gopro(root: Path) -> Path:
    g = root / "GOPRO_Large"
    splits = [("train", ["GOPR0372_07_00"]), ("test", ["GOPR0384_11_00", "GOPR0385_11_01"])]
    for split, seqs in splits:
        for k, seq in enumerate(seqs):
            names = ["000001", "000002"]
            _frames(g / split / seq / "blur", names, 10 * k)
            _frames(g / split / seq / "blur_gamma", names, 10 * k + 100)
            _frames(g / split / seq / "sharp", names, 10 * k + 200)
    return g


def test_gopro_and_gamma(tmp_path):
    g = _gopro(tmp_path)
    for root in (tmp_path, g, g / "test"):
        assert _names(find_sequences(root, "gopro")) == ["GOPR0384_11_00", "GOPR0385_11_01"]
    assert _names(find_sequences(g, "gopro", "train")) == ["GOPR0372_07_00"]
    seq = find_sequences(g, "gopro")[0]
    gamma = find_sequences(g, "gopro_gamma")[0]
    assert seq.blur[0].parent.name == "blur" and gamma.blur[0].parent.name == "blur_gamma"
    assert _value(read_image(gamma.blur[1])) == 101 and _value(read_image(gamma.sharp[1])) == 201


def test_reds(tmp_path):
    for split, base in (("train", 0), ("val", 100)):
        for seq in ("000", "001"):
            _frames(tmp_path / split / f"{split}_blur" / seq, ["00000000", "00000001"], base)
            _frames(tmp_path / split / f"{split}_sharp" / seq, ["00000000", "00000001"], base + 50)
    assert _names(find_sequences(tmp_path, "reds", "train")) == ["000", "001"]
    test = find_sequences(tmp_path, "reds", "test")  # the val split plays "test"
    assert _value(read_image(test[0].blur[0])) == 100
    assert find_sequences(tmp_path / "val", "reds", "val")[1].name == "001"


def test_bsd(tmp_path):
    for split in ("train", "valid", "test"):
        _frames(tmp_path / split / "seq_a" / "Blur" / "RGB", ["00000", "00001"], 5)
        _frames(tmp_path / split / "seq_a" / "Sharp" / "RGB", ["00000", "00001"], 9)
    assert _names(find_sequences(tmp_path, "bsd", "val")) == ["seq_a"]
    (seq,) = find_sequences(tmp_path, "bsd")
    assert seq.blur[0].parts[-3:] == ("Blur", "RGB", "00000.png")
    assert seq.sharp[0].parts[-3:] == ("Sharp", "RGB", "00000.png")


def test_folders_natural_order_and_stem_matching(tmp_path):
    names = ["frame1", "frame2", "frame10"]
    _frames(tmp_path / "blur" / "clip", names, 0, ".jpg")
    _frames(tmp_path / "sharp" / "clip", names, 50, ".png")  # matched by stem
    (seq,) = find_sequences(tmp_path, "folders")
    assert [p.name for p in seq.blur] == ["frame1.jpg", "frame2.jpg", "frame10.jpg"]
    assert [p.name for p in seq.sharp] == ["frame1.png", "frame2.png", "frame10.png"]
    flat = tmp_path / "flat"
    _frames(flat / "blur", ["a"], 0)
    _frames(flat / "sharp", ["a"], 0)
    assert _names(find_sequences(flat, "folders")) == ["flat"]


def test_reader_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        find_sequences(tmp_path / "missing", "gopro")
    with pytest.raises(UserError, match="layout"):
        find_sequences(tmp_path, "kitti")
    with pytest.raises(UserError, match="split"):
        find_sequences(tmp_path, "gopro", "validation")
    with pytest.raises(UserError, match="no test sequences"):
        find_sequences(tmp_path, "gopro")  # empty folder
    seq = tmp_path / "test" / "s1"
    _frames(seq / "blur", ["000001", "000002"], 0)
    _frames(seq / "sharp", ["000001"], 0)
    with pytest.raises(UserError, match=r"000002\.png"):
        find_sequences(tmp_path, "gopro")
    (tmp_path / "f" / "blur" / "clip").mkdir(parents=True)
    _frames(tmp_path / "f" / "blur" / "clip", ["x"], 0)
    (tmp_path / "f" / "sharp").mkdir()
    with pytest.raises(UserError, match="missing sharp folder"):
        find_sequences(tmp_path / "f", "folders")


def _paired_tree(root: Path) -> None:
    _frames(root / "blur" / "long", ["0", "1", "2"], 10)
    _frames(root / "sharp" / "long", ["0", "1", "2"], 110)
    _frames(root / "blur" / "one", ["0"], 60)
    _frames(root / "sharp" / "one", ["0"], 160)


def test_paired_frames_pairs(tmp_path):
    _paired_tree(tmp_path)
    ds = PairedFrames(tmp_path, "folders")
    assert len(ds) == 4
    got = [(d["sequence"], d["index"], _value(d["frame_t"]), _value(d["frame_next"]),
            _value(d["sharp_t"]))
           for d in ds]
    assert got == [
        ("long", 0, 10, 11, 110),
        ("long", 1, 11, 12, 111),
        ("long", 2, 12, 11, 112),  # last frame pairs with its predecessor
        ("one", 0, 60, 60, 160),  # one-frame sequence pairs with itself
    ]
    assert ds[0]["name"] == "0.png" and ds[0]["frame_t"].shape == (3, 4, 6)
    assert "frame_prev" not in ds[0]


def test_paired_frames_three_and_filter(tmp_path):
    _paired_tree(tmp_path)
    ds = PairedFrames(tmp_path, "folders", frames=3, sequences=["long"])
    assert len(ds) == 3
    assert [_value(d["frame_prev"]) for d in ds] == [11, 10, 11]  # first frame uses t+1
    with pytest.raises(UserError, match="unknown sequence"):
        PairedFrames(tmp_path, "folders", sequences=["nope"])
    with pytest.raises(UserError, match="frames"):
        PairedFrames(tmp_path, "folders", frames=4)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)
    batch = next(iter(loader))
    assert batch["frame_t"].shape == (2, 3, 4, 6) and batch["index"].tolist() == [0, 1]


def test_paired_frames_size_mismatch(tmp_path):
    _paired_tree(tmp_path)
    write_image(tmp_path / "sharp" / "long" / "1.png", _frame(0, size=(5, 6)))
    ds = PairedFrames(tmp_path, "folders")
    ds[0]
    with pytest.raises(UserError, match=r"1\.png"):
        ds[1]
