"""A batch's speed on the local engine and on a local Ray, and what a kill costs a resume.

1. Engines: the same batch (``--clips`` clips of ``--frames`` frames at ``--size``, a pan
   over a smooth random picture) deblurred by ``flowdeblur batch`` with the local engine and
   with ``--engine ray`` on a local Ray of ``--ray-cpus`` CPUs (one CPU per worker), both with
   the shipped network (or ``--weights``), ``--batch 1``, fp32 on the CPU. Frames per second
   over each batch's wall time; Ray's includes starting its workers, not Ray itself.
2. Resume: a clip of ``--resume-seconds`` at 30 fps and ``--resume-size`` deblurred into a
   video in chunks of ``--chunk-frames``, killed with SIGKILL after a random number of frames
   (``--seed``), then resumed: the frames the killed run had deblurred and the resume threw away
   (lost), the frames of the chunk it redid (recomputed, as the summary prints them) and the
   seconds lost at the measured speed.

    python benchmarks/batch_engines.py --json batch_engines.json     # 720p, as in BENCHMARKS
    python benchmarks/batch_engines.py --tiny                        # a check in a minute

Prints one JSON object (and writes it to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import tempfile
import time
from pathlib import Path

import torch

from flowdeblur.inference.batch import deblur_batch
from flowdeblur.inference.files import deblur_video
from flowdeblur.media import VideoWriter
from flowdeblur.weights import load_pretrained, load_weights


def pan(count: int, height: int, width: int, seed: int) -> list[torch.Tensor]:
    """A smooth random picture panning right by 2 pixels a frame."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 8, generator=g)
    big = torch.nn.functional.interpolate(coarse, size=(height, width + 2 * count),
                                          mode="bicubic").clamp(0, 1)[0]
    return [big[:, :, 2 * i: 2 * i + width].contiguous() for i in range(count)]


def write_clip(path: Path, count: int, height: int, width: int, seed: int, fps: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps, width=width, height=height, crf=12) as writer:
        for frame in pan(count, height, width, seed):
            writer.write(frame)
    return path


def size(text: str) -> tuple[int, int]:
    """'1280x720' -> (height, width)."""
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


def engines(work: Path, args: argparse.Namespace) -> dict:
    """Frames per second of the same batch on the local engine and on a local Ray."""
    import ray

    height, width = size(args.size)
    src = work / "clips"
    for i in range(args.clips):
        write_clip(src / f"clip{i}.mp4", args.frames, height, width, seed=i)
    options = dict(batch=1, device="cpu", precision="fp32", progress=False,
                   chunk_frames=args.chunk_frames)
    model = load_weights(args.weights) if args.weights else load_pretrained()
    local = deblur_batch([src], work / "local", model=model, **options)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level="WARNING", log_to_driver=False)
    try:
        on_ray = deblur_batch([src], work / "ray", model=model, engine="ray", **options)
    finally:
        ray.shutdown()
    frames = args.clips * args.frames
    return {"clips": args.clips, "frames": frames, "size": args.size,
            "local_fps": round(local.frames / local.seconds, 4),
            "ray_fps": round(on_ray.frames / on_ray.seconds, 4),
            "ray_cpus": args.ray_cpus, "torch_threads_local": torch.get_num_threads(),
            "local_seconds": round(local.seconds, 2), "ray_seconds": round(on_ray.seconds, 2)}


def _killed_run(src: str, out: str, weights: str | None, chunk_frames: int, progress: str) -> None:
    """The run to be killed: deblur, writing the frames done to ``progress`` after each."""
    model = load_weights(weights) if weights else load_pretrained()
    Path(progress).write_text("0 0")
    start = time.perf_counter()

    def tell(done: int, total: int) -> None:
        Path(progress).write_text(f"{done} {time.perf_counter() - start}")

    deblur_video(src, out, model=model, batch=1, device="cpu", precision="fp32",
                 progress=False, chunk_frames=chunk_frames, on_progress=tell)


def resume_loss(work: Path, args: argparse.Namespace) -> dict:
    """Kill a chunked run after a random number of frames, resume it, count what was lost."""
    height, width = size(args.resume_size)
    count = round(args.resume_seconds * 30)
    src = write_clip(work / "long.mp4", count, height, width, seed=args.seed)
    out, progress = work / "long_out.mp4", work / "progress"
    kill_at = random.Random(args.seed).randint(1, count - 1)
    child = multiprocessing.get_context("spawn").Process(
        target=_killed_run, args=(str(src), str(out), args.weights, args.chunk_frames,
                                  str(progress)))
    child.start()
    done = seconds = 0.0
    while child.is_alive():
        try:
            done, seconds = (float(v) for v in progress.read_text().split())
        except (OSError, ValueError):
            pass
        if done >= kill_at:
            break
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    model = load_weights(args.weights) if args.weights else load_pretrained()
    result = deblur_video(src, out, model=model, batch=1, device="cpu", precision="fp32",
                          progress=False, chunk_frames=args.chunk_frames, resume=True)
    per_frame = seconds / done if done else 0.0
    lost = int(done) - result.reused
    return {"frames": count, "size": args.resume_size, "chunk_frames": args.chunk_frames,
            "killed_after_frames": int(done), "reused": result.reused,
            "recomputed": result.recomputed, "lost_frames": lost,
            "seconds_per_frame": round(per_frame, 4),
            "seconds_lost": round(lost * per_frame, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=30, help="frames per clip")
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the batch's clips")
    p.add_argument("--chunk-frames", type=int, default=300)
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--resume-seconds", type=float, default=20.0)
    p.add_argument("--resume-size", default="1280x720")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", help="weights file (default: the shipped ones)")
    p.add_argument("--workdir", help="keep the clips and outputs here (default: a temporary "
                   "folder, removed)")
    p.add_argument("--tiny", action="store_true",
                   help="a quick check: 64x48 frames, short clips, chunks of 8")
    p.add_argument("--only", choices=("engines", "resume"), help="run one of the two parts")
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args()
    if args.tiny:
        args.clips, args.frames, args.size, args.chunk_frames = 3, 6, "64x48", 8
        args.resume_seconds, args.resume_size = 1.0, "64x48"
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.workdir or scratch)
        work.mkdir(parents=True, exist_ok=True)
        parts = {"engines": engines, "resume": resume_loss}
        found = {name: run(work, args) for name, run in parts.items()
                 if args.only in (None, name)}
    print(json.dumps(found, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
