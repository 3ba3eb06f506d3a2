"""`flowdeblur batch INPUT... -o OUTPUT_DIR`: deblur many videos and frame folders, resumably.

    flowdeblur batch footage/ -o sharp/                       # every video and frame folder
    flowdeblur batch @todo.txt -o sharp/ --resume             # skip what is finished
    flowdeblur batch footage/ -o sharp/ --shard 3/8           # the 3rd of 8 job-array parts
    flowdeblur batch footage/ -o sharp/ --engine ray --ray-address head:6379   # on Ray

All the work is in :mod:`flowdeblur.inference.batch`; this module parses and reports.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import OptionError
from ..inference.batch import ENGINES, BatchResult, parse_shard, plan_batch, run_batch
from .common import (
    add_deblur_options,
    check_deblur_options,
    deblur_options,
    load_exported,
    load_model,
)
from .deblur import speed


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch",
        help="deblur many videos and folders of frames into one output folder",
        description=(
            "Deblur every input into OUTPUT_DIR, one after another: INPUT is a video, a folder "
            "(searched recursively for videos and for folders of images without subfolders, "
            "each one frame sequence) or @LIST (a text file naming one input per line, "
            "relative to it; blank lines and # comments ignored). Each output is "
            "OUTPUT_DIR/<path relative to the input folder> under the same name and extension "
            "(a frame sequence: a folder of PNGs). An input that fails is reported and the "
            "batch goes on; a full disk stops it. Exit status: 0 all done or skipped, 1 some "
            "failed, 2 nothing started. Not to be confused with `deblur --batch N`, the "
            "number of frames per network call, which this command also takes."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a video, a folder, or @LIST (a file of inputs)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT_DIR",
                   help="the folder the outputs go to")
    batch_opts = p.add_argument_group("batch")
    batch_opts.add_argument(
        "--shard", metavar="I/N",
        help="only the I-th (from 1) of N disjoint parts of the batch, chosen by a hash of each "
        "input's path relative to its folder: N processes with 1/N .. N/N cover the batch")
    batch_opts.add_argument("--report", metavar="FILE.json",
                            help="write each input's status and reason to this JSON file")
    batch_opts.add_argument("--dry-run", action="store_true",
                            help="list the inputs and their outputs; deblur and write nothing")
    batch_opts.add_argument(
        "--engine", choices=ENGINES, default="local",
        help="local (default): one input after another in this process; ray: Ray tasks on a "
        "cluster, long videos split into chunks across workers (pip install "
        "'flowdeblur[cluster]'; docs/BATCH.md)")
    batch_opts.add_argument(
        "--ray-address", metavar="ADDR",
        help="the Ray cluster to join (HOST:PORT, or ray://HOST:PORT); default: start a local "
        "Ray on 127.0.0.1")
    batch_opts.add_argument("--ray-cpus", type=float, default=1, metavar="N",
                            help="CPUs of one Ray worker (its torch threads); default 1")
    batch_opts.add_argument(
        "--ray-gpus", type=float, metavar="N",
        help="GPUs of one Ray worker; default 1 when the cluster has GPUs and --device is not "
        "cpu, else 0")
    add_deblur_options(p, "outputs")
    p.set_defaults(run=run)


def summary(result: BatchResult) -> list[str]:
    """The lines printed at the end of a batch: the counts, then each failure's reason."""
    lines = [f"batch: {result.count('done')} done, {result.count('skipped')} skipped, "
             f"{result.count('failed')} failed"
             + (f", {result.count('not started')} not started" if result.stopped else "")
             + f"; {result.frames} frames in {result.seconds:.1f} s "
             f"({speed(result.frames_per_second)})"
             + (f"; {result.reused} frames from finished chunks, {result.recomputed} "
                "recomputed" if result.reused or result.recomputed else "")]
    lines += [f"failed: {item.input}: {item.reason}" for item in result.items
              if item.status == "failed"]
    if result.stopped:
        lines.append(f"stopped: {result.stopped}")
    return lines


def run(args: argparse.Namespace) -> int:
    # Everything that can be refused is refused before the weights load.
    check_deblur_options(args)
    if args.ray_cpus <= 0 or (args.ray_gpus is not None and args.ray_gpus < 0):
        which, value = ("ray_cpus", args.ray_cpus) if args.ray_cpus <= 0 else \
            ("ray_gpus", args.ray_gpus)
        raise OptionError(which, f"{{option}} must be more than 0, got {value}")
    shard = parse_shard(args.shard) if args.shard is not None else None
    items = plan_batch(args.inputs, args.output, shard=shard, overwrite=args.overwrite,
                       resume=args.resume)
    if args.dry_run or not items:
        for item in items:
            there = " (exists)" if item.output.exists() else ""
            print(f"{item.input} -> {item.output}{there}")
        print(f"{len(items)} input{'s' * (len(items) != 1)}"
              + (f" in shard {args.shard}" if shard else "")
              + ("; nothing written (--dry-run)" if args.dry_run else ""))
        return 0
    model = (load_model(args.weights, args.precision) if args.backend == "torch"
             else load_exported(args))
    options = deblur_options(args)
    if args.engine == "ray":
        from ..inference.ray_engine import run_batch_ray  # Ray is imported only when asked

        result = run_batch_ray(items, model=model, weights=args.weights,
                               address=args.ray_address, worker_cpus=args.ray_cpus,
                               worker_gpus=args.ray_gpus, report=args.report,
                               progress=not args.no_progress, **options)
    else:
        result = run_batch(items, model=model, report=args.report,
                           progress=not args.no_progress, **options)
    out = sys.stdout if result.exit_status == 0 else sys.stderr
    for line in summary(result):
        print(line, file=out)
    return result.exit_status
