"""`flowdeblur export OUT.onnx`: the network as an ONNX file for other tools.

    flowdeblur export flowdeblur.onnx
    flowdeblur export release.onnx --weights release.safetensors --opset 18
    flowdeblur deblur clip.mp4 -o sharp.mp4 --backend onnxruntime --weights flowdeblur.onnx

The work is in :mod:`flowdeblur.weights.onnx_export`; this module parses and reports.
"""

from __future__ import annotations

import argparse

from ..weights.onnx_export import DEFAULT_OPSET, export_onnx
from .common import add_weights_option, load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the network as an ONNX model (ONNX Runtime, OpenVINO, vs-mlrt)",
        description=(
            "Write the network and its weights as one ONNX file that ONNX Runtime, OpenVINO "
            "and tools built on them (VapourSynth's vs-mlrt, chaiNNer) run with standard "
            "operators only. Input 'frames' (N, 6, H, W): frame t then its neighbour, RGB "
            "in [0, 1], any size (padded to multiples of 64 inside). Outputs 'image' "
            "(unclamped) and 'flow' (1/4 of the padded size; the scene-cut test of "
            "`deblur --backend` reads it). docs/EXPORT.md has the details. Exporting takes "
            "about a minute on a 2-core CPU."
        ),
    )
    p.add_argument("output", metavar="OUT.onnx", help="the file to write")
    add_weights_option(p)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset to write (default {DEFAULT_OPSET}, the lowest accepted)")
    p.add_argument("--image-only", action="store_true",
                   help="leave the flow output out: one output, for tools that read only one "
                   "(vs-mlrt); `deblur --backend` needs the flow")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT.onnx if it is an earlier export of flowdeblur (recorded in "
                   "its metadata); any other file is never replaced")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.weights)
    result = export_onnx(model, args.output, opset=args.opset, overwrite=args.overwrite,
                         image_only=args.image_only)
    print(f"wrote {result.path} ({result.bytes / 1e6:.1f} MB, opset {result.opset}, outputs "
          f"{', '.join(result.outputs)}; weights sha256 {result.weights_sha256[:16]}...)")
    if not args.image_only:
        print(f"run it with: flowdeblur deblur INPUT -o OUTPUT --backend onnxruntime "
              f"--weights {result.path}")
    return 0
