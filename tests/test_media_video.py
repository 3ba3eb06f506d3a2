"""Video files: round trips, timestamps, rotation, audio muxing, and user errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import no_temp_files

from flowdeblur.errors import UserError
from flowdeblur.media import (
    ColourTags,
    FrameSource,
    VideoReader,
    VideoWriter,
    is_video_path,
    rotate_for_display,
)
from flowdeblur.media.pixels import rgb_to_yuv, yuv_to_rgb


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
    assert no_temp_files(tmp_path)
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


# ------------------------------------------------------------------ high bit depth and colour

PATCHES = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (128, 128, 128)]


def _patch_picture(size: int = 32) -> np.ndarray:
    """Four flat patches (PATCHES, 8-bit levels) as a (size, size, 3) uint16 rgb48 picture."""
    img = np.zeros((size, size, 3), np.uint16)
    half = size // 2
    for i, colour in enumerate(PATCHES):
        r, c = divmod(i, 2)
        img[r * half:(r + 1) * half, c * half:(c + 1) * half] = np.array(colour) * 257
    return img


def _patch_colours(frame: torch.Tensor, size: int = 32) -> np.ndarray:
    """The colour (8-bit levels) at the centre of each of the four patches."""
    q = size // 4
    return np.array([(frame[:, y, x] * 255).tolist() for y, x in
                     [(q, q), (q, 3 * q), (3 * q, q), (3 * q, 3 * q)]])


def _swscale_clip(path: Path, pix_fmt: str, matrix: str, colorspace: int, full: bool) -> Path:
    """A lossless FFV1 clip of the four patches, converted to ``pix_fmt`` by PyAV (swscale)
    and tagged with ``colorspace`` and the range."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = pix_fmt
        stream.codec_context.colorspace = colorspace
        stream.codec_context.color_range = 2 if full else 1
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(_patch_picture(), format="rgb48le").reformat(
                format=pix_fmt, dst_colorspace=matrix, dst_color_range="JPEG" if full else "MPEG",
                interpolation=av.video.reformatter.Interpolation.ACCURATE_RND)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize(("pix_fmt", "matrix", "colorspace", "full"), [
    ("yuv420p", "ITU709", 1, False),
    ("yuv420p10le", "ITU709", 1, False),
    ("yuv422p12le", "BT2020", 9, True),
    ("yuv444p10le", "ITU601", 6, False),
])
def test_high_bit_depth_video_decodes_the_right_colours(tmp_path, pix_fmt, matrix, colorspace,
                                                        full):
    clip = _swscale_clip(tmp_path / "p.mkv", pix_fmt, matrix, colorspace, full)
    with VideoReader(clip) as reader:
        frame = next(iter(reader))
    # swscale's own high-bit-depth encoding is up to about 1/255 bright; the fault this guards
    # against read red (200,30,30) as (199,0,87).
    assert np.abs(_patch_colours(frame) - np.array(PATCHES)).max() < 1.5


def _yuv_planes(bits: int, kr: float, kb: float, full: bool) -> tuple[np.ndarray, ...]:
    """4:2:0 code values of the four patches, computed here from the Y'CbCr definition."""
    rgb = _patch_picture()[::2, ::2].astype(float) / 65535  # flat patches: one value per block
    y = kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    cb, cr = (rgb[..., 2] - y) / (2 - 2 * kb), (rgb[..., 0] - y) / (2 - 2 * kr)
    if full:
        top = 2**bits - 1
        planes = (y * top, cb * top + 2 ** (bits - 1), cr * top + 2 ** (bits - 1))
    else:
        s = 2 ** (bits - 8)
        planes = ((16 + 219 * y) * s, (128 + 224 * cb) * s, (128 + 224 * cr) * s)
    luma = np.repeat(np.repeat(planes[0], 2, 0), 2, 1)
    return tuple(np.round(p).astype(np.uint16) for p in (luma, planes[1], planes[2]))


def _planar_frame(planes: tuple[np.ndarray, ...], pix_fmt: str) -> av.VideoFrame:
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], pix_fmt)
    for plane, values in zip(frame.planes, planes, strict=True):
        rows = np.zeros((plane.height, plane.line_size // 2), np.uint16)
        rows[:, : plane.width] = values
        plane.update(rows.tobytes())
    return frame


@pytest.mark.parametrize(("bits", "colorspace", "weights", "full"), [
    (10, 1, (0.2126, 0.0722), False), (12, 9, (0.2627, 0.0593), False),
    (10, 5, (0.299, 0.114), True)])
def test_high_bit_depth_decoding_matches_the_definition(tmp_path, bits, colorspace, weights,
                                                        full):
    pix_fmt = f"yuv420p{bits}le"
    with av.open(str(tmp_path / "x.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = pix_fmt
        stream.codec_context.colorspace = colorspace
        stream.codec_context.color_range = 2 if full else 1
        frame = _planar_frame(_yuv_planes(bits, *weights, full), pix_fmt)
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with VideoReader(tmp_path / "x.mkv") as reader:
        got = _patch_colours(next(iter(reader)))
    # Only the code values' own rounding remains: half a code step through the matrix.
    assert np.abs(got - np.array(PATCHES)).max() < 1.2 * 255 / 2**bits


def test_full_range_yuv_is_written_without_a_shift(tmp_path):
    """swscale's full-range RGB -> YUV puts chroma half a code low (-0.8/255 in red and blue
    after a round trip); the writer converts full range itself."""
    frames = _smooth_frames(2, 32, 48)
    with VideoWriter(tmp_path / "f.mkv", fps=10, width=48, height=32, codec="ffv1",
                     pix_fmt="yuv444p", colour=ColourTags(1, 1, 1, 2)) as w:
        for f in frames:
            w.write(f)
    with VideoReader(tmp_path / "f.mkv") as r:
        assert r.info.colour == ColourTags(1, 1, 1, 2)
        got = torch.stack(list(r))
    shift = (got - torch.stack(frames)).mean(dim=(0, 2, 3)) * 255
    assert shift.abs().max() < 0.15, shift


@pytest.mark.parametrize("shift", [(0, 0), (1, 0), (1, 1)])
def test_yuv_conversions_invert_each_other(shift):
    image = torch.stack(_smooth_frames(1, 30, 42)[0:1])[0]
    planes = rgb_to_yuv(image, bits=16, matrix=9, full_range=False, shift=shift)
    back = yuv_to_rgb(planes, bits=16, matrix=9, full_range=False, shift=shift)
    error = back - image
    if shift == (0, 0):  # 16-bit codes without subsampling: exact to the code step
        assert error.abs().max() < 5e-5
    else:  # subsampled chroma smooths the picture's colour a little, without a bias
        assert error.mean(dim=(1, 2)).abs().max() < 1e-3 and error.abs().mean() < 4e-3
