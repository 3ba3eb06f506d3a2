"""Score weights on a held-out synthetic set against the blurry input and unsharp masking.

The set, its seeds and the tuning of unsharp masking (on training scenes of the config, never
on the held-out scenes) are :mod:`flowdeblur.evaluation.heldout`'s; outputs are quantised to 8
bits before scoring, like a written file.

    python references/heldout_synthetic.py [--weights FILE ...] [--samples 64] [--json out.json]
    python references/heldout_synthetic.py --seed 2000003 ...   # a validation set to choose on
"""

from __future__ import annotations

import argparse
import json

from common import scene_settings

from flowdeblur.evaluation.heldout import (
    HELDOUT_SEED,
    VALIDATION_SEED,
    format_heldout_table,
    heldout_scores,
)
from flowdeblur.media.atomic import atomic_write_text
from flowdeblur.weights import PRETRAINED, load_weights


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

    report = heldout_scores({path: load_weights(path) for path in args.weights},
                            settings=scene_settings(args.config), samples=args.samples,
                            size=args.size, seed=args.seed, tune_samples=args.tune_samples,
                            ensemble=args.ensemble)
    tuning_psnr = report.pop("tuning_psnr")
    print(f"held-out synthetic set: {args.samples} scenes of {args.size}x{args.size}, "
          f"seed {args.seed}, scene settings of {args.config}; unsharp mask tuned on "
          f"{args.tune_samples} training scenes (PSNR there {tuning_psnr:.2f} dB)")
    print(format_heldout_table(report["rows"]))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
