"""Mean colour shift of a video round trip through flowdeblur's reader and writer.

Each clip's first frames are decoded, written by :class:`flowdeblur.media.VideoWriter` (H.264,
crf 0: lossless luma and chroma, so only the colour conversions remain) and decoded again; the
mean output-minus-input per RGB channel is printed in 1/255 units. A generated photograph clip
(scikit-image's astronaut, untagged and BT.709-tagged H.264) is always included; give video
files to add them (e.g. the clips references/real_clips.py unpacks).

``--deblur`` prints instead the round-trip table of whole ``deblur`` runs with an identity
network (a test double returning frame t): generated clips (8-bit, 10-bit BT.709 and BT.2020
PQ, odd size, rotation, variable frame rate, audio and subtitles) through ``deblur_video`` at
the default rate control (.mp4) and with ``lossless=True`` (.mkv); per case the stored codec,
pixel format, colour tags and streams, the largest mean signed shift of a channel and the mean
absolute error, in units of the input's code step (1/255 or 1/1023).

    python benchmarks/colour_round_trip.py [VIDEO ...] [--frames 5]
    python benchmarks/colour_round_trip.py --deblur
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from skimage import data

from flowdeblur.inference import deblur_video
from flowdeblur.media import ColourTags, VideoReader, VideoWriter
from flowdeblur.models import FlowDeblurOutput


def round_trip_shift(src: Path, frames: int, work: Path) -> list[float]:
    """Per-channel mean shift (1/255) of ``src``'s first ``frames`` frames after a round trip."""
    with VideoReader(src) as reader:
        before = []
        for frame in reader:
            before.append(frame)
            if len(before) == frames:
                break
    before = torch.stack(before)
    out = work / "round_trip.mp4"
    with VideoWriter(out, fps=10, width=before.shape[-1], height=before.shape[-2],
                     crf=0) as writer:
        for frame in before:
            writer.write(frame)
    with VideoReader(out) as reader:
        after = torch.stack(list(reader))
    return ((after - before).mean(dim=(0, 2, 3)) * 255).tolist()


def photo_clip(path: Path, *, tagged: bool) -> Path:
    """Five shifted crops of a photograph as H.264, BT.709-tagged or untagged."""
    photo = data.astronaut()[100:292, 100:356]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = photo.shape[1], photo.shape[0], "yuv420p"
        stream.options = {"crf": "10"}
        if tagged:
            stream.codec_context.colorspace = stream.codec_context.color_range = 1
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.roll(photo, i, 1).copy(), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709" if tagged else None)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


class Identity(torch.nn.Module):
    """A 'deblurrer' that returns frame t unchanged: isolates what the file path does."""

    in_frames = 2
    variant = "identity"
    flownet = None

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, frame_t, frame_next=None, frame_prev=None):
        return FlowDeblurOutput(image=frame_t.clone())


def _photo_frames(n: int, height: int, width: int) -> list[torch.Tensor]:
    photo = torch.from_numpy(data.astronaut()[64:64 + height, 96:96 + width].copy())
    photo = photo.permute(2, 0, 1).float() / 255
    return [torch.roll(photo, 3 * i, -1) for i in range(n)]


def _add_subtitle_and_audio(path: Path, frames: list[torch.Tensor]) -> None:
    """An H.264 .mp4 with AAC audio and one mov_text subtitle."""
    rate = 22050
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.height, video.width = frames[0].shape[-2:]
        video.pix_fmt, video.options = "yuv420p", {"crf": "10"}
        cc = video.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = cc.color_range = 1
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        subtitle = out.add_mux_stream("mov_text")
        t = np.arange(rate * len(frames) // 10) / rate
        tone = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t))
                                          .astype(np.float32)[None], format="fltp",
                                          layout="mono")
        tone.sample_rate, tone.pts = rate, 0
        for packet in [*audio.encode(tone), *audio.encode(None)]:
            out.mux(packet)
        packet = av.Packet(struct.pack(">H", 5) + b"hello")
        packet.stream, packet.pts, packet.dts, packet.duration = subtitle, 0, 0, 500
        packet.time_base = Fraction(1, 1000)
        out.mux(packet)
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(
                (frame.permute(1, 2, 0) * 255).round().byte().numpy(), format="rgb24")
            picture = picture.reformat(format="yuv420p", dst_colorspace="ITU709",
                                       dst_color_range="MPEG")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode())


def deblur_cases(work: Path) -> dict[str, Path]:
    """The generated input clips of the ``--deblur`` table."""
    frames = _photo_frames(8, 192, 256)
    odd = _photo_frames(8, 191, 255)
    bt709 = ColourTags(1, 1, 1, 1)
    pq = ColourTags(9, 16, 9, 1)

    def clip(name: str, pictures, **kwargs) -> Path:
        kwargs.setdefault("crf", 10)
        path = work / name
        with VideoWriter(path, fps=kwargs.pop("fps", 10), width=pictures[0].shape[-1],
                         height=pictures[0].shape[-2], **kwargs) as writer:
            for i, picture in enumerate(pictures):
                writer.write(picture, pts=kwargs.get("time_base") and
                             [0, 1001, 2002, 4004, 5005, 7007, 8008, 9009][i])
        return path

    av_in = work / "av.mp4"
    _add_subtitle_and_audio(av_in, frames)
    return {
        "8-bit H.264 BT.709": clip("h264.mp4", frames, colour=bt709),
        "10-bit HEVC BT.709": clip("hevc10.mp4", frames, codec="libx265",
                                   pix_fmt="yuv420p10le", colour=bt709),
        "10-bit HEVC BT.2020 PQ": clip("pq.mp4", frames, codec="libx265",
                                       pix_fmt="yuv420p10le", colour=pq),
        "odd size 255x191, lossless source": clip("odd.mkv", odd, codec="ffv1"),
        "rotation 90": clip("rot.mp4", frames, rotation=90),
        "VFR (pts 0,1,2,4,5,7,8,9 x 1001/30000 s)": clip(
            "vfr.mp4", frames, fps=Fraction(30000, 1001), time_base=Fraction(1, 30000)),
        "8-bit with AAC audio and mov_text subtitle": av_in,
    }


def _describe(path: Path) -> tuple[str, str, str]:
    """(codec pix_fmt, colour tags, stream list) of a file."""
    with VideoReader(path) as reader:
        info = reader.info
    with av.open(str(path)) as container:
        streams = [s.codec_context.name if s.codec_context is not None else s.type
                   for s in container.streams if int(s.discard) < 48]
    return f"{info.codec} {info.pix_fmt}", info.colour.describe(), ", ".join(streams)


def _errors(src: Path, out: Path) -> tuple[float, float, int]:
    """(largest mean signed shift of a channel, mean absolute error) in code steps of the
    input, over the input's frame area, and the step (255 or 1023)."""
    with VideoReader(src) as reader:
        before = torch.stack(list(reader))
        step = 2 ** reader.info.bits - 1
    with VideoReader(out) as reader:
        after = torch.stack(list(reader))[..., : before.shape[-2], : before.shape[-1]]
    diff = (after - before) * step
    return diff.mean(dim=(0, 2, 3)).abs().max().item(), diff.abs().mean().item(), step


def deblur_table(work: Path) -> None:
    print("| case | output | stored | colour tags | streams | shift | abs. error | unit |\n"
          "|---|---|---|---|---|--:|--:|---|")
    notes: list[str] = []
    for name, src in deblur_cases(work).items():
        stored, colour, streams = _describe(src)
        print(f"| {name} | input | {stored} | {colour} | {streams} | | | |")
        for label, kwargs, suffix in (("default", {}, ".mp4"),
                                      ("--lossless", {"lossless": True}, ".mkv")):
            out = work / f"out-{src.stem}{suffix}"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                deblur_video(src, out, model=Identity(), device="cpu", precision="fp32",
                             progress=False, scene_cuts=False, **kwargs)
            notes += [f"{name}, {label}: {w.message}".replace(str(work) + "/", "")
                      for w in caught]
            stored, colour, streams = _describe(out)
            shift, error, step = _errors(src, out)
            print(f"| | {label} {suffix} | {stored} | {colour} | {streams} | {shift:.2f} | "
                  f"{error:.2f} | 1/{step} |")
    print("\nWarnings:\n" + "\n".join(f"- {note}" for note in notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--deblur", action="store_true",
                        help="the round-trip table of deblur runs with an identity network")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.deblur:
            deblur_table(work)
            return
        clips = {"astronaut, untagged": photo_clip(work / "untagged.mp4", tagged=False),
                 "astronaut, BT.709 tagged": photo_clip(work / "tagged.mp4", tagged=True)}
        clips.update({path.name: path for path in args.videos})
        print("| source | mean shift (/255) | R | G | B |\n|---|--:|--:|--:|--:|")
        for name, path in clips.items():
            shift = round_trip_shift(path, args.frames, work)
            print(f"| {name} | {sum(shift) / 3:+.2f} | "
                  + " | ".join(f"{s:+.2f}" for s in shift) + " |")


if __name__ == "__main__":
    main()
