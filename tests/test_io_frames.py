"""FrameSource: a video, a folder or a list of images read as one stream of frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from flowdeblur.errors import UserError
from flowdeblur.media import FrameSource, VideoWriter, write_image


def _write_frames(folder: Path, n: int, size=(6, 8), names=None) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    frames = []
    for i in range(n):
        f = torch.randint(0, 256, (3, *size), generator=g).float() / 255
        write_image(folder / (names[i] if names else f"f{i}.png"), f)
        frames.append(f)
    return frames


def test_frame_source_folder_and_list(tmp_path):
    names = ["img1.png", "img2.png", "img10.png"]
    frames = _write_frames(tmp_path, 3, names=names)
    src = FrameSource(tmp_path)
    assert src.kind == "images" and src.info is None and len(src) == 3
    assert src.names == names and (src.height, src.width) == (6, 8)
    items = list(src)
    assert [(i, n) for i, n, _ in items] == [(0, "img1.png"), (1, "img2.png"), (2, "img10.png")]
    assert all(torch.equal(f, ref) for (_, _, f), ref in zip(items, frames, strict=True))
    listed = FrameSource([tmp_path / "img10.png", str(tmp_path / "img1.png")])
    assert listed.names == ["img10.png", "img1.png"]
    assert torch.equal(next(iter(listed))[2], frames[2])
    assert FrameSource(tmp_path / "img2.png").names == ["img2.png"]


def test_frame_source_video(tmp_path):
    with VideoWriter(tmp_path / "v.mkv", fps=Fraction(25), width=8, height=6, codec="ffv1") as w:
        for i in range(5):
            w.write(torch.full((3, 6, 8), i / 8))
    src = FrameSource(str(tmp_path / "v.mkv"))
    assert src.info.num_frames is None and len(src) == 5  # MKV states no count: demuxed
    assert src.fps == 25
    out = list(src.iterate_with_pts())
    assert [o[0] for o in out] == list(range(5)) and out[0][1] is None
    assert torch.allclose(out[4][2], torch.full((3, 6, 8), 4 / 8), atol=0.5 / 255)


def test_frame_source_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        FrameSource(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        FrameSource(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="unsupported input"):
        FrameSource(tmp_path / "notes.txt")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write_frames(tmp_path / "a", 1)
    _write_frames(tmp_path / "b", 1)
    with pytest.raises(UserError, match="share the file name"):
        FrameSource([tmp_path / "a" / "f0.png", tmp_path / "b" / "f0.png"])
    mixed = tmp_path / "mixed"
    _write_frames(mixed, 2)
    write_image(mixed / "f2.png", torch.zeros(3, 7, 8))
    src = FrameSource(mixed)
    with pytest.raises(UserError, match="f2.png"):
        list(src)
