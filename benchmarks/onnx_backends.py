"""The exported ONNX model in ONNX Runtime and OpenVINO against the PyTorch network, on the CPU.

One frame pair of a synthetic scene (the demo's, at ``--size``) goes through the PyTorch
network in fp32 (eager, the reference), then through the export (``flowdeblur export``, made
once and kept in the export cache unless ``--onnx`` names one) in each ``--backends`` entry:
``onnxruntime`` (fp32), ``openvino-fp32``, ``openvino-bf16`` (where OpenVINO's CPU plugin
offers bf16: its INFERENCE_PRECISION_HINT). Each runs in a fresh process, so that the peak
resident memory of one does not hide another's: the warm-up calls, then ``--repeats`` timed
calls. Printed per row: median ms per frame, peak RSS of the process, PSNR of the clamped
image against the PyTorch fp32 one, max abs difference of the unclamped images.

    python benchmarks/onnx_backends.py                                # 720x1280, all rows
    python benchmarks/onnx_backends.py --size 128x200 --repeats 2     # a quick check
    python benchmarks/onnx_backends.py --backends torch openvino-bf16 --json ov.json

Needs the onnx and openvino extras (``pip install -e ".[onnx,openvino]"``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROWS = ("torch", "onnxruntime", "openvino-fp32", "openvino-bf16")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
             "avx512_fp16", "amx_fp16")


def scene_frames(h: int, w: int) -> torch.Tensor:
    """(1, 6, h, w): frame 0 of the demo's synthetic scene, then frame 1, in [0, 1]."""
    from flowdeblur.apps.demo import demo_scene
    from flowdeblur.data.synthetic import make_clip

    blur = make_clip(2, (h, w), seed=0, config=demo_scene((h, w)))["blur"].float().clamp(0, 1)
    return torch.cat([blur[0:1], blur[1:2]], dim=1)


def _row(row: str, onnx_path: str | None, frames_path: str, warmup: int, repeats: int,
         threads: int, queue) -> None:
    """Child process: time one row; put (name, precision, seconds per call, peak RSS bytes,
    output path) on ``queue``."""
    import flowdeblur
    from flowdeblur.runtime.backends import ExportedNetwork

    torch.set_num_threads(threads)
    frames = torch.from_numpy(np.load(frames_path))
    if row == "torch":
        model = flowdeblur.load_pretrained().eval()

        def call():
            with torch.no_grad():
                return model(frames[:, :3], frames[:, 3:]).image

        precision = "fp32"
    else:
        backend, _, precision = row.partition("-")
        network = ExportedNetwork(onnx_path, backend, precision or "fp32")
        precision = network.precision

        def call():
            return network(frames[:, :3], frames[:, 3:]).image

    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        image = call()
        seconds.append(time.perf_counter() - start)
    out = Path(frames_path).with_name(f"{row}.npy")
    np.save(out, image.numpy())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    queue.put((row, precision, seconds, peak, str(out)))


def run_row(row: str, **kwargs) -> tuple:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_row, args=(row,), kwargs={**kwargs, "queue": queue})
    child.start()
    result = queue.get()
    child.join()
    return result


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def machine() -> dict:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"cpu": model, "flags": [f for f in CPU_FLAGS if f in flags],
            "cores": multiprocessing.cpu_count(),
            "date": datetime.date.today().isoformat(), "command": " ".join(sys.argv)}


def export_path(onnx: str | None) -> str:
    if onnx:
        return onnx
    import flowdeblur
    from flowdeblur.weights.onnx_export import cached_export

    start = time.perf_counter()
    path = cached_export(flowdeblur.load_pretrained())
    print(f"export: {path} ({time.perf_counter() - start:.0f} s, 0 if cached)", flush=True)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="720x1280", help="HxW (default 720x1280)")
    parser.add_argument("--backends", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--onnx", help="an export to time (default: the cached export of the "
                        "shipped weights, made on first use)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (ONNX Runtime and OpenVINO use their defaults)")
    parser.add_argument("--json", help="also write the rows and the machine here")
    args = parser.parse_args()
    h, w = map(int, args.size.split("x"))
    onnx = export_path(args.onnx) if set(args.backends) - {"torch"} else None
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores, flags {' '.join(info['flags'])}; "
          f"{info['date']}; {h}x{w}, median of {args.repeats} after {args.warmup} warm-up")
    rows = ["torch"] + [r for r in args.backends if r != "torch"]  # torch: the reference
    with tempfile.TemporaryDirectory() as tmp:
        frames_path = str(Path(tmp) / "frames.npy")
        np.save(frames_path, scene_frames(h, w).numpy())
        results, reference = [], None
        print("| backend | precision | ms/frame | peak RSS (MiB) | PSNR vs torch fp32 (dB) "
              "| max abs diff |\n|---|---|---|---|---|---|")
        for row in rows:
            name, precision, seconds, peak, out = run_row(
                row, onnx_path=onnx, frames_path=frames_path, warmup=args.warmup,
                repeats=args.repeats, threads=args.threads)
            image = np.load(out)
            reference = image if reference is None else reference
            entry = {"backend": name, "precision": precision,
                     "ms_per_frame": 1000 * statistics.median(seconds),
                     "peak_rss_mib": peak / 2**20, "psnr_vs_torch_fp32": psnr(image, reference),
                     "max_abs_diff": float(np.abs(image - reference).max())}
            results.append(entry)
            print(f"| {name} | {precision} | {entry['ms_per_frame']:.0f} | "
                  f"{entry['peak_rss_mib']:.0f} | {entry['psnr_vs_torch_fp32']:.2f} | "
                  f"{entry['max_abs_diff']:.2e} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "size": [h, w],
                                               "rows": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
