"""`flowdeblur bench`: a Table III-style speed report (markdown, ready for docs/BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import sys

from ..apps import bench
from ..errors import UserError
from ..runtime import PRECISIONS

SIZE_HELP = "frame size HxW (default 720x1280, padded to 768x1280 inside the network)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time the network: convolutions only vs full, per precision and mode",
        description=(
            "Time the network's forward at 720x1280 (batch 1) with its spatial RNNs replaced by "
            "a same-shape stand-in (convolutions only) and with the real RNNs, per device, "
            "precision and execution mode; the RNN layers alone; optionally a training step. "
            "Prints a markdown report. On CPU the defaults are fp32, eager, 3 repeats "
            "(a 720p frame takes seconds there); on CUDA fp32+bf16, eager+compile+cudagraphs, "
            "50 repeats."
        ),
    )
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, or a comma list such as cpu,cuda (default auto)")
    p.add_argument("--size", default="720x1280", help=SIZE_HELP)
    p.add_argument("--batch", type=int, default=1, help="frames per forward (default 1)")
    p.add_argument("--precision", default=None,
                   help="comma list of fp32, bf16, fp16 (default: fp32,bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--modes", default=None,
                   help="comma list of eager, compile (torch.compile), cudagraphs "
                        "(torch.compile with CUDA graphs), graph (eager forward in one CUDA "
                        "graph) (default: eager,compile,cudagraphs on CUDA, eager on CPU)")
    p.add_argument("--graph-mode", default="max-autotune",
                   choices=("max-autotune", "reduce-overhead"),
                   help="torch.compile mode behind 'cudagraphs' (default max-autotune; "
                        "reduce-overhead compiles much faster)")
    p.add_argument("--freeze", action="store_true",
                   help="compiled modes: let inductor fold the weights in as constants")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="NHWC weights and inputs (default auto: on for CUDA, off for CPU)")
    p.add_argument("--rnn-backend", default="auto",
                   help="spatial_rnn backend: auto, triton, cpu, torch, reference (default auto)")
    p.add_argument("--variant", default="full", help="network variant (default full)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per figure, median reported (default 50 CUDA, 3 CPU)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed runs first (default 10 CUDA, 1 CPU)")
    p.add_argument("--no-rnn-layers", dest="rnn_layers", action="store_false",
                   help="skip timing the three RNN layers alone")
    p.add_argument("--train", action="store_true",
                   help="also time a training step (forward, Eq. 14 loss, backward, Adam)")
    p.add_argument("--train-modes", default=None,
                   help="modes for the training step (default: --modes, without 'graph')")
    p.add_argument("--no-inference", dest="inference", action="store_false",
                   help="skip the inference table (e.g. to time only --train)")
    p.add_argument("--train-batch", type=int, default=20, help="training batch (default 20)")
    p.add_argument("--train-size", default="256x256", help="training patch HxW (default 256x256)")
    p.add_argument("--train-precision", default=None,
                   help="training precision (default bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the GPU's peak fp32 TFLOP/s without tensor cores (data sheet): sets "
                        "the results beside the paper's Table III per unit of hardware")
    p.add_argument("--quick", action="store_true",
                   help="tiny frames and 1-2 repeats: checks the command works, measures nothing")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    p.set_defaults(run=run)


def parse_size(text: str, what: str = "--size") -> tuple[int, int]:
    """'720x1280' -> (720, 1280); a UserError naming the value otherwise."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        h, w = (int(v) for v in parts)
    except ValueError:
        raise UserError(f"{what} must look like 720x1280 (HxW), got {text!r}") from None
    if h < 1 or w < 1:
        raise UserError(f"{what} must be positive, got {text!r}")
    return h, w


def _list(text: str | None, allowed: tuple[str, ...], what: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise UserError(f"{what} takes a comma list of {', '.join(allowed)}; got {text!r}")
    return items


def _command_line(args: argparse.Namespace, config) -> str:
    """The effective command, every choice spelled out, so a report says how to remake it."""
    parts = ["flowdeblur bench", f"--device {','.join(config.devices)}"]
    if args.quick:
        parts.append("--quick")
    else:
        parts.append(f"--size {args.size}")
    for flag, value in (("--batch", args.batch if args.batch != 1 else None),
                        ("--precision", args.precision), ("--modes", args.modes),
                        ("--repeats", args.repeats), ("--warmup", args.warmup),
                        ("--rnn-backend", args.rnn_backend if args.rnn_backend != "auto" else None),
                        ("--variant", args.variant if args.variant != "full" else None),
                        ("--peak-tflops", args.peak_tflops)):
        if value is not None:
            parts.append(f"{flag} {value}")
    if args.graph_mode != "max-autotune":
        parts.append(f"--graph-mode {args.graph_mode}")
    if args.channels_last != "auto":
        parts.append(f"--channels-last {args.channels_last}")
    for flag, on in (("--freeze", args.freeze),
                     ("--no-inference", not args.inference),
                     ("--no-rnn-layers", not args.rnn_layers), ("--train", args.train)):
        if on:
            parts.append(flag)
    if args.train and not args.quick:
        parts.append(f"--train-batch {args.train_batch} --train-size {args.train_size}")
    if args.train:
        if args.train_precision:
            parts.append(f"--train-precision {args.train_precision}")
        if args.train_modes:
            parts.append(f"--train-modes {args.train_modes}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    config = bench.BenchConfig(
        devices=[d.strip() for d in args.device.split(",") if d.strip()] or ["auto"],
        size=parse_size(args.size),
        batch=args.batch,
        precisions=_list(args.precision, tuple(PRECISIONS), "--precision"),
        modes=_list(args.modes, bench.MODES, "--modes"),
        train_modes=_list(args.train_modes, bench.MODES, "--train-modes"),
        inference=args.inference,
        repeats=args.repeats,
        warmup=args.warmup,
        rnn_backend=args.rnn_backend,
        variant=args.variant,
        channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
        graph_mode=args.graph_mode,
        freeze=args.freeze,
        rnn_layers=args.rnn_layers,
        train=args.train,
        train_batch=args.train_batch,
        train_size=parse_size(args.train_size, "--train-size"),
        train_precision=args.train_precision,
        peak_tflops=args.peak_tflops,
        quick=args.quick,
    )
    if args.repeats is not None and args.repeats < 1:
        raise UserError(f"--repeats must be >= 1, got {args.repeats}")
    if args.warmup is not None and args.warmup < 0:
        raise UserError(f"--warmup must be >= 0, got {args.warmup}")
    if args.batch < 1 or args.train_batch < 1:
        raise UserError(f"--batch and --train-batch must be >= 1, got {args.batch}, "
                        f"{args.train_batch}")
    if args.train_precision is not None and args.train_precision not in PRECISIONS:
        raise UserError(f"--train-precision must be one of {', '.join(PRECISIONS)}, "
                        f"got {args.train_precision!r}")
    config.command = _command_line(args, config)

    def log(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    report = bench.run_benchmark(config, log=log)
    print(bench.format_report(report, peak_tflops=args.peak_tflops), end="")
    if args.json:
        bench.write_json(report, args.json)
    return 0
