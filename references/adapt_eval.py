"""Test-time adaptation (``flowdeblur deblur --adapt``, flowdeblur.training.adapt) scored on
the dev clips of the large-motion real-footage set (references/real_clips_motion.json).

For each dev clip and each step count of ``--steps``, the shipped weights (or ``--weights``)
are adapted on that clip's own blurry frames alone (0 steps: not adapted) and the clip is
deblurred in fp32 with the result (references/real_clips.py ``score_clip``). Per clip: PSNR of
the blurry input, of the tuned unsharp mask and of flowdeblur at each step count, each with
its PSNR over the moving pixels (``moving_mask``); the reblurring error of the outputs at
duty 0.75 with the starting weights' flows, beside the identity's (``reblur_error``); and the
seconds adaptation took. The test split is never scored: ``--clips`` accepts dev clips only.

    python references/adapt_eval.py --steps 0,50,200
    python references/adapt_eval.py --steps 0,2 --clips opencv-tree --json /tmp/adapt.json

Every result is written to the ``--json`` file as soon as it exists and read back from there,
so an interrupted run continues where it stopped; a file written with other settings (weights,
crop, seed, learning rate, anchor, precision, unsharp mask) is refused rather than mixed. The
markdown table goes to stdout. Seconds are this machine's, with its thread count recorded.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, comma_list, read_json
from real_clips import (
    DEFAULT_CACHE,
    DEFAULT_CONFIG,
    DEFINITIONS,
    built_clips,
    load_definition,
    moving_mask,
    score_clip,
    to_tensor,
    tuned_unsharp,
    warn_on_tools,
)

import flowdeblur
from flowdeblur.errors import UserError
from flowdeblur.media.atomic import atomic_write_text, file_sha256
from flowdeblur.training.adapt import DEFAULT_CROP, DEFAULT_LR, adapt_to_clip, reblur_error
from flowdeblur.weights import PRETRAINED

DEFINITION = DEFINITIONS["motion"]
DEFAULT_JSON = ROOT / "runs" / "adapt_eval.json"


def dev_clips(definition: dict, names: list[str] | None) -> list[dict]:
    """The dev clips of ``definition``, or those of them named; SystemExit for a name that is
    not a dev clip (test clips are never scored here)."""
    dev = [c for c in definition["clips"] if c["split"] == "dev"]
    if not names:
        return dev
    known = {c["name"] for c in dev}
    wrong = [n for n in names if n not in known]
    if wrong:
        raise SystemExit(f"not dev clips of {DEFINITION.name}: {', '.join(wrong)} (dev: "
                         f"{', '.join(sorted(known))}; the test split is never scored here)")
    return [c for c in dev if c["name"] in names]


def parse_steps(text: str) -> list[int]:
    """``0,50,200`` -> [0, 50, 200]; SystemExit for anything but distinct integers >= 0."""
    try:
        steps = sorted(comma_list(text, "--steps", int))
    except UserError as e:
        raise SystemExit(str(e)) from None
    if steps[0] < 0:
        raise SystemExit(f"--steps takes integers >= 0, not {text!r}")
    return steps


def settings_of(args: argparse.Namespace, unsharp: tuple[float, float]) -> dict:
    """What every result of one file shares."""
    weights = Path(args.weights) if args.weights else PRETRAINED
    return {"definition": DEFINITION.name, "weights": str(weights),
            "weights_sha256": file_sha256(weights), "crop": args.crop, "seed": args.seed,
            "lr": args.lr, "synthetic_weight": args.synthetic_weight,
            "precision": args.precision, "unsharp": list(unsharp)}


def known_unsharp(path: Path) -> tuple[float, float]:
    """The unsharp mask of the results file at ``path`` (tuned when it was begun), or tuned
    now on training scenes (real_clips.tuned_unsharp) for a new file."""
    done = read_json(path)
    return tuple(done["settings"]["unsharp"]) if done else tuned_unsharp(DEFAULT_CONFIG)


def open_results(path: Path, settings: dict) -> dict:
    """The results file at ``path`` (a new one when absent); SystemExit when it was written
    with other settings."""
    done = read_json(path)
    if done is None:
        return {"settings": settings, "machine": machine(), "clips": {}}
    if done["settings"] != settings:
        differ = sorted(k for k in settings if done["settings"].get(k) != settings[k])
        raise SystemExit(f"{path} holds results of other settings ({', '.join(differ)}); "
                         "give another --json")
    return done


def machine() -> dict:
    """Where the seconds were measured."""
    return {"processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads()}


def score_steps(model, built, steps: int, args: argparse.Namespace, unsharp, mask) -> dict:
    """One clip's scores after ``steps`` adaptation steps on its blurry frames."""
    frames = list(to_tensor(built.blurry))
    start = time.perf_counter()
    history: list[dict] = []
    adapted = model if steps == 0 else adapt_to_clip(
        model, frames, steps, crop=args.crop, lr=args.lr,
        synthetic_weight=args.synthetic_weight, seed=args.seed, precision=args.precision,
        progress=not args.quiet, history=history)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        row = score_clip(adapted, built.blurry, built.sharp, unsharp, "cpu", mask=mask)
    error = reblur_error(adapted, frames, flows_from=model)
    last = history[-10:]
    return {**row, "adapt_seconds": seconds, "reblur": error.model,
            "reblur_identity": error.identity,
            "train_reblur_last10": float(np.mean([h["reblur"] for h in last])) if last else None}


def run(args: argparse.Namespace) -> dict:
    """Every (clip, step count) not in the results file yet, scored and written there."""
    definition = load_definition(DEFINITION)
    warn_on_tools(definition["tools"])
    clips = dev_clips(definition, args.clips)
    built = built_clips(definition, clips, args.cache)
    unsharp = tuple(args.unsharp) if args.unsharp else known_unsharp(args.json)
    results = open_results(args.json, settings_of(args, unsharp))
    model = flowdeblur.load_weights(args.weights) if args.weights else flowdeblur.load_pretrained()
    measures = definition["measures"]
    for clip in clips:
        name, b = clip["name"], built[clip["name"]]
        mask = moving_mask(b.blurry, b.sharp, measures["moving_threshold"],
                           measures["moving_box"])
        rows = results["clips"].setdefault(name, {})
        for steps in args.steps:
            if str(steps) in rows:
                continue
            print(f"== {name}: {steps} steps", flush=True)
            rows[str(steps)] = score_steps(model, b, steps, args, unsharp, mask)
            atomic_write_text(args.json, json_text(results))
    return results


def json_text(results: dict) -> str:
    return json.dumps(results, indent=1) + "\n"


def table(results: dict, steps: list[int]) -> str:
    """Per dev clip and their mean: blurry, unsharp, flowdeblur at each step count (PSNR /
    moving-pixel PSNR), its reblurring error (identity's in the blurry column) and seconds."""
    head = ["clip", "blurry", "unsharp"] + [f"{s} steps" for s in steps]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|--:" * (len(head) - 1) + "|"]
    names = [n for n, rows in results["clips"].items() if all(str(s) in rows for s in steps)]

    def cell(scores: dict) -> str:
        return f"{scores['psnr']:.2f} / {scores['moving_psnr']:.2f}"

    means: dict[str, list] = {}
    for name in names:
        rows = results["clips"][name]
        first = rows[str(steps[0])]
        cells = [f"{cell(first['blurry'])} (reblur {first['reblur_identity']:.4f})",
                 cell(first["unsharp"])]
        for s in steps:
            r = rows[str(s)]
            cells.append(f"{cell(r['flowdeblur'])} (reblur {r['reblur']:.4f}, "
                         f"{r['adapt_seconds']:.0f} s)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        for key, scores in [("blurry", first["blurry"]), ("unsharp", first["unsharp"])] + \
                [(str(s), rows[str(s)]["flowdeblur"]) for s in steps]:
            means.setdefault(key, []).append((scores["psnr"], scores["moving_psnr"]))
    if names:
        mean = {k: np.mean(v, axis=0) for k, v in means.items()}
        cells = [f"{mean[k][0]:.2f} / {mean[k][1]:.2f}"
                 for k in ["blurry", "unsharp"] + [str(s) for s in steps]]
        lines.append("| **dev mean** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=parse_steps, default=parse_steps("0,50,200"),
                   help="adaptation step counts, comma-separated (0: the weights as they are; "
                   "default 0,50,200)")
    p.add_argument("--clips", type=lambda s: [n for n in s.split(",") if n], default=None,
                   help="only these dev clips, comma-separated (default: every dev clip)")
    p.add_argument("--weights", default=None, help="starting weights (default: the shipped)")
    p.add_argument("--crop", type=int, default=DEFAULT_CROP, help="adaptation crop side")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="adaptation learning rate")
    p.add_argument("--synthetic-weight", type=float, default=1.0,
                   help="weight of the synthetic Eq. 14 anchor (0: reblurring alone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="of the adaptation (scores are fp32)")
    p.add_argument("--unsharp", nargs=2, type=float, metavar=("SIGMA", "AMOUNT"), default=None,
                   help="skip the unsharp-mask tuning and use these parameters")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="real clips' cache")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON,
                   help=f"results, read back to continue (default {DEFAULT_JSON})")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = run(args)
    settings = results["settings"]
    print(f"weights {settings['weights']}; adaptation crop {settings['crop']}, lr "
          f"{settings['lr']}, synthetic weight {settings['synthetic_weight']}, seed "
          f"{settings['seed']}, {settings['precision']}; unsharp {settings['unsharp']}; "
          f"cells: PSNR / moving-pixel PSNR (dB)")
    print(table(results, args.steps))


if __name__ == "__main__":
    main()
