"""Helpers shared by the subcommands: the options several commands take (declared once here),
warnings as one line, and loading the model."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator

from tqdm import tqdm

from ..errors import OptionError, UserError
from ..inference.chunks import DEFAULT_CHUNK_FRAMES
from ..inference.ensemble import ENSEMBLE_SIZES, check_ensemble
from ..media import is_image_path
from ..media.video_writer import CHROMA_CHOICES, DEFAULT_CHROMA, DEFAULT_CRF
from ..models import FlowDeblurNet
from ..runtime import Runtime
from ..runtime.backends import (
    BACKENDS,
    ONNX_SUFFIX,
    ExportedNetwork,
    backend_precision,
    check_backend,
)
from ..training.adapt import DEFAULT_CROP as ADAPT_CROP
from ..weights import PRETRAINED, load_pretrained, load_weights
from ..weights.int8 import attach_scales
from ..weights.onnx_export import open_exported


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings as ``flowdeblur: warning: ...`` lines on stderr (no file/line noise),
    above a progress bar if one is showing rather than through it."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        tqdm.write(f"flowdeblur: warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        # Our own warnings (UserWarning) show once per run, even in a long-lived process.
        warnings.filterwarnings("default", category=UserWarning)
        warnings.showwarning = show
        yield


def load_model(weights: str | None, precision: str = "auto") -> FlowDeblurNet:
    """The network from ``weights``, or the shipped one (UserError if neither exists); with
    ``precision`` "int8", with its int8 scales (:func:`flowdeblur.weights.int8.attach_scales`)."""
    if weights is not None:
        model = load_weights(weights)
    else:
        try:
            model = load_pretrained()
        except UserError as e:
            raise UserError(f"{e}; pass --weights FILE") from None
    if precision == "int8":
        attach_scales(model, weights if weights is not None else PRETRAINED)
    return model


def load_exported(args: argparse.Namespace) -> ExportedNetwork:
    """What ``deblur`` and ``batch`` run for ``--backend onnxruntime|openvino``: the exported
    model (``--weights MODEL.onnx``, or the cached export of the weights of
    :func:`load_model`) loaded in that runtime."""
    onnx_given = args.weights is not None and args.weights.lower().endswith(ONNX_SUFFIX)
    model = None if onnx_given else load_model(args.weights)
    return open_exported(args.backend, args.weights, model,
                         precision=backend_precision(args.backend, args.precision))


# ----------------------------------------------------------------------------- shared options

#: What ``--precision`` may be for the commands that run the network once per call.
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16", "int8")


def add_weights_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--weights", metavar="FILE", help="weights file (default: the shipped ones)")


def add_runtime_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                        auto_precision: str) -> None:
    """``--device`` and ``--precision``; ``auto_precision`` says what ``auto`` means for the
    command (deblur: the fastest exact-enough precision; demo and eval: fp32, as reported)."""
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or "
                   "cuda:N")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help=f"auto (default): {auto_precision}; or fp32, or autocast to bf16/fp16 "
                   "(fp16 needs CUDA), or int8 (CPU, quantized convolutions, compiled on the "
                   "first frame of each size; needs the int8 extra)")


def add_ensemble_option(p: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                        default: int | None = 1) -> None:
    sizes = ", ".join(map(str, ENSEMBLE_SIZES))
    p.add_argument("--ensemble", type=int, default=default, metavar="N",
                   help=f"average the outputs for N flipped/transposed copies of each frame: "
                   f"{sizes} (default 1); sharper (docs/BENCHMARKS.md, \"Self-ensemble\"), N "
                   "times slower")


def add_progress_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--no-progress", "--quiet", "-q", dest="no_progress", action="store_true",
                   help="no progress bar")


def add_deblur_options(p: argparse.ArgumentParser, outputs: str) -> argparse._ArgumentGroup:
    """The options ``deblur`` and ``batch`` share: weights, how to run, how to write (with
    ``--overwrite``/``--resume`` for the ``outputs`` named), progress. Returns the output
    group, for options of the command's own."""
    add_weights_option(p)
    add_deblur_run_options(p.add_argument_group("how to run"))
    out_opts = p.add_argument_group("output")
    add_output_options(out_opts)
    add_overwrite_options(out_opts, outputs)
    add_progress_option(out_opts)
    return out_opts


def check_deblur_options(args: argparse.Namespace) -> None:
    """Refuse a wrong backend, device, precision or ensemble size before any weights load."""
    check_backend(args.backend, args.weights, device=args.device)
    if args.backend != "torch":
        backend_precision(args.backend, args.precision)
        if getattr(args, "engine", "local") != "local":
            raise OptionError("backend", f"{{option}} {args.backend} runs with --engine local")
    Runtime.resolve(args.device, args.precision)
    check_ensemble(args.ensemble)


def add_deblur_run_options(p: argparse._ArgumentGroup) -> None:
    """How ``deblur`` and ``batch`` run the network: device, precision, frames per call,
    tiles, self-ensemble, scene cuts (read back by :func:`deblur_options`)."""
    add_runtime_options(p, auto_precision="bf16 on CUDA and on CPUs with native bf16 "
                        "(AVX512-BF16, AMX), else fp32")
    p.add_argument(
        "--backend", choices=BACKENDS, default="torch",
        help="torch (default): the PyTorch network; onnxruntime or openvino: the exported "
        "model (--weights MODEL.onnx from `flowdeblur export`, or else an export of the "
        "weights made once and cached), on the CPU, from the onnx / openvino extra; "
        "--precision there: onnxruntime fp32 only, openvino fp32 or bf16 (auto: the "
        "plugin's default)",
    )
    p.add_argument(
        "--batch", type=int, default=1, metavar="N",
        help="frames per network call (tiles per call with --tile); default 1 (many files "
        "at once: the `flowdeblur batch` command)",
    )
    p.add_argument(
        "--tile", type=int, metavar="PX",
        help="deblur in PX x PX tiles (>= 64; multiples of 64 work best) to bound memory; "
        "0: whole frames always; default: whole frames unless one would not fit in the "
        "memory available, then the largest tile that does (said in a warning)",
    )
    p.add_argument(
        "--tile-overlap", type=int, metavar="PX",
        help="pixels shared by neighbouring tiles, blended with a raised cosine "
        "(default: a quarter of the tile, at most 128)",
    )
    add_ensemble_option(p)
    p.add_argument(
        "--no-scene-cuts", action="store_true",
        help="pair every frame with t+1 even across a scene cut (default: a frame whose "
        "neighbour is from another shot is paired with its other neighbour)",
    )


def add_adapt_options(p: argparse._ArgumentGroup) -> None:
    """``--adapt STEPS`` and ``--adapt-crop PX`` (``deblur``; checked by
    :func:`check_adapt_options`)."""
    steps = ("first fine-tune a copy of the weights for STEPS steps on the input itself with "
             "the self-supervised reblurring loss (beside the synthetic training loss), then "
             "deblur with it; about 0.5 s per step on a 2-core CPU; default 0: off, since it "
             "lowered the PSNR of every large-motion dev clip (docs/ADAPT.md)")
    crop = (f"side of the square crops --adapt trains on (>= 64; the frame where smaller; "
            f"default {ADAPT_CROP}): bounds its time and memory per step")
    p.add_argument("--adapt", type=int, default=0, metavar="STEPS", help=steps)
    p.add_argument("--adapt-crop", type=int, default=ADAPT_CROP, metavar="PX", help=crop)


def check_adapt_options(args: argparse.Namespace) -> None:
    """Refuse a negative ``--adapt``, a small ``--adapt-crop``, and ``--adapt`` where it
    cannot run: an exported model, int8, one image."""
    if args.adapt < 0:
        raise OptionError("adapt", f"{{option}} must be 0 (off) or more steps, got {args.adapt}")
    if args.adapt_crop < 64:
        raise OptionError("adapt_crop", f"{{option}} must be at least 64 pixels, got "
                          f"{args.adapt_crop}")
    if not args.adapt:
        return
    if args.backend != "torch":
        raise OptionError("adapt", f"{{option}} trains the PyTorch network; it does not run "
                          f"with --backend {args.backend}")
    if args.precision == "int8":
        raise OptionError("adapt", "{option} does not run with --precision int8 (its scales "
                          "are calibrated for the weights as shipped)")
    if len(args.inputs) == 1 and is_image_path(args.inputs[0]):
        raise OptionError("adapt", "{option} needs a video or frames (at least 3), not one image")


def add_output_options(p: argparse._ArgumentGroup) -> None:
    """How ``deblur`` and ``batch`` write their outputs (read back by :func:`deblur_options`)."""
    p.add_argument(
        "--crf", type=int, default=None,
        help=f"H.264/HEVC quality, 0 (best) .. 51 (worst); default {DEFAULT_CRF['444']} for "
        f"the 10-bit 4:4:4 output of an 8-bit input, which keeps over 90%% of the gain a PNG "
        f"output shows (docs/BENCHMARKS.md, \"Video outputs\"), {DEFAULT_CRF['420']} with "
        "--chroma 420 and for 10/12-bit inputs",
    )
    p.add_argument(
        "--chroma", choices=CHROMA_CHOICES, default=DEFAULT_CHROMA,
        help="chroma of an 8-bit video output: 444 (default; 10-bit H.264 High 4:4:4, played "
        "by FFmpeg-based players such as VLC and mpv) or 420 (8-bit; plays on phones, "
        "browsers and editors; blurs colour edges, pads odd sizes)",
    )
    p.add_argument(
        "--lossless", action="store_true",
        help="exact RGB at the exact size (FFV1 in .mkv, else H.264 RGB at crf 0) instead of "
        "yuv420p, which pads odd sizes by one pixel",
    )
    p.add_argument(
        "--codec", choices=("auto", "h264"), default="auto",
        help="video codec for a 10/12-bit input: auto (HEVC Main 10/12, keeping the depth) or "
        "h264 (H.264 High 10: plays in fewer players); 8-bit inputs are always H.264",
    )
    p.add_argument(
        "--fps", type=float, help="frame rate of a video made from images (default 30)"
    )
    p.add_argument(
        "--bits", type=int, choices=(8, 16), default=8, help="bit depth of PNG outputs"
    )
    p.add_argument(
        "--side-by-side", action="store_true", help="write input | output side by side"
    )


def add_overwrite_options(p: argparse._ArgumentGroup, what: str) -> None:
    """``--overwrite`` and ``--resume`` for the outputs ``what`` names."""
    p.add_argument(
        "--overwrite", action="store_true",
        help=f"replace {what} if they are previous outputs of flowdeblur (tagged "
        "videos, PNGs and JPEGs; folders holding only what flowdeblur wrote); anything else, "
        "and any input, is never replaced",
    )
    p.add_argument(
        "--resume", action="store_true",
        help="leave an output that is complete and was made from the same input, weights and "
        "options (recorded in it) as it is; redo one of flowdeblur's that differs; continue a "
        "video from the chunks a killed run finished",
    )
    p.add_argument(
        "--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES, metavar="N",
        help=f"make a longer video output in chunks of N frames (default {DEFAULT_CHUNK_FRAMES}"
        "), each kept as a finished piece beside it until the video is joined, so that "
        "--resume loses at most one chunk; 0: in one go",
    )


def deblur_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`flowdeblur.inference.deblur_video` that the options of
    :func:`add_deblur_run_options`, :func:`add_output_options` and
    :func:`add_overwrite_options` set."""
    device, precision = args.device, args.precision
    if args.backend != "torch":  # an exported model: the CPU, the precision it runs in
        device, precision = "cpu", backend_precision(args.backend, args.precision)
    return dict(
        device=device, precision=precision, batch=args.batch, tile=args.tile,
        tile_overlap=args.tile_overlap, ensemble=args.ensemble,
        scene_cuts=not args.no_scene_cuts, crf=args.crf, chroma=args.chroma,
        lossless=args.lossless, video_codec=None if args.codec == "auto" else args.codec,
        fps=args.fps, bits=args.bits, side_by_side=args.side_by_side,
        overwrite=args.overwrite, resume=args.resume, chunk_frames=args.chunk_frames,
    )
