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
from ..runtime import Runtime
from .common import load_model


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
    p.add_argument("--weights", metavar="FILE", help="weights file (default: the shipped ones)")
    run_opts = p.add_argument_group("how to run")
    run_opts.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N"
    )
    run_opts.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
        help="auto (default): bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), "
        "else fp32; or fp32, or autocast to bf16/fp16 (fp16 needs CUDA)",
    )
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
    run_opts.add_argument(
        "--ensemble", type=int, default=1, metavar="N",
        help="average the outputs for N flipped/transposed copies of each frame: 1 (default), "
        "2, 4 or 8; sharper (docs/BENCHMARKS.md, \"Self-ensemble\"), N times slower",
    )
    run_opts.add_argument(
        "--no-scene-cuts", action="store_true",
        help="pair every frame with t+1 even across a scene cut (default: a frame whose "
        "neighbour is from another shot is paired with its other neighbour)",
    )
    out_opts = p.add_argument_group("output")
    out_opts.add_argument(
        "--crf", type=int, default=18,
        help="H.264 quality, 0 (best) .. 51 (worst); default 18, visually lossless",
    )
    out_opts.add_argument(
        "--lossless", action="store_true",
        help="exact RGB at the exact size (FFV1 in .mkv, else H.264 RGB at crf 0) instead of "
        "yuv420p, which pads odd sizes by one pixel",
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
        "--overwrite", action="store_true", help="replace OUTPUT (and DIR) if they exist"
    )
    out_opts.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Resolved before the weights load, so a wrong option costs nothing.
    runtime = Runtime.resolve(args.device, args.precision)
    check_ensemble(args.ensemble)
    model = load_model(args.weights)
    result = deblur_video(
        args.inputs if len(args.inputs) > 1 else args.inputs[0],
        args.output,
        model=model,
        device=runtime.device,
        precision=runtime.precision,
        batch=args.batch,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        crf=args.crf,
        lossless=args.lossless,
        fps=args.fps,
        bits=args.bits,
        side_by_side=args.side_by_side,
        save_flow=args.save_flow,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        scene_cuts=not args.no_scene_cuts,
        ensemble=args.ensemble,
    )
    what = {"video": "video", "images": "folder", "image": "image"}[result.kind]
    print(
        f"wrote {result.num_frames} frame{'s' * (result.num_frames != 1)} to {what} "
        f"{result.output} ({result.frames_per_second:.2f} frames/s, {runtime.describe()})"
    )
    if args.save_flow:
        print(f"flow pictures in {args.save_flow}")
    return 0
