"""Video fidelity through `deblur`: bit depth, colour tags, HDR tags, other streams (audio,
subtitles, timecode, chapters, metadata), with a network that returns frame t unchanged."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import Identity

from flowdeblur.inference import deblur_video
from flowdeblur.media import ColourTags, VideoReader, VideoWriter
from flowdeblur.media.video_writer import choose_encoding

needs_x265 = pytest.mark.skipif("libx265" not in av.codecs_available,
                                reason="this PyAV build has no libx265")


def smooth(n: int, h: int = 48, w: int = 64) -> list[torch.Tensor]:
    ys = torch.linspace(0, 1, h).view(1, h, 1)
    xs = torch.linspace(0, 1, w).view(1, 1, w)
    return [torch.cat([0.5 + 0.4 * torch.sin(6.28 * (xs + i / n)) + 0 * ys,
                       0.3 + 0.5 * ys + 0 * xs, 0.2 + 0.1 * i / n + 0.1 * xs * ys]).clamp(0, 1)
            for i in range(n)]


def write_clip(path: Path, frames, **kwargs) -> Path:
    with VideoWriter(path, fps=10, width=frames[0].shape[-1], height=frames[0].shape[-2],
                     **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def read(path: Path) -> tuple[torch.Tensor, object]:
    with VideoReader(path) as reader:
        return torch.stack(list(reader)), reader.info


def run(src: Path, out: Path, **kwargs) -> None:
    deblur_video(src, out, model=Identity(), device="cpu", precision="fp32", progress=False,
                 scene_cuts=False, **kwargs)


PQ = ColourTags(primaries=9, transfer=16, matrix=9, range=1)


@needs_x265
def test_a_10_bit_hdr_hevc_input_gives_10_bit_hevc_with_its_tags(tmp_path):
    src = write_clip(tmp_path / "pq.mp4", smooth(4), codec="libx265", pix_fmt="yuv420p10le",
                     colour=PQ, crf=4)
    run(src, tmp_path / "out.mp4", crf=4)
    before, _ = read(src)
    after, info = read(tmp_path / "out.mp4")
    assert (info.codec, info.pix_fmt, info.bits) == ("hevc", "yuv420p10le", 10)
    assert info.colour == PQ and info.colour.hdr == "PQ"
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.profile == "Main 10"
    shift = (after - before).mean(dim=(0, 2, 3)) * 1023
    assert shift.abs().max() < 1.5, shift  # lossy at crf 4 on a 64x48 clip


def test_a_12_bit_input_with_lossless_keeps_12_bits_exactly_enough(tmp_path):
    frames = smooth(3)
    src = write_clip(tmp_path / "p12.mkv", frames, codec="ffv1", pix_fmt="yuv444p12le",
                     colour=ColourTags(1, 1, 1, 1))
    run(src, tmp_path / "out.mkv", lossless=True)
    before, _ = read(src)
    after, info = read(tmp_path / "out.mkv")
    assert (info.codec, info.pix_fmt, info.bits) == ("ffv1", "gbrp12le", 12)
    assert (info.colour.primaries, info.colour.transfer, info.colour.matrix) == (1, 1, 0)
    # Only the 12-bit rounding of the RGB output remains (half a step, and float32's own).
    error = (after - before).abs() * 4095
    assert error.max() < 0.51 and error.mean() < 0.3


def test_an_8_bit_input_goes_to_10_bit_h264_in_444_unless_420_is_asked(tmp_path):
    src = write_clip(tmp_path / "p8.mp4", smooth(3), crf=4)
    run(src, tmp_path / "out.mp4")
    _, info = read(tmp_path / "out.mp4")
    assert (info.codec, info.pix_fmt, info.bits) == ("h264", "yuv444p10le", 10)
    assert info.colour == ColourTags(1, 1, 1, 1)
    run(src, tmp_path / "out420.mp4", chroma="420")
    assert read(tmp_path / "out420.mp4")[1].pix_fmt == "yuv420p"


def test_the_default_crf_depends_on_what_is_stored():
    for chroma, pix_fmt, crf in (("444", "yuv444p10le", 0), ("420", "yuv420p", 6)):
        codec, _ = choose_encoding("o.mp4", None, crf=None, lossless=False, chroma=chroma)
        assert (codec["pix_fmt"], codec["crf"]) == (pix_fmt, crf)
        codec, _ = choose_encoding("o.mp4", None, crf=18, lossless=False, chroma=chroma)
        assert codec["crf"] == 18


@pytest.mark.parametrize("colour", [ColourTags(6, 6, 6, 1), ColourTags(9, 18, 9, 2)])
def test_colour_tags_and_matrix_are_kept(tmp_path, colour):
    frames = smooth(3)
    src = write_clip(tmp_path / "c.mkv", frames, codec="ffv1", pix_fmt="yuv444p10le",
                     colour=colour)
    run(src, tmp_path / "out.mkv", crf=0)
    before, _ = read(src)
    after, info = read(tmp_path / "out.mkv")
    assert info.colour == colour
    shift = (after - before).mean(dim=(0, 2, 3)) * 1023
    assert shift.abs().max() < 0.5, shift


def _mux_clip(path: Path, subtitle_codec: str) -> Path:
    """Video, audio, one subtitle, a timecode, a title and two chapters."""
    rate = 22050
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        video.metadata["timecode"] = "01:02:03:04"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        subtitle = out.add_mux_stream(subtitle_codec)
        out.metadata["title"] = "phone clip"
        out.set_chapters([
            {"id": 1, "start": 0, "end": 5, "time_base": Fraction(1, 10),
             "metadata": {"title": "one"}},
            {"id": 2, "start": 5, "end": 10, "time_base": Fraction(1, 10),
             "metadata": {"title": "two"}}])
        samples = (0.3 * np.sin(np.arange(rate) * 2 * np.pi * 440 / rate)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*audio.encode(frame), *audio.encode(None)]:
            out.mux(packet)
        text = b"hello"
        packet = av.Packet(struct.pack(">H", len(text)) + text
                           if subtitle_codec == "mov_text" else text)
        packet.stream, packet.pts, packet.dts, packet.duration = subtitle, 0, 0, 500
        packet.time_base = Fraction(1, 1000)
        out.mux(packet)
        for i in range(10):
            picture = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8),
                                                 format="rgb24")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode())
    return path


def _streams(path: Path) -> dict:
    with av.open(str(path)) as container:
        return {
            "types": sorted(s.type for s in container.streams
                            if s.type != "data" and int(s.discard) < 48),
            "subtitles": [s.codec_context.name for s in container.streams.subtitles],
            "timecode": container.streams.video[0].metadata.get(
                "timecode", container.streams.video[0].metadata.get("TIMECODE")),
            "title": container.metadata.get("title"),
            "chapters": [c["metadata"].get("title") for c in container.chapters()],
        }


@pytest.mark.parametrize(("src_name", "codec", "out_name"), [
    ("in.mp4", "mov_text", "out.mp4"), ("in.mkv", "subrip", "out.mkv"),
    ("in.mov", "mov_text", "out.mov")])
def test_other_streams_tags_and_chapters_are_copied(tmp_path, src_name, codec, out_name):
    src = _mux_clip(tmp_path / src_name, codec)
    run(src, tmp_path / out_name)
    got, want = _streams(tmp_path / out_name), _streams(src)
    assert got["types"] == ["audio", "subtitle", "video"]
    assert got == want


def test_a_subtitle_the_output_cannot_hold_is_dropped_with_a_warning(tmp_path):
    src = _mux_clip(tmp_path / "in.mp4", "mov_text")
    with pytest.warns(UserWarning, match=r"subtitle stream #2 \(mov_text\) of .*in.mp4 is "
                                         r"dropped: \.mkv files cannot hold it"):
        run(src, tmp_path / "out.mkv")
    got, want = _streams(tmp_path / "out.mkv"), _streams(src)
    assert got["types"] == ["audio", "video"] and got["timecode"] == want["timecode"]
    assert got["chapters"] == ["one", "two"] and got["title"] == "phone clip"


def test_a_deep_input_runs_in_fp32_and_gives_h264_high_10_when_asked(tmp_path, monkeypatch):
    from flowdeblur.runtime import device as device_rules

    monkeypatch.setattr(device_rules, "cpu_computes_bf16", lambda: True)  # auto would be bf16
    eight = write_clip(tmp_path / "p8.mkv", smooth(2), codec="ffv1")
    assert "bf16" in deblur_video(eight, tmp_path / "o8.mp4", model=Identity(), device="cpu",
                                  progress=False, scene_cuts=False).runtime
    src = write_clip(tmp_path / "p10.mkv", smooth(3), codec="ffv1", pix_fmt="yuv420p10le")
    result = deblur_video(src, tmp_path / "out.mp4", model=Identity(), device="cpu",
                          progress=False, scene_cuts=False, video_codec="h264")
    assert "fp32" in result.runtime  # "auto" never picks bf16 for a 10-bit input
    _, info = read(tmp_path / "out.mp4")
    assert (info.codec, info.bits) == ("h264", 10)
