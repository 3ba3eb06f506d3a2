"""Time the compiled CPU spatial RNN (backend "cpu") against the vectorised torch backend.

Shapes: the three RNN layers of the network on a padded 720p frame (768x1280 input), fp32.

    python benchmarks/bench_rnn_cpu.py                  # forward and forward+backward table
    python benchmarks/bench_rnn_cpu.py --layouts        # vertical scans: in place vs transposed
    python benchmarks/bench_rnn_cpu.py --compile-times  # first call, cold and warm disk cache

Each figure is the median (and min) of --repeats runs after one warm-up run. Times include
allocating the outputs (on Linux their first-touch page faults are a large part of the total;
try THP_MEM_ALLOC_ENABLE=1 to let torch back big tensors with huge pages).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from flowdeblur.ops import rnn_cpu
from flowdeblur.ops.rnn_cpu import spatial_rnn_cpu
from flowdeblur.ops.rnn_torch import spatial_rnn_torch

#: (N, C, H, W) of the features at 1/2, 1/4 and 1/8 of a 768x1280 input; gates have 4C channels.
SHAPES_720P = [(1, 24, 384, 640), (1, 48, 192, 320), (1, 96, 96, 160)]


def time_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, min) wall time of ``fn`` in ms over ``repeats`` runs after one warm-up run."""
    fn()  # warm-up: compilation, first-touch allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def make_inputs(shape: tuple[int, int, int, int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randn(shape, generator=gen)
    gates = torch.rand((n, 4 * c, h, w), generator=gen) * 2 - 1
    return x, gates


def forward_and_backward(fn, x, w, grad) -> Callable[[], None]:
    x = x.clone().requires_grad_()
    w = w.clone().requires_grad_()

    def run() -> None:
        x.grad = w.grad = None
        fn(x, w).backward(grad)

    return run


def bench_backends(repeats: int) -> None:
    backends = {"cpu": spatial_rnn_cpu, "torch": spatial_rnn_torch}
    print(f"threads: torch {torch.get_num_threads()}, numba {rnn_cpu.numba.get_num_threads()}")
    print("ms, median (min)")
    print(f"{'shape (x)':<20} {'backend':<7} {'forward':>16} {'forward+backward':>18}")
    totals = {name: [0.0, 0.0, 0.0, 0.0] for name in backends}
    for shape in SHAPES_720P:
        x, w = make_inputs(shape)
        grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
        for name, fn in backends.items():
            fwd = time_ms(partial(fn, x, w), repeats)
            both = time_ms(forward_and_backward(fn, x, w, grad), repeats)
            totals[name] = [a + b for a, b in zip(totals[name], fwd + both)]
            print(f"{'x'.join(map(str, shape)):<20} {name:<7} {_cell(*fwd)} {_cell(*both):>18}")
    for name, sums in totals.items():
        print(f"{'all three':<20} {name:<7} {_cell(*sums[:2])} {_cell(*sums[2:]):>18}")


def _cell(median: float, low: float) -> str:
    return f"{median:>7.1f} ({low:>6.1f})"


def transposed_columns_forward(x, w, h, one) -> None:
    """Vertical scans the other way: copy to (N, C, W, H), run the row kernel, copy back."""
    c = x.shape[1]
    xt = x.transpose(-1, -2).contiguous()
    wt = w[:, 2 * c :].transpose(-1, -2).contiguous()
    ht = torch.empty_like(wt)
    rnn_cpu._rows_forward(xt.numpy(), wt.numpy(), ht.numpy(), 0, one)
    h[:, 2 * c :].copy_(ht.transpose(-1, -2))


def transposed_columns_backward(x, w, h, grad, grad_x, grad_w, one) -> None:
    c = x.shape[1]
    xt = x.transpose(-1, -2).contiguous()
    wt = w[:, 2 * c :].transpose(-1, -2).contiguous()
    ht = h[:, 2 * c :].transpose(-1, -2).contiguous()
    gt = grad[:, 2 * c :].transpose(-1, -2).contiguous()
    dxt, dwt = torch.empty_like(xt), torch.empty_like(wt)
    rnn_cpu._rows_backward(
        xt.numpy(), wt.numpy(), ht.numpy(), gt.numpy(), dxt.numpy(), dwt.numpy(), 0, one
    )
    grad_x.add_(dxt.transpose(-1, -2))
    grad_w[:, 2 * c :].copy_(dwt.transpose(-1, -2))


def bench_layouts(repeats: int) -> None:
    """Vertical scans (both directions): strips of columns in place vs transposed copies."""
    one = np.float32(1)
    print("ms, median (min)")
    print(f"{'shape (x)':<20} {'vertical scans':<24} {'forward':>16} {'backward':>16}")
    for shape in SHAPES_720P:
        c = shape[1]
        x, w = make_inputs(shape)
        h = rnn_cpu._forward(x, w)
        grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
        grad_x, grad_w = torch.zeros_like(x), torch.zeros_like(w)
        arrays = [t.numpy() for t in (x, w, h, grad, grad_x, grad_w)]
        label = "x".join(map(str, shape))
        for strip in (64, 256, shape[3]):
            fwd = time_ms(
                partial(rnn_cpu._columns_forward, *arrays[:3], 2 * c, one, strip), repeats
            )
            bwd = time_ms(partial(rnn_cpu._columns_backward, *arrays, 2 * c, one, strip), repeats)
            print(f"{label:<20} {f'in place, strip {strip}':<24} {_cell(*fwd)} {_cell(*bwd)}")
        fwd = time_ms(partial(transposed_columns_forward, x, w, h, one), repeats)
        bwd = time_ms(
            partial(transposed_columns_backward, x, w, h, grad, grad_x, grad_w, one), repeats
        )
        print(f"{label:<20} {'transposed copies':<24} {_cell(*fwd)} {_cell(*bwd)}")


_FIRST_CALL = """
import time
t0 = time.perf_counter()
import torch
from flowdeblur.ops.rnn_cpu import spatial_rnn_cpu
t1 = time.perf_counter()
x = torch.randn(1, 4, 8, 8, requires_grad=True)
w = (torch.rand(1, 16, 8, 8) * 2 - 1).requires_grad_()
y = spatial_rnn_cpu(x, w)
t2 = time.perf_counter()
y.sum().backward()
t3 = time.perf_counter()
print(f"{t1 - t0:.2f} {t2 - t1:.2f} {t3 - t2:.2f}")
"""


def bench_compile_times() -> None:
    """First call in a fresh process, with an empty and then a filled numba disk cache.

    Uses a throwaway NUMBA_CACHE_DIR so the package's own cache is left alone.
    """
    print(f"{'cache':<6} {'import s':>9} {'first forward s':>16} {'first backward s':>17}")
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        for label in ("cold", "warm", "warm"):
            out = subprocess.run(
                [sys.executable, "-c", _FIRST_CALL], env=env, check=True, capture_output=True,
                text=True,
            ).stdout.split()
            print(f"{label:<6} {out[0]:>9} {out[1]:>16} {out[2]:>17}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--layouts", action="store_true", help="compare vertical-scan layouts")
    parser.add_argument("--compile-times", action="store_true", help="first-call compile times")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile_times:
        bench_compile_times()
    elif args.layouts:
        bench_layouts(args.repeats)
    else:
        bench_backends(args.repeats)


if __name__ == "__main__":
    main()
