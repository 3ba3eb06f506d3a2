"""Image and video I/O: formats, round trips, metadata, and user errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from flowdeblur.errors import UserError
from flowdeblur.media.video import (
    FrameSource,
    VideoReader,
    VideoWriter,
    is_video_path,
    list_images,
    natural_key,
    read_image,
    rotate_for_display,
    write_image,
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


# ------------------------------------------------------------------------------------ images


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
    assert _no_temp_files(tmp_path)


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
    assert _no_temp_files(tmp_path / "out")


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


def test_rotate_for_display():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert rotate_for_display(x, 90).tolist() == [[3.0, 6.0], [2.0, 5.0], [1.0, 4.0]]
    assert torch.equal(rotate_for_display(x, 270), rotate_for_display(x, -90))
    assert torch.equal(rotate_for_display(x, 0), x)


# ------------------------------------------------------------------------------------ video


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


# ------------------------------------------------------------------------------ FrameSource


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
