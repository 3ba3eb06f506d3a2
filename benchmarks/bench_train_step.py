"""Seconds per training step of the network alone: forward, the Eq. 14 loss, backward, Adam.

    python benchmarks/bench_train_step.py [--batch 8] [--crop 128] [--steps 14]
        [--modes fp32,fp32-cl,bf16,bf16-cl] [--variant full] [--rnn-backend cpu]

Each mode runs in this process on the same random batch: "fp32" is what `flowdeblur train`
runs on the CPU; "bf16" wraps forward and loss in ``torch.autocast(dtype=bfloat16)`` (weights,
gradients and Adam stay fp32); "-cl" puts the model and inputs in ``channels_last``. The first
step of a mode (allocation, kernel selection) is reported apart. No data pipeline is timed:
the trainer's own rate comes from its checkpoints (docs/BENCHMARKS.md, "Training throughput").
Timings mean something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from flowdeblur.models.network import FlowDeblurNet
from flowdeblur.training.losses import eq14_loss

MODES = ("fp32", "fp32-cl", "bf16", "bf16-cl")


def time_mode(mode: str, args: argparse.Namespace) -> list[float]:
    """Wall seconds of each of ``args.steps`` training steps in ``mode``."""
    torch.manual_seed(0)
    model = FlowDeblurNet(args.variant, rnn_backend=args.rnn_backend).train()
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.crop, args.crop)
    batch = {k: torch.rand(shape, generator=g) for k in ("frame_t", "frame_next", "sharp_t")}
    if mode.endswith("-cl"):
        model = model.to(memory_format=torch.channels_last)
        batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6, fused=True)
    precision = (torch.autocast("cpu", dtype=torch.bfloat16) if mode.startswith("bf16")
                 else contextlib.nullcontext())
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        with precision:
            out = model(batch["frame_t"], batch["frame_next"], None)
            loss = eq14_loss(out, batch["frame_t"], batch["frame_next"], batch["sharp_t"],
                             frame_prev=None, flow_loss=True, reduction="sum", image_loss="mse")
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=14, help="steps per mode, the first apart")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--rnn-backend", default="cpu")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or args.steps < 2:
        parser.error(f"unknown modes {unknown}" if unknown else "--steps must be at least 2")
    print(f"batch {args.batch} x {args.crop}x{args.crop}, {args.variant}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'mode':<8} {'first':>7} {'median':>7} {'min':>7} {'max':>7}  (s per step)")
    for mode in modes:
        first, *rest = time_mode(mode, args)
        print(f"{mode:<8} {first:7.3f} {statistics.median(rest):7.3f} "
              f"{min(rest):7.3f} {max(rest):7.3f}")


if __name__ == "__main__":
    main()
