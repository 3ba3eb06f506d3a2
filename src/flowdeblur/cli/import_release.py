"""`flowdeblur import-release MODEL.caffemodel -o WEIGHTS`: use the paper's trained model.

    flowdeblur import-release model.caffemodel -o release.safetensors
    flowdeblur deblur clip.mp4 -o sharp.mp4 --weights release.safetensors

The work is in :mod:`flowdeblur.weights.caffe_release`; this module parses and reports.
"""

from __future__ import annotations

import argparse

from ..weights.caffe_release import import_release


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-release",
        help="convert the authors' trained .caffemodel into a weights file",
        description=(
            "Read the trained model of the authors' MatCaffe release "
            "(zhjwustc/tcsvt21_flow_deblur_matcaffe; its README links the .caffemodel) and "
            "write it as a flowdeblur weights file that deblur, eval and demo take with "
            "--weights. The file is checked layer by layer against the release's network; "
            "nothing is written if it does not fit, holds NaN or infinite values, or "
            "overflows the chosen --dtype; files over 256 MB are refused unread (the "
            "release's is 33 MB). Needs the protobuf package, not Caffe. "
            "The release zero-pads frames to multiples of 64; `flowdeblur eval --protocol "
            "release` reproduces that."
        ),
    )
    p.add_argument("caffemodel", metavar="MODEL.caffemodel", help="the release's trained model")
    p.add_argument(
        "-o", "--output", required=True, metavar="WEIGHTS",
        help="weights file to write, e.g. release.safetensors",
    )
    p.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
        help="precision of the stored weights (default fp32: the release's values exactly)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace WEIGHTS if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = import_release(
        args.caffemodel, args.output, dtype=args.dtype, overwrite=args.overwrite
    )
    print(
        f"imported {result.layers} layers ({result.values:,} parameters) from {args.caffemodel}; "
        f"skipped {result.skipped_blobs} unused GateRecurrent blobs"
    )
    print(f"wrote {args.output}; use it with --weights {args.output}")
    return 0
