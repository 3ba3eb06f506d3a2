"""Video files: round trips, timestamps, rotation, audio muxing, and user errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from flowdeblur.errors import UserError
from flowdeblur.media import (
    FrameSource,
    VideoReader,
    VideoWriter,
    is_video_path,
    rotate_for_display,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _smooth_frames(n: int, h: int, w: int) -> list[torch.Tensor]:
    """Smooth, moving gradients: lossy codecs reproduce them closely."""
    ys = torch.linspace(0, 1, h).view(1, h, 1)
    xs = torch.linspace(0, 1, w).view(1, 1, w)
    out = []
    for i in range(n):
        phase = i / n
        r = 0.5 + 0.4 * torch.sin(6.28 * (xs + phase)) + 0 * ys
        g = 0.3 + 0.5 * ys + 0 * xs
        b = 0.2 + 0.6 * phase + 0.1 * xs * ys
        out.append(torch.cat([r, g, b]).clamp(0, 1))
    return out


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_rotate_for_display():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert rotate_for_display(x, 90).tolist() == [[3.0, 6.0], [2.0, 5.0], [1.0, 4.0]]
    assert torch.equal(rotate_for_display(x, 270), rotate_for_display(x, -90))
    assert torch.equal(rotate_for_display(x, 0), x)


def test_video_round_trip_fps_size_count(tmp_path):
    frames = _smooth_frames(10, 26, 34)
    fps = Fraction(30000, 1001)
    path = tmp_path / "v.mp4"
    with VideoWriter(path, fps=fps, width=34, height=26, crf=10) as w:
        for f in frames:
            w.write(f)
    assert not w.padded
    assert _no_temp_files(tmp_path)
    with VideoReader(path) as r:
        assert r.info.fps == fps
        assert (r.info.height, r.info.width) == (26, 34)
        assert r.info.num_frames == 10 and r.info.rotation == 0 and not r.info.has_audio
        got = list(r.iterate_with_pts())
        again = list(r)  # a second pass starts over
    assert len(got) == 10 and len(again) == 10
    seconds = [float(p * r.info.time_base) for _, p in got]
    assert np.allclose(np.diff(seconds), 1001 / 30000, atol=1e-4)
    for (frame, _), ref in zip(got, frames, strict=True):
        assert frame.shape == (3, 26, 34) and frame.dtype == torch.float32
        assert (frame - ref).abs().mean() < 0.02  # lossy H.264 of a smooth image
    assert torch.equal(again[3], got[3][0])


def test_odd_size_is_padded_for_yuv420(tmp_path):
    frames = _smooth_frames(3, 27, 35)
    with VideoWriter(tmp_path / "odd.mp4", fps=25, width=35, height=27) as w:
        for f in frames:
            w.write(f)
    assert w.padded and (w.output_height, w.output_width) == (28, 36)
    with VideoReader(tmp_path / "odd.mp4") as r:
        assert (r.info.height, r.info.width) == (28, 36)
        first = next(iter(r))
    assert (first[:, :27, :35] - frames[0]).abs().mean() < 0.02
    # The added row repeats the last real row.
    assert (first[:, 27] - first[:, 26]).abs().mean() < 0.02


@pytest.mark.parametrize(
    ("name", "codec", "crf"), [("l.mkv", "ffv1", 18), ("l.mp4", "libx264rgb", 0)]
)
def test_lossless_keeps_odd_size_and_values(tmp_path, name, codec, crf):
    g = torch.Generator().manual_seed(1)
    frames = [torch.randint(0, 256, (3, 27, 35), generator=g).float() / 255 for _ in range(4)]
    with VideoWriter(tmp_path / name, fps=24, width=35, height=27, codec=codec, crf=crf) as w:
        for f in frames:
            w.write(f)
    assert not w.padded
    src = FrameSource(tmp_path / name)
    assert src.kind == "video" and len(src) == 4 and src.names is None
    out = [frame for _, _, frame in src]
    assert all(torch.equal(a, b) for a, b in zip(out, frames, strict=True))


def test_pts_pass_through(tmp_path):
    pts = [0, 1001, 2002, 3503, 4004, 6006]
    tb = Fraction(1, 30000)
    with VideoWriter(tmp_path / "vfr.mp4", fps=Fraction(30000, 1001), width=16, height=16,
                     time_base=tb) as w:
        for p in pts:
            w.write(torch.full((3, 16, 16), 0.5), pts=p)
        with pytest.raises(ValueError, match="increase"):
            w.write(torch.full((3, 16, 16), 0.5), pts=10)
    with VideoReader(tmp_path / "vfr.mp4") as r:
        seconds = [p * r.info.time_base for _, p in r.iterate_with_pts()]
    assert seconds == [Fraction(p) * tb for p in pts]


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotation_metadata_round_trip(tmp_path, rotation):
    with VideoWriter(tmp_path / "r.mp4", fps=25, width=16, height=8, rotation=rotation) as w:
        for _ in range(2):
            w.write(torch.rand(3, 8, 16))
    with VideoReader(tmp_path / "r.mp4") as r:
        assert r.info.rotation == rotation
        assert next(iter(r)).shape == (3, 8, 16)  # stored unrotated


def _sine_audio(path: Path, codec: str, seconds: float = 0.5, rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        # PyAV resamples to the encoder's sample format itself.
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for p in stream.encode(frame):
            out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


def _audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_audio_is_copied(tmp_path):
    _sine_audio(tmp_path / "sound.m4a", "aac")  # 0.5 s
    with VideoWriter(tmp_path / "with_audio.mp4", fps=25, width=16, height=16,
                     audio_from=tmp_path / "sound.m4a") as w:
        for i in range(15):  # 0.6 s: longer than the audio, which is kept whole
            w.write(torch.full((3, 16, 16), i / 15))
    with VideoReader(tmp_path / "with_audio.mp4") as r:
        assert r.info.has_audio and len(list(r)) == 15
    source = _audio_payloads(tmp_path / "sound.m4a")
    assert len(source) > 5 and _audio_payloads(tmp_path / "with_audio.mp4") == source


def test_audio_is_trimmed_to_a_shorter_video(tmp_path):
    _sine_audio(tmp_path / "sound.m4a", "aac")
    with VideoWriter(tmp_path / "short.mkv", fps=25, width=16, height=16,
                     audio_from=tmp_path / "sound.m4a") as w:
        for _ in range(5):  # 0.2 s of video
            w.write(torch.zeros(3, 16, 16))
    source = _audio_payloads(tmp_path / "sound.m4a")
    copied = _audio_payloads(tmp_path / "short.mkv")
    assert 0 < len(copied) < len(source) - 3 and copied == source[: len(copied)]


def test_audio_reencoded_when_container_cannot_hold_it(tmp_path):
    _sine_audio(tmp_path / "sound.mkv", "libmp3lame")
    with VideoWriter(tmp_path / "o.m4v", fps=25, width=16, height=16,
                     audio_from=tmp_path / "sound.mkv") as w:  # .m4v holds AAC only
        for _ in range(5):
            w.write(torch.zeros(3, 16, 16))
    with av.open(str(tmp_path / "o.m4v")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        samples = sum(f.samples for f in c.decode(audio=0))
    assert samples >= 0.5 * 22050


def test_writer_exception_leaves_nothing(tmp_path):
    _sine_audio(tmp_path / "sound.m4a", "aac")
    with pytest.raises(RuntimeError), VideoWriter(
        tmp_path / "x.mp4", fps=25, width=16, height=16, audio_from=tmp_path / "sound.m4a"
    ) as w:
        w.write(torch.zeros(3, 16, 16))
        raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sound.m4a"]


def test_writer_errors(tmp_path):
    with pytest.raises(UserError, match="encoder"):
        VideoWriter(tmp_path / "a.mp4", fps=25, width=8, height=8, codec="no-such-codec")
    with pytest.raises(UserError, match="pixel format"):
        VideoWriter(tmp_path / "a.mp4", fps=25, width=8, height=8, pix_fmt="rgb24")
    with pytest.raises(UserError, match="audio source"):
        VideoWriter(tmp_path / "a.mp4", fps=25, width=8, height=8, audio_from=tmp_path / "no")
    with pytest.raises(ValueError, match="expects frames"), VideoWriter(
        tmp_path / "a.mp4", fps=25, width=8, height=8
    ) as w:
        w.write(torch.zeros(3, 8, 9))
    with pytest.raises(UserError, match="no frames"), VideoWriter(
        tmp_path / "a.mp4", fps=25, width=8, height=8
    ):
        pass
    assert list(tmp_path.iterdir()) == []


def test_corrupt_or_wrong_video_files(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(_rng().integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="random.mp4"):
        VideoReader(bad)
    with pytest.raises(UserError, match="random.mp4"):
        FrameSource(bad)
    with pytest.raises(UserError, match="not found"):
        VideoReader(tmp_path / "missing.mp4")
    _sine_audio(tmp_path / "sound.mkv", "aac")
    with pytest.raises(UserError, match="no video stream"):
        FrameSource(tmp_path / "sound.mkv")
    assert is_video_path("A.MP4") and not is_video_path("a.png")
