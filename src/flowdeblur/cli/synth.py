"""`flowdeblur synth`: make a blurry/sharp training set from your own sharp high-fps footage."""

from __future__ import annotations

import argparse

from ..data.blur_synthesis import CURVES, synthesize_blur
from .common import add_progress_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="average sharp high-fps frames into blurry/sharp training pairs",
        description=(
            "Average groups of N consecutive sharp frames in linear light into blurry frames and "
            "write OUT_DIR/<seq>/{blur,sharp}/000000.png (sharp = the middle frame of each "
            "group; the earlier middle one for even N). The result is read by the 'gopro' "
            "dataset layout (e.g. flowdeblur train/eval with layout gopro, root OUT_DIR)."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="SHARP_VIDEO_OR_DIR",
                   help="a video, a folder of frames, or several frame files")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="dataset folder")
    p.add_argument("--average", "-n", type=int, required=True, metavar="N",
                   help="sharp frames averaged into each blurry frame")
    p.add_argument("--stride", type=int, default=None, metavar="S",
                   help="frames between group starts (default N: groups do not overlap)")
    p.add_argument("--seq-name", default=None,
                   help="sequence folder name (default: the input's name)")
    p.add_argument("--curve", choices=CURVES, default="srgb",
                   help="linearisation before averaging: sRGB curve (default), gamma 2.2 "
                        "(GoPro blur_gamma), or none (GoPro blur)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="PNG bit depth")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty OUT_DIR, replacing OUT_DIR/<seq>")
    add_progress_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    inputs = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    result = synthesize_blur(
        inputs,
        args.output,
        average=args.average,
        stride=args.stride,
        seq_name=args.seq_name,
        curve=args.curve,
        bits=args.bits,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"wrote {result.num_pairs} blurry/sharp pairs to {result.sequence_dir}")
    return 0
