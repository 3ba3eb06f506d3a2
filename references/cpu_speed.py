"""The CPU speed plan: each way of running the network on the CPU, timed at 720p and scored.

Paths (``--paths``, names of :data:`PATHS`): fp32 and bf16 eager (NCHW, and bf16 in
channels_last), ``torch.compile`` with frozen weights in fp32 and bf16, int8 (the
convolutions quantized, ``flowdeblur.runtime.int8``, scales from synthetic scenes, the three
full-resolution layers of ``KEEP_FLOAT`` in float), and "int8 all layers" (those three
quantized too, scales calibrated here the same way): what int8 gains by keeping them in float
is the difference of the two rows. Per path:

* ``--timing``: one forward of the synthetic check frame (720x1280, or ``--size HxW``),
  milliseconds, median of
  ``--repeats`` rounds in which the paths take turns; the first call (compile) apart; the
  process's peak resident memory during one forward (``VmHWM`` after resetting it).
* ``--quality``: PSNR of its output against the fp32 output on the check frame, and the mean
  PSNR over the dev clips of both real-clip definitions (``references/real_clips.json`` and
  ``real_clips_motion.json``) minus fp32's: the dB the path loses.
* ``--command``: the whole ``flowdeblur deblur`` on a clip of ``--command-frames`` frames
  (default 8) of ``--size`` (720p), per ``--precision`` in ``--command-precisions``, median of
  ``--repeats`` alternating runs.

    python references/cpu_speed.py --timing --quality --command [--paths fp32,bf16,...]
        [--repeats 3] [--size 720x1280] [--json OUT]

The dB that int8 loses through the layers it keeps in float, and their cost in time:

    python references/cpu_speed.py --quality --timing --paths "fp32,int8,int8 all layers"
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import real_clips
import torch

import flowdeblur
from flowdeblur.cli.bench import parse_size
from flowdeblur.data.synthetic import make_clip
from flowdeblur.errors import UserError
from flowdeblur.evaluation.metrics import psnr
from flowdeblur.media import VideoWriter
from flowdeblur.media.atomic import atomic_write_text
from flowdeblur.runtime import Runtime
from flowdeblur.runtime.device import cpu_flags
from flowdeblur.weights import PRETRAINED
from flowdeblur.weights.int8 import attach_scales, calibrate_on_synthetic_scenes

#: Path name -> Runtime.resolve arguments (device cpu, purpose deblur).
PATHS = {
    "fp32": {"precision": "fp32", "mode": "eager"},
    "bf16": {"precision": "bf16", "mode": "eager"},
    "bf16 channels_last": {"precision": "bf16", "mode": "eager", "channels_last": True},
    "fp32 compile": {"precision": "fp32", "mode": "compile"},
    "bf16 compile": {"precision": "bf16", "mode": "compile"},
    "int8": {"precision": "int8"},
    "int8 all layers": {"precision": "int8"},
}
SIZE = (720, 1280)


def path_models(model: torch.nn.Module, names: list[str]) -> dict[str, torch.nn.Module]:
    """The network each path runs: ``model``; for "int8" with the scales shipped beside the
    weights, for "int8 all layers" a copy with scales calibrated here for every layer
    quantized (``keep_float=()``)."""
    models = {}
    for name in names:
        if name == "int8":
            models[name] = attach_scales(model, PRETRAINED)
        elif name == "int8 all layers":
            net = copy.deepcopy(model)
            net.int8_qparams = calibrate_on_synthetic_scenes(net, keep_float=())
            net.int8_keep_float = ()
            models[name] = net
        else:
            models[name] = model
    return models


def check_frames(size: tuple[int, int] = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames t and t+1 of the synthetic check clip (seed 0) of ``size``, (1, 3, H, W)."""
    blur = make_clip(2, size, seed=0)["blur"]
    return blur[0:1], blur[1:2]


def cpu_description() -> str:
    """The CPU's model name and the flags the paths depend on."""
    name = next((line.split(":", 1)[1].strip() for line in
                 Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), "unknown CPU")
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return f"{name}; flags: {' '.join(f for f in wanted if f in cpu_flags())}"


def peak_rss_mib() -> float:
    """The process's peak resident memory since the last :func:`reset_peak` (MiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def timing(models: dict, names: list[str], repeats: int, size: tuple[int, int]) -> dict:
    frame_t, frame_next = check_frames(size)
    rows, forwards = {}, {}
    for name in names:
        forward = Runtime.resolve("cpu", **PATHS[name]).prepare(models[name])
        start = time.perf_counter()
        forward(frame_t, frame_next)
        rows[name] = {"first_s": time.perf_counter() - start, "ms": []}
        reset_peak()
        forward(frame_t, frame_next)
        rows[name]["peak_mib"] = peak_rss_mib()
        forwards[name] = forward
        print(f"[timing] {name}: first call {rows[name]['first_s']:.1f} s", flush=True)
    for _ in range(repeats):
        for name in names:
            start = time.perf_counter()
            forwards[name](frame_t, frame_next)
            rows[name]["ms"].append(1000 * (time.perf_counter() - start))
    for row in rows.values():
        row["median_ms"] = statistics.median(row["ms"])
    return rows


def dev_psnr(model, runtime: Runtime, definition: str) -> dict[str, float]:
    """Mean PSNR (dB) of the path's 8-bit output on each dev clip of ``definition``."""
    spec = real_clips.load_definition(real_clips.DEFINITIONS[definition])
    clips = [c for c in spec["clips"] if c["split"] == "dev"]
    built = real_clips.built_clips(spec, clips, real_clips.DEFAULT_CACHE)
    scores = {}
    for name, clip in built.items():
        out = real_clips.deblur_clip(model, real_clips.to_tensor(clip.blurry), "cpu",
                                     runtime=runtime)
        scores[name] = psnr(out, real_clips.to_tensor(clip.sharp)).mean().item()
    return scores


def quality(models: dict, names: list[str], size: tuple[int, int]) -> dict:
    frame_t, frame_next = check_frames(size)
    fp32 = models["fp32"]
    reference = Runtime.resolve("cpu", "fp32").prepare(fp32)(frame_t, frame_next).image
    rows = {}
    for name in names:
        runtime = Runtime.resolve("cpu", **PATHS[name])
        image = runtime.prepare(models[name])(frame_t, frame_next).image
        row = {"check_psnr_vs_fp32": psnr(image.clamp(0, 1), reference.clamp(0, 1)).item()}
        for definition in ("small", "motion"):
            row[f"dev_{definition}"] = dev_psnr(models[name], runtime, definition)
        rows[name] = row
        print(f"[quality] {name}: {json.dumps(row)}", flush=True)
    for row in rows.values():
        for definition in ("small", "motion"):
            mine = np.mean(list(row[f"dev_{definition}"].values()))
            fp32 = np.mean(list(rows["fp32"][f"dev_{definition}"].values()))
            row[f"dev_{definition}_loss_db"] = float(fp32 - mine)
    return rows


def command(precisions: list[str], repeats: int, size: tuple[int, int],
            frames: int = 8) -> dict:
    """Seconds of the whole ``flowdeblur deblur`` on a clip of ``frames`` frames of ``size``,
    per precision."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        with VideoWriter(clip, fps=30, width=size[1], height=size[0], crf=12) as writer:
            for frame in make_clip(frames, size, seed=1)["blur"]:
                writer.write(frame)
        seconds = {p: [] for p in precisions}
        for i in range(repeats):
            for p in precisions:
                out = Path(tmp) / f"out-{p}-{i}.mp4"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "flowdeblur", "deblur", str(clip), "-o",
                                str(out), "--precision", p, "--device", "cpu", "-q"],
                               check=True, capture_output=True)
                seconds[p].append(time.perf_counter() - start)
                print(f"[command] --precision {p}: {seconds[p][-1]:.1f} s", flush=True)
    return {p: {"s": s, "median_s": statistics.median(s)} for p, s in seconds.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paths", default=",".join(PATHS))
    p.add_argument("--timing", action="store_true")
    p.add_argument("--quality", action="store_true")
    p.add_argument("--command", action="store_true")
    p.add_argument("--command-precisions", default="fp32,auto")
    p.add_argument("--command-frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", default="x".join(map(str, SIZE)), metavar="HxW",
                   help="the check frame's and the command's clip's size (default 720x1280)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    names = args.paths.split(",")
    unknown = sorted(set(names) - set(PATHS))
    if unknown:
        p.error(f"unknown paths {unknown}; choose from {list(PATHS)}")
    try:
        args.size = parse_size(args.size)
    except UserError as e:
        p.error(str(e))
    models = path_models(flowdeblur.load_pretrained(), ["fp32", *names])
    report = {"cpu": cpu_description(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "size": list(args.size),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.quality:
        report["quality"] = quality(models, ["fp32"] + [n for n in names if n != "fp32"],
                                    args.size)
    if args.timing:
        report["timing"] = timing(models, names, args.repeats, args.size)
    if args.command:
        report["command"] = command(args.command_precisions.split(","), args.repeats,
                                    args.size, args.command_frames)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")


if __name__ == "__main__":
    main()
