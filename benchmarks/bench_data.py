"""Throughput of the synthetic data engine: samples per second on the CPU and on the GPU.

    python benchmarks/bench_data.py                      # every available device, 256x256, batch 20
    python benchmarks/bench_data.py --device cpu --iters 2
    python benchmarks/bench_data.py --device cuda --iters 50 --augment 192
    python benchmarks/bench_data.py --device cuda --renderer torch   # the unfused reference

Prints one JSON line per device: samples/s, ms per batch (median and mean over the timed
batches), the mean and largest sub-frame counts. The first batches (texture bank build,
allocator warm-up) are not timed. Runs with or without CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from flowdeblur.data import SceneConfig, SyntheticScenes, augment


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(device: torch.device, *, batch: int, size: int, iters: int, warmup: int,
          three_frames: bool, crop: int | None, seed: int, renderer: str) -> dict:
    cfg = SceneConfig(size=(size, size), three_frames=three_frames, renderer=renderer)
    scenes = SyntheticScenes(cfg, seed=seed, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    for _ in range(warmup):
        out = scenes.sample(batch)
        if crop:
            augment(out, crop_size=(crop, crop), generator=gen)
    _sync(device)
    times, subframes = [], []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = scenes.sample(batch)
        if crop:
            out = augment(out, crop_size=(crop, crop), generator=gen)
        _sync(device)
        times.append(time.perf_counter() - t0)
        subframes.append(scenes.last_subframes)
    total = sum(times)
    return {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "renderer": renderer, "batch": batch, "size": size, "three_frames": three_frames,
        "augment_crop": crop,
        "iters": iters, "samples_per_s": round(batch * iters / total, 2),
        "ms_per_batch_median": round(1000 * statistics.median(times), 2),
        "ms_per_batch_mean": round(1000 * total / iters, 2),
        "subframes_mean": round(statistics.mean(subframes), 1),
        "subframes_max": max(subframes),
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iters", type=int, default=None, help="timed batches (cpu 3, cuda 30)")
    p.add_argument("--warmup", type=int, default=None, help="untimed batches (cpu 1, cuda 5)")
    p.add_argument("--three-frames", action="store_true")
    p.add_argument("--augment", type=int, default=None, metavar="CROP",
                   help="also augment each batch to CROP x CROP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--renderer", choices=["auto", "torch", "triton", "numba"], default="auto",
                   help="auto: fused Triton kernel on CUDA, numba on CPU")
    args = p.parse_args(argv)
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            raise SystemExit("bench_data: --device cuda but CUDA is not available")
    for dev in devices:
        gpu = dev.type == "cuda"
        iters = args.iters if args.iters is not None else (30 if gpu else 3)
        warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
        print(json.dumps(bench(dev, batch=args.batch, size=args.size, iters=iters,
                               warmup=warmup, three_frames=args.three_frames,
                               crop=args.augment, seed=args.seed, renderer=args.renderer)),
              flush=True)


if __name__ == "__main__":
    main()
