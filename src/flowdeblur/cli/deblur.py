"""`flowdeblur deblur INPUT... -o OUTPUT`: deblur a video, a folder of frames or image files.

    flowdeblur deblur clip.mp4 -o sharp.mp4
    flowdeblur deblur frames/ -o sharp_frames/ --tile 512 --precision bf16
    flowdeblur deblur a.png b.png c.png -o out/ --save-flow flow/
    flowdeblur deblur clip.mp4 -o sharp.mp4 --ensemble 8     # sharper, 8x slower

All the work is in :func:`flowdeblur.inference.deblur_video`; this module parses and reports.
"""

from __future__ import annotations

import argparse

from ..inference import deblur_video
from ..inference.ensemble import check_ensemble
from ..media.video_writer import CHROMA_CHOICES, DEFAULT_CHROMA, DEFAULT_CRF
from ..runtime import Runtime
from .common import (
    add_ensemble_option,
    add_progress_option,
    add_runtime_options,
    add_weights_option,
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
    add_weights_option(p)
    run_opts = p.add_argument_group("how to run")
    add_runtime_options(run_opts, auto_precision="bf16 on CUDA and on CPUs with native bf16 "
                        "(AVX512-BF16, AMX), else fp32")
    run_opts.add_argument(
        "--batch", type=int, default=1, metavar="N",
        help="frames per network call (tiles per call with --tile); default 1",
    )
    run_opts.add_argument(
        "--tile", type=int, metavar="PX",
        help="deblur in PX x PX tiles (>= 64; multiples of 64 work best) to bound memory; "
        "0: whole frames always; default: whole frames unless one would not fit in the "
        "memory available, then the largest tile that does (said in a warning)",
    )
    run_opts.add_argument(
        "--tile-overlap", type=int, metavar="PX",
        help="pixels shared by neighbouring tiles, blended with a raised cosine "
        "(default: a quarter of the tile, at most 128)",
    )
    add_ensemble_option(run_opts)
    run_opts.add_argument(
        "--no-scene-cuts", action="store_true",
        help="pair every frame with t+1 even across a scene cut (default: a frame whose "
        "neighbour is from another shot is paired with its other neighbour)",
    )
    out_opts = p.add_argument_group("output")
    out_opts.add_argument(
        "--crf", type=int, default=DEFAULT_CRF,
        help=f"H.264/HEVC quality, 0 (best) .. 51 (worst); default {DEFAULT_CRF}, which keeps "
        "about 90%% of the gain a PNG output shows (docs/BENCHMARKS.md, \"Video outputs\")",
    )
    out_opts.add_argument(
        "--chroma", choices=CHROMA_CHOICES, default=DEFAULT_CHROMA,
        help="chroma of an 8-bit video output: 444 (default; H.264 High 4:4:4, played by "
        "FFmpeg-based players such as VLC and mpv) or 420 (plays on phones, browsers and "
        "editors; blurs colour edges, pads odd sizes)",
    )
    out_opts.add_argument(
        "--lossless", action="store_true",
        help="exact RGB at the exact size (FFV1 in .mkv, else H.264 RGB at crf 0) instead of "
        "yuv420p, which pads odd sizes by one pixel",
    )
    out_opts.add_argument(
        "--codec", choices=("auto", "h264"), default="auto",
        help="video codec for a 10/12-bit input: auto (HEVC Main 10/12, keeping the depth) or "
        "h264 (H.264 High 10: plays in fewer players); 8-bit inputs are always H.264",
    )
    out_opts.add_argument(
        "--fps", type=float, help="frame rate of a video made from images (default 30)"
    )
    out_opts.add_argument(
        "--bits", type=int, choices=(8, 16), default=8, help="bit depth of PNG outputs"
    )
    out_opts.add_argument(
        "--side-by-side", action="store_true", help="write input | output side by side"
    )
    out_opts.add_argument(
        "--save-flow", metavar="DIR",
        help="also write each frame's estimated flow, colour-coded (Middlebury wheel), to DIR",
    )
    out_opts.add_argument(
        "--overwrite", action="store_true",
        help="replace OUTPUT (and DIR) if they are previous outputs of flowdeblur (tagged "
        "videos, PNGs and JPEGs; folders holding only what flowdeblur wrote); anything else, "
        "and any input, is never replaced",
    )
    add_progress_option(out_opts)
    p.set_defaults(run=run)


def speed(frames_per_second: float) -> str:
    """A rate as people read it: frames per second, or seconds per frame when under one."""
    if frames_per_second >= 1 or frames_per_second == 0:
        return f"{frames_per_second:.2f} frames/s"
    return f"{1 / frames_per_second:.2f} s/frame"


def run(args: argparse.Namespace) -> int:
    # Resolved before the weights load, so a wrong option costs nothing.
    Runtime.resolve(args.device, args.precision)
    check_ensemble(args.ensemble)
    model = load_model(args.weights)
    result = deblur_video(
        args.inputs if len(args.inputs) > 1 else args.inputs[0],
        args.output,
        model=model,
        device=args.device,
        precision=args.precision,
        batch=args.batch,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        crf=args.crf,
        chroma=args.chroma,
        lossless=args.lossless,
        fps=args.fps,
        bits=args.bits,
        side_by_side=args.side_by_side,
        save_flow=args.save_flow,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        scene_cuts=not args.no_scene_cuts,
        ensemble=args.ensemble,
        video_codec=None if args.codec == "auto" else args.codec,
    )
    what = {"video": "video", "images": "folder", "image": "image"}[result.kind]
    print(
        f"wrote {result.num_frames} frame{'s' * (result.num_frames != 1)} to {what} "
        f"{result.output} ({speed(result.frames_per_second)}, {result.runtime})"
    )
    if args.save_flow:
        print(f"flow pictures in {args.save_flow}")
    return 0
