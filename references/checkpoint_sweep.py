"""Choose the step of a training run to ship: score every checkpoint of a run, its raw weights
and its weight average, on the real-footage dev clips (real_clips.py) and on a synthetic
validation set (``flowdeblur.evaluation.heldout`` with its ``VALIDATION_SEED``, not the reported
held-out seed), beside the weights the run started from.

    python references/checkpoint_sweep.py runs/cpu_continue [--steps 2000,4000] [--start FILE]
    python references/checkpoint_sweep.py runs/cpu_continue --dev motion   # the large-motion set

Weights are exported in fp32 to ``RUN/sweep/`` and scored in fp32; scores already written are
kept, so an interrupted sweep continues. The markdown table goes to stdout and
``RUN/sweep/sweep.md``, every figure to ``RUN/sweep/sweep.json`` (``sweep-motion.*`` with
``--dev motion``). The chosen weights are then
scored once on the held-out set and on the test clips, which never take part in the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import dev_mean, same_copy, score_synthetic
from real_clips import DEFINITIONS, score_dev

from flowdeblur.evaluation.heldout import VALIDATION_SEED
from flowdeblur.media.atomic import atomic_write_text
from flowdeblur.training.checkpoint import export_weights_from_checkpoint, list_checkpoints
from flowdeblur.training.config import load_config
from flowdeblur.weights import PRETRAINED


def export_checkpoints(run: Path, out: Path, steps: set[int] | None) -> dict[str, Path]:
    """``{name: fp32 weights file}`` for every checkpoint of ``run`` (those in ``steps``
    when given): ``stepN`` (raw) and, when the run keeps one, ``stepN+ema`` (the weight
    average)."""
    # The run's saved config says whether its checkpoints hold an average, so no checkpoint
    # (about 130 MB each) is read more than once per file exported.
    averaged = load_config(run / "config.yaml").ema_decay > 0
    weights = {}
    for step, path in list_checkpoints(run):
        if steps is not None and step not in steps:
            continue
        raw = out / f"step{step}.safetensors"
        if not raw.is_file():
            export_weights_from_checkpoint(path, raw)
        weights[f"step{step}"] = raw
        if averaged:
            average = out / f"step{step}_ema.safetensors"
            if not average.is_file():
                export_weights_from_checkpoint(path, average, average=True)
            weights[f"step{step}+ema"] = average
    return weights


def score_validation(out: Path, weights: dict[str, Path], samples: int) -> dict:
    """Synthetic validation PSNR/SSIM of every weights file (those not scored yet)."""
    return score_synthetic(out / "validation.json", weights.values(), samples,
                           seed=VALIDATION_SEED)


def table(weights: dict[str, Path], dev: dict, validation: dict) -> str:
    """One row per weights file: each dev clip, the dev mean and the validation PSNR, with
    their differences to the starting weights."""
    first = next(iter(dev.values()))["clips"]
    clips = list(first)
    rows = validation["rows"]

    def mean(name: str) -> float:
        return dev_mean(dev[name]["clips"], "flowdeblur")

    start_dev = mean("start")
    start_val = rows[f"flowdeblur ({weights['start']})"]["psnr"]
    head = ["weights", *clips, "dev mean", "vs start", "validation", "vs start"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|--:" * (len(head) - 1) + "|"]
    lines.append("| blurry input | "
                 + " | ".join(f"{first[c]['blurry']['psnr']:.2f}" for c in clips)
                 + f" | {dev_mean(first, 'blurry'):.2f} | | "
                 f"{rows['blurry input']['psnr']:.2f} | |")
    for name, w in weights.items():
        val = rows[f"flowdeblur ({w})"]["psnr"]
        cells = [name, *(f"{dev[name]['clips'][c]['flowdeblur']['psnr']:.2f}" for c in clips),
                 f"{mean(name):.2f}", f"{mean(name) - start_dev:+.2f}", f"{val:.2f}",
                 f"{val - start_val:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a training run folder (its checkpoints/)")
    parser.add_argument("--start", type=Path, default=PRETRAINED,
                        help="the weights the run started from (default: the shipped ones)")
    parser.add_argument("--steps", default=None,
                        help="comma-separated steps to score (default: every checkpoint)")
    parser.add_argument("--samples", type=int, default=64, help="synthetic validation scenes")
    parser.add_argument("--dev", choices=sorted(DEFINITIONS), default="small",
                        help="the real clips whose dev split is scored (motion: "
                        "references/real_clips_motion.json; default small: real_clips.json)")
    parser.add_argument("--unsharp", type=float, nargs=2, default=(0.5, 0.1),
                        metavar=("SIGMA", "AMOUNT"),
                        help="unsharp-mask baseline (flowdeblur.evaluation.heldout's tuning)")
    args = parser.parse_args(argv)
    if not list_checkpoints(args.run):
        parser.error(f"{args.run} holds no checkpoints")
    out = args.run / "sweep"
    out.mkdir(exist_ok=True)
    start = out / "start.safetensors"
    if not args.start.is_file():
        parser.error(f"--start {args.start} is not a file")
    if not same_copy(args.start, start):
        parser.error(f"{out} was scored against other starting weights than {args.start}; "
                     f"pass those as --start, or remove {out} to start over")
    steps = None
    if args.steps:
        try:
            steps = {int(s) for s in args.steps.split(",")}
        except ValueError:
            parser.error(f"--steps {args.steps}: give comma-separated step numbers")
        absent = steps - {c.step for c in list_checkpoints(args.run)}
        if absent:
            parser.error(f"{args.run} has no checkpoint of step(s) {sorted(absent)}")
    weights = {"start": start, **export_checkpoints(args.run, out, steps)}
    dev = {name: score_dev(w, tuple(args.unsharp), args.dev) for name, w in weights.items()}
    validation = score_validation(out, weights, args.samples)
    tag = "" if args.dev == "small" else f"-{args.dev}"
    atomic_write_text(out / f"sweep{tag}.json", json.dumps(
        {"weights": {k: str(v) for k, v in weights.items()}, "dev": dev, "definition": args.dev,
         "validation": validation}, indent=1))
    text = table(weights, dev, validation)
    atomic_write_text(out / f"sweep{tag}.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
