"""FrameSource: a video, a folder or a list of images read as one stream of frames."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
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


def _h264_clip(path: Path, frames: int, options: dict[str, str] | None = None) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = options or {}
        for _ in range(frames):
            picture = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_truncated_mkv_warns_from_its_stated_duration(tmp_path):
    full = _h264_clip(tmp_path / "full.mkv", 60)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    src = FrameSource(cut)
    assert src.info.num_frames is None and src.info.expected_frames == 60  # 2.5 s x 24
    with pytest.warns(UserWarning, match=r"duration of 2.50 s \(about 60 frames") as caught:
        decoded = len(list(src))
    assert 0 < decoded < 57 and f"only {decoded} could be decoded" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the whole file: no warning
        assert len(list(FrameSource(full))) == 60


def test_interlaced_video_is_detected_and_warned(tmp_path):
    clip = _h264_clip(tmp_path / "i.mp4", 2, {"flags": "+ildct+ilme"})
    with pytest.warns(UserWarning, match="interlaced"):
        src = FrameSource(clip)
    assert src.info.interlaced
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not FrameSource(_h264_clip(tmp_path / "p.mp4", 2)).info.interlaced
