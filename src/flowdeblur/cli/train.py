"""`flowdeblur train`: train from a YAML config plus ``key=value`` overrides.

Examples::

    flowdeblur train --config configs/debug.yaml                 # a few CPU steps, < 1 min
    flowdeblur train --config configs/flow_pretrain.yaml         # stage 1
    flowdeblur train --config configs/joint.yaml \\
        --init-weights runs/flow_pretrain/weights.safetensors    # stage 2
    flowdeblur train --config configs/joint.yaml model.variant=no_rnn run_dir=runs/no_rnn
    flowdeblur train --config configs/joint.yaml --resume        # continue after a stop
    torchrun --nproc_per_node=4 -m flowdeblur train --config configs/joint.yaml
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from ..errors import UserError
from ..training.config import load_config, to_yaml
from ..training.loop import train


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the network (stage 1 flow pre-training or stage 2 joint training)",
        description="Train from a YAML config (configs/*.yaml); key=value pairs override its\n"
        "entries (dotted keys, YAML values: optim.lr=1e-4 model.variant=no_rnn).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("Examples::", 1)[1],
    )
    p.add_argument("--config", type=Path, help="YAML config file (default: the paper's stage 2)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides (keep them together: before or after the options)")
    p.add_argument("--run-dir", help="output folder (same as run_dir=...)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in the run folder (without "
                   "--config, the run folder's config.yaml is used)")
    p.add_argument("--init-weights", metavar="FILE",
                   help="start from these weights only, optimiser reset "
                   "(same as model.init_weights=FILE)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train as the arguments say; exit status 0, or 128 + the signal that interrupted it."""
    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    if args.init_weights:
        overrides.append(f"model.init_weights={args.init_weights}")
    config_path = args.config
    if config_path is None and args.resume:
        if not args.run_dir:
            raise UserError("--resume without --config needs --run-dir (to find its config.yaml)")
        config_path = Path(args.run_dir) / "config.yaml"
    config = load_config(config_path, overrides)
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    result = train(config, resume=args.resume)
    if result["interrupted"]:
        return 128 + int(getattr(signal, result["interrupted"]))
    return 0
