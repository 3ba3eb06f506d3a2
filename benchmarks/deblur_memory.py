"""Peak memory of deblurring one frame, by frame size: the constant behind automatic tiling.

Each size runs in a fresh process (so peaks do not mix): the shipped network deblurs one
frame pair through :func:`flowdeblur.deblur_image_pair` (fp32, CPU, the path `flowdeblur
deblur` takes for a whole frame), and the growth of the process's peak resident memory over
what it held before the call is recorded. A least-squares line through the points gives bytes
per pixel and a fixed part; src/flowdeblur/inference/memory.py uses them.

    python benchmarks/deblur_memory.py --sizes 256x256 384x512 512x768 720x1280 --json out.json
    python benchmarks/deblur_memory.py --sizes 3000x4000 --tile 256    # a tiled run's peak
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

_CHILD = """
import resource, sys, torch
import flowdeblur
torch.set_num_threads({threads})
h, w = {h}, {w}
model = flowdeblur.load_pretrained()
frame_t, frame_next = torch.rand(3, h, w), torch.rand(3, h, w)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
flowdeblur.deblur_image_pair(model, frame_t, frame_next, device="cpu", precision="fp32",
                             tile={tile})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024)  # ru_maxrss is in KiB on Linux
"""


def measure(h: int, w: int, threads: int, tile: int | None = None) -> int:
    """Peak resident bytes one (h, w) frame adds in a fresh process (whole, or in tiles)."""
    child = _CHILD.format(h=h, w=w, threads=threads, tile=tile)
    out = subprocess.run([sys.executable, "-c", child],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["256x256", "384x512", "512x768"],
                        help="HxW frame sizes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=None,
                        help="deblur in tiles of this size (then no fit is made)")
    parser.add_argument("--json", help="write the points and the fit here")
    args = parser.parse_args()
    points = []
    for size in args.sizes:
        h, w = map(int, size.split("x"))
        peak = measure(h, w, args.threads, args.tile)
        points.append({"height": h, "width": w, "pixels": h * w, "peak_bytes": peak})
        print(f"{h}x{w}: {peak / 2**20:.0f} MiB ({peak / (h * w):.0f} B/pixel)", flush=True)
    if args.tile is not None or len(points) < 2:
        return
    pixels = np.array([p["pixels"] for p in points], dtype=float)
    peaks = np.array([p["peak_bytes"] for p in points], dtype=float)
    slope, intercept = np.polyfit(pixels, peaks, 1)
    print(f"fit: {slope:.0f} B/pixel + {intercept / 2**20:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"points": points, "bytes_per_pixel": slope, "fixed_bytes": intercept},
                      f, indent=2)


if __name__ == "__main__":
    main()
