"""`flowdeblur demo`: deblur a synthetic clip with known ground truth; print PSNR/SSIM gains.

    flowdeblur demo                       # writes demo_out/
    flowdeblur demo --weights my.safetensors --out /tmp/demo

The work is in :func:`flowdeblur.apps.demo.run_demo`.
"""

from __future__ import annotations

import argparse

from ..apps.demo import DEFAULT_FRAMES, DEFAULT_SIZE, DESCRIPTIONS, run_demo
from ..errors import UserError
from ..inference.ensemble import check_ensemble
from ..runtime import Runtime
from .common import (
    add_ensemble_option,
    add_progress_option,
    add_runtime_options,
    add_weights_option,
    load_model,
)


def _size(text: str) -> tuple[int, int]:
    """'384x256' (width x height) -> (256, 384)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTHxHEIGHT like 384x256, got {text!r}"
        ) from None
    return h, w


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="deblur a synthetic clip with known ground truth and show the gain",
        description=(
            "Build a short blurry clip from bundled photos with the synthetic engine (so the "
            "sharp frames are known), deblur it, print PSNR/SSIM before and after, and write "
            "a side-by-side video, a still and a flow picture to --out."
        ),
    )
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (demo_out)")
    add_weights_option(p)
    p.add_argument(
        "--frames", type=int, default=DEFAULT_FRAMES, help=f"clip length (default {DEFAULT_FRAMES})"
    )
    p.add_argument(
        "--size", type=_size, default=DEFAULT_SIZE, metavar="WxH",
        help=f"frame size (default {DEFAULT_SIZE[1]}x{DEFAULT_SIZE[0]})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic clip (default 0)")
    add_runtime_options(p, auto_precision="fp32, like every figure the project reports")
    add_ensemble_option(p)
    add_progress_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise UserError(f"--frames must be at least 2, got {args.frames}")
    # Resolved before the weights load, so a wrong option costs nothing.
    runtime = Runtime.resolve(args.device, args.precision, purpose="report")
    check_ensemble(args.ensemble)
    model = load_model(args.weights, args.precision)
    result = run_demo(
        args.out,
        model=model,
        num_frames=args.frames,
        size=args.size,
        seed=args.seed,
        device=runtime.device,
        precision=runtime.precision,
        progress=not args.no_progress,
        ensemble=args.ensemble,
    )
    h, w = args.size
    print(
        f"{args.frames} synthetic frames of {w}x{h}: made in {result.seconds_clip:.1f} s, "
        f"deblurred in {result.seconds_deblur:.1f} s"
    )
    print(result.table())
    for key, path in result.files.items():
        print(f"wrote {path}: {DESCRIPTIONS[key]}")
    return 0
