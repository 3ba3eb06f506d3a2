"""`flowdeblur eval`: PSNR / SSIM / temporal error of a model on a dataset, or of two folders.

    flowdeblur eval --data ROOT --layout dvd --protocol release [--weights FILE] ...
    flowdeblur eval --outputs DIR --targets DIR [--layout dvd] ...

Protocols and metric definitions: :mod:`flowdeblur.evaluation.protocols` and
:mod:`flowdeblur.evaluation.metrics`.
"""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..evaluation.folders import evaluate_folders
from ..evaluation.protocols import PROTOCOLS, evaluate_model
from ..evaluation.results import check_result_path
from .common import (
    add_ensemble_option,
    add_progress_option,
    add_runtime_options,
    add_weights_option,
    load_model,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score a model on a dataset, or a folder of results against its targets",
        description=(
            "Score deblurred frames with PSNR, SSIM (scikit-image's Gaussian-window SSIM) and a "
            "flow-free temporal error, per sequence and overall. Either run a model over a "
            "dataset (--data) or score images any method wrote (--outputs with --targets)."
        ),
    )
    src = p.add_argument_group("what to score")
    src.add_argument("--data", metavar="ROOT", help="dataset root: run the model on it")
    src.add_argument("--outputs", metavar="DIR", help="folder of result images to score")
    src.add_argument(
        "--targets", metavar="DIR",
        help="folder of ground-truth images matched to --outputs by relative path (extension "
        "ignored); with --layout, a dataset root whose sharp frames are the targets",
    )
    src.add_argument(
        "--layout", default=None,
        help="dataset layout (dvd, gopro, gopro_gamma, reds, bsd, folders); default dvd with "
        "--data, plain folders with --targets",
    )
    src.add_argument("--split", default="test", help="dataset split (default: test)")

    model = p.add_argument_group("model (with --data)")
    model.add_argument(
        "--protocol", choices=PROTOCOLS, default=None,
        help="which frames and how: release (the authors' scripts), all, su30 (default: all)",
    )
    add_weights_option(model)
    add_runtime_options(model, auto_precision="fp32, as every reported figure")
    model.add_argument("--save-dir", metavar="DIR", help="also write the scored outputs as PNGs")
    model.add_argument(
        "--max-frames", type=int, metavar="K", help="score only the first K frames per sequence"
    )
    add_ensemble_option(model, default=None)

    score = p.add_argument_group("scoring")
    score.add_argument("--crop", dest="crop_border", type=int, default=0, metavar="N",
                       help="ignore N border pixels")
    score.add_argument(
        "--y", action="store_true",
        help="score the BT.601 luma Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255 "
        "(MATLAB rgb2ycbcr) instead of RGB",
    )
    score.add_argument(
        "--quantize", action=argparse.BooleanOptionalAction, default=None,
        help="round outputs to 8 bits before scoring (default: on with --data, off for folders; "
        "always on under --protocol release)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write the full result (per frame too) as JSON")
    out.add_argument("--csv", metavar="PATH", help="write per-sequence means as CSV")
    add_progress_option(out)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for option, path in (("--json", args.json), ("--csv", args.csv)):
        if path is not None:  # checked before the (possibly long) evaluation, not after it
            check_result_path(path, option)
    if (args.data is None) == (args.outputs is None and args.targets is None):
        raise UserError("give either --data ROOT, or --outputs DIR with --targets DIR")
    if args.data is None:
        if args.outputs is None or args.targets is None:
            raise UserError("--outputs and --targets go together")
        model_only = {
            "--protocol": args.protocol, "--weights": args.weights, "--save-dir": args.save_dir,
            "--max-frames": args.max_frames, "--ensemble": args.ensemble,
        }
        given = [name for name, value in model_only.items() if value is not None]
        if given:
            raise UserError(f"{given[0]} applies only to model evaluation (--data)")
        result = evaluate_folders(
            args.outputs, args.targets, crop_border=args.crop_border, y_channel=args.y,
            quantize=bool(args.quantize), layout=args.layout, split=args.split,
            progress=not args.no_progress,
        )
    else:
        model = load_model(args.weights, args.precision)
        result = evaluate_model(
            model, args.data, args.layout or "dvd", protocol=args.protocol or "all",
            split=args.split, device=args.device, precision=args.precision,
            crop_border=args.crop_border, y_channel=args.y,
            quantize=True if args.quantize is None else args.quantize,
            save_dir=args.save_dir, progress=not args.no_progress, max_frames=args.max_frames,
            ensemble=1 if args.ensemble is None else args.ensemble,
        )
    print(result.format_table())
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
    if args.csv:
        result.to_csv(args.csv)
        print(f"wrote {args.csv}")
    return 0
