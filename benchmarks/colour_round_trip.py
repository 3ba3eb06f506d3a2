"""Mean colour shift of a video round trip through flowdeblur's reader and writer.

Each clip's first frames are decoded, written by :class:`flowdeblur.media.VideoWriter` (H.264,
crf 0: lossless luma and chroma, so only the colour conversions remain) and decoded again; the
mean output-minus-input per RGB channel is printed in 1/255 units. A generated photograph clip
(scikit-image's astronaut, untagged and BT.709-tagged H.264) is always included; give video
files to add them (e.g. the clips benchmarks/real_clips.py unpacks).

    python benchmarks/colour_round_trip.py [VIDEO ...] [--frames 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import numpy as np
import torch
from skimage import data

from flowdeblur.media import VideoReader, VideoWriter


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
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
