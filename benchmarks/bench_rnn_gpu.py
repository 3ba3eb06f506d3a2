"""Time the spatial RNN on the GPU: Triton kernels against the vectorised torch backend.

Shapes: the inputs of the network's three RNN layers on a 720p frame padded to 768x1280
(x: 1x24x384x640, 1x48x192x320, 1x96x96x160; gates 4C channels). For each shape and dtype it
reports the median time (``triton.testing.do_bench``) of the forward and of forward+backward,
and the bandwidth achieved against the memory-traffic floor:

* forward: read x and w once, write the output once: (C + 4C + 4C) * H * W elements;
* backward: read dL/dout, x, w and the saved output once, write dL/dx and dL/dw once:
  (4C + C + 4C + 4C + C + 4C) * H * W elements; forward+backward is the sum.

Usage (on a machine with CUDA)::

    python benchmarks/bench_rnn_gpu.py                 # bf16 and fp32, the three layers
    python benchmarks/bench_rnn_gpu.py --sweep         # also try other Triton tile sizes
    python benchmarks/bench_rnn_gpu.py --peak-gbs 4800 # H200's nominal bandwidth

Without CUDA it prints a message and exits with status 0.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from flowdeblur.ops.rnn_torch import spatial_rnn_torch
from flowdeblur.runtime import PRECISIONS

# flowdeblur.ops.rnn_triton needs triton (optional), so it is imported where it runs.

SHAPES = [(1, 24, 384, 640), (1, 48, 192, 320), (1, 96, 96, 160)]


@dataclass
class Totals:
    """The three layers' milliseconds summed: measured, and the memory-traffic floors."""

    fwd: float = 0.0
    both: float = 0.0
    fwd_floor: float = 0.0
    both_floor: float = 0.0


def floor_bytes(shape: tuple[int, int, int, int], dtype: torch.dtype, *, backward: bool) -> int:
    n, c, h, w = shape
    elems = 9 * n * c * h * w
    if backward:
        elems += 18 * n * c * h * w
    return elems * torch.empty((), dtype=dtype).element_size()


def bench(fn, *, grad_to_none=None) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=200, grad_to_none=grad_to_none, return_mode="median")


def make_inputs(shape, dtype, *, requires_grad=False):
    n, c, h, w = shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(n, c, h, w, device="cuda", generator=gen).to(dtype)
    g = torch.tanh(torch.randn(n, 4 * c, h, w, device="cuda", generator=gen)).to(dtype)
    dh = torch.randn(n, 4 * c, h, w, device="cuda", generator=gen).to(dtype)
    return x.requires_grad_(requires_grad), g.requires_grad_(requires_grad), dh


def time_backend(fn, shape, dtype) -> tuple[float, float]:
    """Median ms of forward, and of forward+backward, of ``fn(x, w)``."""
    x, g, _ = make_inputs(shape, dtype)
    with torch.no_grad():
        fwd = bench(lambda: fn(x, g))
    x, g, dh = make_inputs(shape, dtype, requires_grad=True)
    both = bench(lambda: fn(x, g).backward(dh), grad_to_none=[x, g])
    return fwd, both


def check_agreement(shape, dtype) -> float:
    """Max |triton - torch| / max |torch| on the forward, so a fast wrong kernel shows."""
    from flowdeblur.ops.rnn_triton import spatial_rnn_triton

    x, g, _ = make_inputs(shape, torch.float32)
    with torch.no_grad():
        ref = spatial_rnn_torch(x, g)
        got = spatial_rnn_triton(x.to(dtype), g.to(dtype)).float()
    return ((got - ref).abs().max() / ref.abs().max()).item()


def sweep(shape, dtype, peak_gbs: float) -> None:
    """Forward and backward time of a few tile configurations (private launcher)."""
    from flowdeblur.ops import rnn_triton

    n, c, h, w = shape
    x, g, dh = make_inputs(shape, dtype)
    out = rnn_triton._forward(x, g)
    default_f = rnn_triton._pick_config(n * c * h, h, w, backward=False)
    default_b = rnn_triton._pick_config(n * c * h, h, w, backward=True)
    configs = {default_f, default_b}
    for rb, rs, cs, cb, nw in [
        (8, 64, 32, 32, 4), (16, 64, 32, 32, 4), (32, 64, 32, 32, 8), (16, 128, 64, 32, 8),
        (8, 128, 16, 64, 4), (4, 64, 16, 32, 2), (16, 32, 64, 16, 4), (32, 32, 32, 64, 8),
    ]:
        fit = rnn_triton._pow2_at_most
        configs.add(rnn_triton._Config(fit(n * c * h, rb), fit(w, rs), fit(h, cs), fit(w, cb), nw))
    fb = floor_bytes(shape, dtype, backward=False)
    bb = floor_bytes(shape, dtype, backward=True) - fb
    print(f"  sweep {shape} {dtype}: row_block row_steps col_steps col_block warps | "
          f"fwd ms (GB/s) | bwd ms (GB/s)")
    for cfg in sorted(configs, key=lambda k: (k.row_block, k.row_steps, k.col_steps, k.col_block)):
        tf = bench(lambda cfg=cfg: rnn_triton._forward(x, g, cfg))
        tb = bench(lambda cfg=cfg: rnn_triton._backward(dh, x, g, out, cfg))
        mark = " (default fwd)" if cfg == default_f else ""
        mark += " (default bwd)" if cfg == default_b else ""
        print(f"    {cfg.row_block:4d} {cfg.row_steps:4d} {cfg.col_steps:4d} {cfg.col_block:4d} "
              f"{cfg.num_warps:2d} | {tf:7.4f} ({fb / tf / 1e6:6.0f}) | "
              f"{tb:7.4f} ({bb / tb / 1e6:6.0f}){mark}")
    print(f"    floor at {peak_gbs:.0f} GB/s: fwd {fb / peak_gbs / 1e6:.4f} ms, "
          f"bwd {bb / peak_gbs / 1e6:.4f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16,fp32", help="comma list of bf16, fp16, fp32")
    parser.add_argument("--peak-gbs", type=float, default=3350.0,
                        help="nominal DRAM bandwidth for the floor (H100 SXM: 3350)")
    parser.add_argument("--sweep", action="store_true", help="also time other tile sizes")
    parser.add_argument("--skip-torch", action="store_true", help="time only the Triton backend")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench_rnn_gpu: CUDA is not available; nothing to measure.")
        return 0
    try:
        import triton
    except ImportError:
        print("bench_rnn_gpu: Triton is not installed; nothing to measure.")
        return 0
    from flowdeblur.ops.rnn_triton import is_available, spatial_rnn_triton

    if not is_available("cuda"):
        print("bench_rnn_gpu: the Triton backend is unavailable (TRITON_INTERPRET set?).")
        return 0
    dtypes = [PRECISIONS[d.strip()] for d in args.dtypes.split(",") if d.strip()]
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"triton {triton.__version__}  floor at {args.peak_gbs:.0f} GB/s")
    backends = [("triton", spatial_rnn_triton)]
    if not args.skip_torch:
        backends.append(("torch", spatial_rnn_torch))

    header = (f"{'shape (x)':>18} {'dtype':>8} {'backend':>7} | {'fwd ms':>8} {'GB/s':>6} "
              f"{'floor ms':>8} | {'fwd+bwd ms':>10} {'GB/s':>6} {'floor ms':>8}")
    print(header)
    print("-" * len(header))
    totals: dict[tuple[str, torch.dtype], Totals] = {}
    for dtype in dtypes:
        for shape in SHAPES:
            err = check_agreement(shape, dtype)
            for name, fn in backends:
                fwd, both = time_backend(fn, shape, dtype)
                fb = floor_bytes(shape, dtype, backward=False)
                bb = floor_bytes(shape, dtype, backward=True)
                tot = totals.setdefault((name, dtype), Totals())
                tot.fwd += fwd
                tot.both += both
                tot.fwd_floor += fb / args.peak_gbs / 1e6
                tot.both_floor += bb / args.peak_gbs / 1e6
                shape_s = "x".join(map(str, shape))
                print(f"{shape_s:>18} {str(dtype)[6:]:>8} {name:>7} | {fwd:8.4f} "
                      f"{fb / fwd / 1e6:6.0f} {fb / args.peak_gbs / 1e6:8.4f} | {both:10.4f} "
                      f"{bb / both / 1e6:6.0f} {bb / args.peak_gbs / 1e6:8.4f}")
            print(f"{'':>18} {'':>8} {'':>7}   triton vs torch forward: max rel diff {err:.2e}")
    print("-" * len(header))
    for (name, dtype), tot in totals.items():
        print(f"{'3 layers total':>18} {str(dtype)[6:]:>8} {name:>7} | {tot.fwd:8.4f} {'':>6} "
              f"{tot.fwd_floor:8.4f} | {tot.both:10.4f} {'':>6} {tot.both_floor:8.4f}")
    print("(target, H100 bf16: three layers' forward <= 0.5 ms)")

    if args.sweep:
        for dtype in dtypes:
            for shape in SHAPES:
                sweep(shape, dtype, args.peak_gbs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
