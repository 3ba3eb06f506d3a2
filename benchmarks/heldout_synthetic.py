"""Score weights on a held-out synthetic set against the blurry input and unsharp masking.

The held-out scenes come from the synthetic engine with a seed that training never uses
(training streams use small seeds; each scene is a hash of (seed, index)). Unsharp masking
is tuned for PSNR on the first batches of the training stream of configs/cpu_shipped.yaml
(seed 0, 128x128, its scene settings), i.e. on training data, never on the held-out scenes.
Outputs are quantised to 8 bits before scoring, like a written file.

    python benchmarks/heldout_synthetic.py [--weights FILE ...] [--samples 64] [--json out.json]
    python benchmarks/heldout_synthetic.py --seed 2000003 ...   # a validation set to choose on
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from flowdeblur import deblur_image_pair
from flowdeblur.data.synthetic import SceneConfig, SyntheticScenes
from flowdeblur.evaluation.baselines import tune_unsharp_mask, unsharp_mask
from flowdeblur.evaluation.flow_epe import (
    HELDOUT_SEED,
    VALIDATION_SEED,
    heldout_synthetic_batches,
)
from flowdeblur.evaluation.metrics import psnr, quantize_8bit, ssim
from flowdeblur.media.atomic import atomic_write_text
from flowdeblur.runtime import Runtime
from flowdeblur.training.config import load_config
from flowdeblur.weights import PRETRAINED, load_weights


def scene_config(config_path: str | None, size: int) -> SceneConfig:
    """The synthetic scene settings of a training config (the engine's defaults without one)."""
    overrides = load_config(config_path).data.synthetic if config_path else {}
    return SceneConfig(**{**overrides, "size": (size, size)})


def heldout_batches(scenes_config: SceneConfig, samples: int, batch: int = 8,
                    seed: int = HELDOUT_SEED):
    """Fixed held-out (frame_t, frame_next, sharp_t) batches
    (``flow_epe.heldout_synthetic_batches``)."""
    size = scenes_config.size[0]
    for s in heldout_synthetic_batches(scenes_config, samples=samples, size=size, seed=seed,
                                       batch=batch, three_frames=False):
        yield s["frame_t"], s["frame_next"], s["sharp_t"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="*", default=[str(PRETRAINED)])
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--tune-samples", type=int, default=64)
    p.add_argument("--config", default="configs/cpu_shipped.yaml",
                   help="training config whose data.synthetic settings make the scenes")
    p.add_argument("--seed", type=int, default=HELDOUT_SEED,
                   help=f"scene seed: {HELDOUT_SEED} is the reported held-out set; choose "
                        f"among weights on another, e.g. {VALIDATION_SEED}")
    p.add_argument("--ensemble", type=int, default=1, choices=(1, 2, 4, 8),
                   help="flowdeblur's self-ensemble size (flowdeblur deblur --ensemble)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_grad_enabled(False)

    train_scenes = SyntheticScenes(scene_config(args.config, 128), seed=0)
    tune = []
    for _ in range(args.tune_samples // 8):
        s = train_scenes.sample(8)
        tune.append((s["frame_t"], s["sharp_t"]))
    sigma, amount, tune_psnr = tune_unsharp_mask(tune)

    data = list(heldout_batches(scene_config(args.config, args.size), args.samples,
                                seed=args.seed))
    runtime = Runtime.resolve(purpose="report")  # reported figures: fp32
    methods = {"blurry input": lambda b0, b1: b0,
               f"unsharp mask (sigma {sigma}, amount {amount})": lambda b0, b1: unsharp_mask(
                   b0, sigma, amount)}
    for path in args.weights:
        model = load_weights(path)
        name = f"flowdeblur ({path})" + (f" ensemble {args.ensemble}" if args.ensemble > 1 else "")
        methods[name] = (lambda b0, b1, m=model: deblur_image_pair(
            m, b0, b1, runtime=runtime, ensemble=args.ensemble).clamp(0, 1))

    rows = {}
    for name, fn in methods.items():
        t0 = time.perf_counter()
        ps, ss = [], []
        for b0, b1, sharp in data:
            out = quantize_8bit(fn(b0, b1))
            ps.append(psnr(out, sharp))
            ss.append(ssim(out, sharp))
        rows[name] = {"psnr": torch.cat(ps).mean().item(), "ssim": torch.cat(ss).mean().item(),
                      "seconds": time.perf_counter() - t0}
    print(f"held-out synthetic set: {args.samples} scenes of {args.size}x{args.size}, "
          f"seed {args.seed}, scene settings of {args.config}; unsharp mask tuned on "
          f"{args.tune_samples} training scenes (PSNR there {tune_psnr:.2f} dB)")
    print("| method | PSNR (dB) | SSIM |")
    print("|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps(
            {"samples": args.samples, "size": args.size, "seed": args.seed,
             "ensemble": args.ensemble,
             "unsharp": {"sigma": sigma, "amount": amount}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
