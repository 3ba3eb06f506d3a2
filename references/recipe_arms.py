"""Training recipes compared at a fixed budget: each arm continues the shipped weights for the
same number of steps from references/configs/cpu_recipe.yaml, changing one thing, and is
scored in fp32 on the real-footage dev clips (real_clips.py; ``--dev motion``, the default:
the large-motion set, with PSNR over moving pixels and flicker; ``--dev small``: the first set)
and on the held-out synthetic set (flowdeblur.evaluation.heldout), against the same baseline
run. The training's wall time is recorded per arm (``train_seconds.txt`` in its run folder).

    python references/recipe_arms.py --out runs/arms --arms baseline,ema,degrade,photos
    python references/recipe_arms.py --out runs/arms --arms baseline,ema --seeds 21,22

An arm run with ``ema_decay`` yields two sets of weights: the average's (exported by the run,
scored as ``ARM+ema``) and the raw weights of its last checkpoint (scored as ``ARM``), so the
weight average is measured inside every such run at no extra training cost.

``flow_pretrain`` is the one arm in two phases: stage-1 flow training (``stage=flow``, the
flow network alone against ground-truth flow) for the first half of the steps, then the
baseline's joint training from those weights for the second half, so its budget equals the
others'. ``--init`` starts every arm (and the scored ``start`` row) from other weights than the
shipped file, e.g. those an earlier table started from, to add seeds to it; ``--set`` adds
overrides to every arm, the baseline included (e.g. ``cpu_amp=true``).

    python references/recipe_arms.py --out runs/arms_flow --arms baseline,flow_pretrain
    python references/recipe_arms.py --out runs/arms5 --arms baseline,degrade --seeds 22 \
        --init old_weights.safetensors

Resumable: an arm whose weights exist is not trained again (an interrupted one resumes from
its checkpoint), and scores already written are kept. The markdown table goes to stdout and
``OUT/arms.md``, every figure to ``OUT/arms.json``. Training photographs for the ``photos`` arm:
``python references/training_photos.py`` (default folder below); real videos for the ``reblur``
arm: ``python references/reblur_videos.py``; pairs for the ``real_pairs`` arm: ``python
references/real_pairs.py``. Never choose an arm on the test clips: they are
scored only for the final weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import CONFIGS, ROOT, dev_mean, same_copy, score_synthetic
from real_clips import DEFINITIONS, score_dev
from real_pairs import DEFAULT_OUT as REAL_PAIRS
from reblur_videos import video_paths

from flowdeblur.cli import main as flowdeblur_main
from flowdeblur.errors import UserError
from flowdeblur.media.atomic import atomic_write_text
from flowdeblur.training.checkpoint import export_weights_from_checkpoint, latest_checkpoint
from flowdeblur.training.config import load_config
from flowdeblur.weights import PRETRAINED

RECIPE = CONFIGS / "cpu_recipe.yaml"
PHOTOS = Path.home() / ".cache" / "flowdeblur" / "training_photos"

EMA = "ema_decay=0.998"
#: The real videos of the reblurring arms (references/configs/reblur_videos.json).
REBLUR_VIDEOS = f"data.unlabelled_videos={json.dumps([str(p) for p in video_paths()])}"

#: arm -> overrides of references/configs/cpu_recipe.yaml (one change each against "baseline"; the
#: weight average, which does not change training, is tracked alongside).
ARMS: dict[str, list[str]] = {
    "baseline": [],
    "ema": [EMA],
    "charbonnier": ["image_loss=charbonnier", EMA],
    "lr_constant": ["schedule.kind=constant", EMA],
    # The peak of references/configs/cpu_continue.yaml, to separate its learning rate from its
    # data.
    "lr3e-4": ["optim.lr=3e-4", EMA],
    "degrade": ["data.degrade={noise_probability: 0.5, compression_probability: 0.3}",
                "data.synthetic.motion_range=[0.0, 1.0]", EMA],
    "photos": [f"data.synthetic.photo_dirs=[{PHOTOS}]", EMA],
    # The paper's 256-pixel crops at the baseline's pixels per step (2 x 256^2 = 8 x 128^2).
    "crop256": ["data.crop_size=256", "data.batch_size=2", "data.scene_size=288", EMA],
    # The second phase of a two-phase arm (FIRST_PHASE below): the baseline's joint training.
    "flow_pretrain": [EMA],
    # The motions and exposures of the large-motion real clips (references/real_clips_motion
    # .json: blur 10-40 px over moving pixels, median duty >= 0.75): blur of 8-40 px instead
    # of 2-40 px, duty 0.5-1.0 instead of 0.25-1.0.
    "large_motion": ["data.synthetic.motion_range=[0.4, 1.0]",
                     "data.synthetic.duty_cycle=[0.5, 1.0]", EMA],
    # The same with room for the motion: 192-pixel crops at about the baseline's pixels per
    # step (4 x 192^2 = 1.1 x 8 x 128^2).
    "large_motion_192": ["data.synthetic.motion_range=[0.4, 1.0]",
                         "data.synthetic.duty_cycle=[0.5, 1.0]", "data.crop_size=192",
                         "data.batch_size=4", "data.scene_size=224", EMA],
    # The reblurring loss on real blurry footage without ground truth beside Eq. 14 (4 triples
    # of references/configs/reblur_videos.json per step, no dev or test source; fetch them
    # first: python references/reblur_videos.py). Weight 0.003: at the shipped weights on this
    # recipe's batches the reblurring term's gradient norm is 73-249x Eq. 14's at weight 1
    # (four batches), so 0.2-0.75x at 0.003.
    "reblur": [REBLUR_VIDEOS, "reblur.weight=0.003", "reblur.batch_size=4", EMA],
    # The same at ten times the weight: the reblurring term's gradient 2-7.5x Eq. 14's.
    "reblur_x10": [REBLUR_VIDEOS, "reblur.weight=0.03", "reblur.batch_size=4", EMA],
    # Half of each batch from blurry/sharp pairs that references/real_pairs.py makes from the
    # same videos the way the large-motion real-footage set makes its clips (DIS-flow
    # interpolation averaged in linear light over duty 0.5-1.0; build them first).
    "real_pairs": ["data.source=mix", f"data.real_root={REAL_PAIRS}", "data.real_layout=folders",
                   "data.real_fraction=0.5", "data.num_workers=1", EMA],
}

#: Two-phase arms -> overrides of their first phase, which takes the first half of the steps;
#: the second phase (the arm's ARMS entry) starts from the first phase's exported weights.
#: The paper pre-trains the flow network (stage 1) before joint training (stage 2).
FIRST_PHASE: dict[str, list[str]] = {"flow_pretrain": ["stage=flow"]}


def train_arm(out: Path, arm: str, seed: int, common: list[str]) -> dict[str, Path]:
    """Train one arm (or resume it); returns {name: weights file}: ``ARM_sSEED`` (the raw
    weights) and, when the run keeps a weight average, ``ARM+ema_sSEED``. ``common``: the
    overrides every arm shares (``--init``, ``--set``)."""
    run = out / f"{arm}_s{seed}"
    weights = run / "weights.safetensors"
    if not weights.is_file():
        overrides = [*common, *ARMS[arm]]
        if arm in FIRST_PHASE:
            steps = recipe_steps(common)
            first = run / "phase1"
            if not (first / "weights.safetensors").is_file():
                run_training(first, f"{arm} phase 1", seed,
                              [*common, *FIRST_PHASE[arm], f"steps={steps // 2}"])
            overrides += [f"model.init_weights={first / 'weights.safetensors'}",
                          f"steps={steps - steps // 2}"]
        run_training(run, arm, seed, overrides)
    if EMA not in ARMS[arm]:
        return {f"{arm}_s{seed}": weights}
    raw = run / "raw.safetensors"
    if not raw.is_file():
        export_weights_from_checkpoint(latest_checkpoint(run), raw)
    return {f"{arm}_s{seed}": raw, f"{arm}+ema_s{seed}": weights}


def recipe_steps(common: list[str]) -> int:
    """The budget of every arm: ``steps`` of the recipe under ``common``."""
    return load_config(RECIPE, common).steps


def run_training(run: Path, name: str, seed: int, overrides: list[str]) -> None:
    """``flowdeblur train`` of the recipe with ``overrides`` into ``run``; a run with
    checkpoints resumes. UserError when the command fails."""
    args = ["train", "--config", str(RECIPE), f"run_dir={run}", f"seed={seed}", *overrides]
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()):
        args.append("--resume")
    print(f"== training {name} (seed {seed}): {' '.join(args[1:])}", flush=True)
    start = time.perf_counter()
    if flowdeblur_main(args) != 0:
        raise UserError(f"training {name} (seed {seed}) failed; see the message above")
    # Wall time of the training, summed over resumes (the arms table's "train min").
    clock = run / "train_seconds.txt"
    spent = float(clock.read_text()) if clock.is_file() else 0.0
    atomic_write_text(clock, f"{spent + time.perf_counter() - start:.1f}\n")


def start_weights(out: Path, init: Path | None) -> Path:
    """A copy of the weights every arm starts from, in ``OUT/start``, so that its scores are
    cached beside it (never beside the package's shipped file). UserError when ``init`` is
    missing or ``OUT`` was started from other weights."""
    source = init or PRETRAINED
    if not source.is_file():
        raise UserError(f"--init {source}: no such file")
    target = out / "start" / "start.safetensors"
    if not same_copy(source, target):
        raise UserError(f"{out} was started from other weights than {source}; use another --out")
    return target


def score_heldout(out: Path, weights: dict[str, Path], samples: int) -> dict:
    """Held-out synthetic PSNR/SSIM of every arm (the set is drawn once), in OUT/heldout.json."""
    return score_synthetic(out / "heldout.json", weights.values(), samples)


def _clip_mean(clips: dict, method: str, metric: str) -> float:
    """Mean of one metric of ``method`` over the clips of a real-clip score ("" if absent)."""
    values = [c[method][metric] for c in clips.values() if metric in c[method]]
    return sum(values) / len(values) if values else float("nan")


def _train_minutes(weights: Path) -> str:
    clock = weights.parent / "train_seconds.txt"
    return f"{float(clock.read_text()) / 60:.1f}" if clock.is_file() else ""


def table(weights: dict[str, Path], dev: dict, heldout: dict) -> str:
    """One row per arm: dev clips (each and mean), the dev mean over moving pixels and of the
    flicker (8-bit levels), held-out synthetic PSNR, with the differences to the baseline of
    the same seed (``start``, the weights every arm starts from, has no seed and no
    difference), and the training's wall time."""
    first = next(iter(dev.values()))["clips"]
    clips = list(first)
    rows = heldout["rows"]
    head = ["arm", *clips, "dev mean", "vs baseline", "moving px", "flicker",
            "held-out synthetic", "vs baseline", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    blurry = ["blurry input", *(f"{first[c]['blurry']['psnr']:.2f}" for c in clips),
              f"{dev_mean(first, 'blurry'):.2f}", "",
              f"{_clip_mean(first, 'blurry', 'moving_psnr'):.2f}",
              f"{_clip_mean(first, 'blurry', 'flicker'):.2f}",
              f"{rows['blurry input']['psnr']:.2f}", "", ""]
    lines.append("| " + " | ".join(blurry) + " |")
    for name, w in weights.items():
        seed = name.rsplit("_s", 1)[1] if "_s" in name else None
        base = f"baseline_s{seed}"
        mean = dev_mean(dev[name]["clips"], "flowdeblur")
        held = rows[f"flowdeblur ({w})"]["psnr"]
        d_dev = f"{mean - dev_mean(dev[base]['clips'], 'flowdeblur'):+.2f}" if base in dev else ""
        d_held = f"{held - rows[f'flowdeblur ({weights[base]})']['psnr']:+.2f}" \
            if base in weights else ""
        scores = dev[name]["clips"]
        cells = [name, *(f"{scores[c]['flowdeblur']['psnr']:.2f}" for c in clips),
                 f"{mean:.2f}", d_dev, f"{_clip_mean(scores, 'flowdeblur', 'moving_psnr'):.2f}",
                 f"{_clip_mean(scores, 'flowdeblur', 'flicker'):.2f}", f"{held:.2f}", d_held,
                 _train_minutes(w)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "arms")
    parser.add_argument("--arms", default="baseline,ema,degrade,photos")
    parser.add_argument("--seeds", default="21")
    parser.add_argument("--samples", type=int, default=64, help="held-out synthetic scenes")
    parser.add_argument("--dev", choices=sorted(DEFINITIONS), default="motion",
                        help="the real clips whose dev split chooses between arms (default "
                        "motion: references/real_clips_motion.json)")
    parser.add_argument("--unsharp", type=float, nargs=2, default=(0.5, 0.1),
                        metavar=("SIGMA", "AMOUNT"),
                        help="unsharp-mask baseline (flowdeblur.evaluation.heldout's tuning)")
    parser.add_argument("--init", type=Path, default=None,
                        help="weights every arm starts from (default: the shipped file)")
    parser.add_argument("--set", dest="common", action="append", default=[],
                        metavar="KEY=VALUE", help="an override for every arm (repeatable)")
    args = parser.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; known: {sorted(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        start = start_weights(args.out, args.init)
    except UserError as e:
        parser.error(str(e))
    common = [f"model.init_weights={start}", *args.common]
    weights = {"start": start}
    weights |= {name: path for a in arms for s in seeds
                for name, path in train_arm(args.out, a, s, common).items()}
    dev = {name: score_dev(w, tuple(args.unsharp), args.dev) for name, w in weights.items()}
    heldout = score_heldout(args.out, weights, args.samples)
    results = {"common": common,
               "arms": {name: ARMS[name.rsplit("_s", 1)[0].removesuffix("+ema")]
                        for name in weights if name != "start"},
               "first_phase": {a: FIRST_PHASE[a] for a in arms if a in FIRST_PHASE},
               "dev_definition": args.dev, "dev": dev, "heldout": heldout}
    atomic_write_text(args.out / "arms.json", json.dumps(results, indent=1) + "\n")
    text = table(weights, dev, heldout)
    atomic_write_text(args.out / "arms.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
