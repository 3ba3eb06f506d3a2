"""Flow accuracy (end-point error) of a flow network, against the zero-flow baseline.

Scores the finest flow of the weights' flow network (e.g. the stage-1 weights of
configs/flow_pretrain.yaml) on held-out synthetic scenes and on the real Middlebury
motorcycle stereo pair that ships with scikit-image (see src/flowdeblur/evaluation/flow_epe.py
for both protocols), and prints a markdown table:

    python benchmarks/flow_epe.py --weights runs/flow_pretrain/weights.safetensors \
        [--samples 64] [--size 256] [--config configs/flow_pretrain.yaml] \
        [--scale 4] [--device auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from flowdeblur.data.synthetic import SceneConfig
from flowdeblur.errors import UserError
from flowdeblur.evaluation.flow_epe import format_flow_table, motorcycle_epe, synthetic_epe
from flowdeblur.evaluation.heldout import HELDOUT_SEED
from flowdeblur.media.atomic import atomic_write_text
from flowdeblur.runtime import resolve_device
from flowdeblur.training.config import load_config
from flowdeblur.weights import load_weights


def scene_config(config_path: str | None) -> SceneConfig:
    """The synthetic scene settings (data.synthetic) of a training config, or the defaults."""
    overrides = load_config(config_path).data.synthetic if config_path else {}
    return SceneConfig(**overrides)


def flow_report(weights: str, *, samples: int = 64, size: int = 256, scale: int = 4,
                config: str | None = None, device: str = "auto") -> dict:
    """EPE of the model in ``weights`` and of zero flow: {"synthetic": ..., "motorcycle": ...}."""
    model = load_weights(weights).to(resolve_device(device))
    return {
        "weights": str(weights),
        "synthetic": synthetic_epe(model, samples=samples, size=size, seed=HELDOUT_SEED,
                                   scene_config=scene_config(config)),
        "motorcycle": motorcycle_epe(model, scale=scale),
    }


def markdown(report: dict) -> str:
    s, m = report["synthetic"], report["motorcycle"]
    h, w = m["size"]
    return (f"flow EPE of {report['weights']} (finest flow, x4 bilinear to full resolution)\n\n"
            + format_flow_table({
                f"synthetic held-out ({s['size']}x{s['size']}, seed {s['seed']})": s,
                f"Middlebury motorcycle (scikit-image), 1/{m['scale']} scale ({h}x{w})": m,
            }))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, help="a flowdeblur .safetensors weights file")
    p.add_argument("--samples", type=int, default=64, help="held-out synthetic scenes")
    p.add_argument("--size", type=int, default=256, help="side of the synthetic scenes")
    p.add_argument("--scale", type=int, default=4, help="downscale factor of the stereo pair")
    p.add_argument("--config", default=None,
                   help="training config whose data.synthetic settings make the scenes")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    try:
        report = flow_report(args.weights, samples=args.samples, size=args.size,
                             scale=args.scale, config=args.config, device=args.device)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(report))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
