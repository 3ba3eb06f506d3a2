"""`flowdeblur deblur INPUT... -o OUTPUT`: deblur a video, a folder of frames or image files.

    flowdeblur deblur clip.mp4 -o sharp.mp4
    flowdeblur deblur frames/ -o sharp_frames/ --tile 512 --precision bf16
    flowdeblur deblur a.png b.png c.png -o out/ --save-flow flow/
    flowdeblur deblur clip.mp4 -o sharp.mp4 --ensemble 8     # sharper, 8x slower
    flowdeblur deblur clip.mp4 -o sharp.mp4 --adapt 200      # weights fine-tuned on the clip

All the work is in :func:`flowdeblur.inference.deblur_video`; this module parses and reports.
"""

from __future__ import annotations

import argparse

from ..inference import deblur_video
from ..training.adapt import ClipAdaptation
from .common import (
    add_adapt_options,
    add_deblur_options,
    check_adapt_options,
    check_deblur_options,
    deblur_options,
    load_exported,
    load_model,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deblur",
        help="deblur a video, a folder of frames or a list of images",
        description=(
            "Deblur every frame of INPUT with the flow-guided network (frame t is paired with "
            "t+1, the last frame with t-1). OUTPUT ending in a video extension (.mp4, .mkv, "
            ".mov, .avi, ...) is written as H.264 keeping the input's frame count, timestamps, "
            "rotation and audio; an image name (.png, ...) writes one image (one-frame input); "
            "anything else is a folder of PNGs, one per input frame. Outputs appear only once "
            "complete."
        ),
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="a video file, a folder of frames, or image files (in order)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="video name or folder")
    out_opts = add_deblur_options(p, "OUTPUT (and DIR)")
    add_adapt_options(p.add_argument_group("test-time adaptation"))
    out_opts.add_argument(
        "--save-flow", metavar="DIR",
        help="also write each frame's estimated flow, colour-coded (Middlebury wheel), to DIR",
    )
    p.set_defaults(run=run)


def speed(frames_per_second: float) -> str:
    """A rate as people read it: frames per second, or seconds per frame when under one."""
    if frames_per_second >= 1 or frames_per_second == 0:
        return f"{frames_per_second:.2f} frames/s"
    return f"{1 / frames_per_second:.2f} s/frame"


def clip_adaptation(args: argparse.Namespace) -> ClipAdaptation | None:
    """What ``--adapt`` runs on the input before deblurring it; None when it is off."""
    if not args.adapt:
        return None
    return ClipAdaptation(args.adapt, crop=args.adapt_crop, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    # Resolved before the weights load, so a wrong option costs nothing.
    check_adapt_options(args)
    check_deblur_options(args)
    model = (load_model(args.weights, args.precision) if args.backend == "torch"
             else load_exported(args))
    result = deblur_video(
        args.inputs if len(args.inputs) > 1 else args.inputs[0],
        args.output,
        model=model,
        save_flow=args.save_flow,
        progress=not args.no_progress,
        adapt=clip_adaptation(args),
        **deblur_options(args),
    )
    if result.skipped:
        print(f"{result.output} is complete and current (--resume): nothing to do")
        return 0
    what = {"video": "video", "images": "folder", "image": "image"}[result.kind]
    print(
        f"wrote {result.num_frames} frame{'s' * (result.num_frames != 1)} to {what} "
        f"{result.output} ({speed(result.frames_per_second)}, "
        f"{result.runtime if args.backend == 'torch' else model.describe()})"
    )
    if result.reused or args.resume:
        print(f"resumed: {result.reused} frames from finished chunks, {result.deblurred} "
              f"deblurred, {result.recomputed} recomputed (begun by a run that did not finish)")
    if args.save_flow:
        print(f"flow pictures in {args.save_flow}")
    return 0
