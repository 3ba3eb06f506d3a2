"""What the scene-cut test adds to `flowdeblur deblur`: its time against one forward.

    python benchmarks/bench_scene_cuts.py [--size 720 1280] [--repeats 5]

The test (flowdeblur/inference/scene_cuts.py) reuses the flow of the forward that has just run,
so its cost is one small warp at 1/4 resolution per frame; a frame found at a cut costs one
more forward. Prints the medians of ``--repeats`` alternating runs (fp32, shipped weights).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import flowdeblur
from flowdeblur.inference.scene_cuts import is_scene_cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(720, 1280), metavar=("H", "W"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = flowdeblur.load_pretrained().eval()
    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(1, 3, *args.size, generator=g) for _ in range(2))
    model(a, b)  # compile the RNN kernels and warm the allocator
    forward, test = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = model(a, b)
        t1 = time.perf_counter()
        is_scene_cut(a, b, out.flows[0])
        t2 = time.perf_counter()
        forward.append(t1 - t0)
        test.append(t2 - t1)
    f, s = statistics.median(forward), statistics.median(test)
    print(f"{args.size[0]}x{args.size[1]}: forward {f * 1000:.0f} ms, scene-cut test "
          f"{s * 1000:.1f} ms ({100 * s / f:.2f}% of the forward), medians of {args.repeats}")


if __name__ == "__main__":
    main()
