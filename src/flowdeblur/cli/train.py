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
from ..training.config import TrainConfig, flatten, load_config, to_dict, to_yaml
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
                   help="continue from the newest intact checkpoint in the run folder, with "
                   "the run folder's config.yaml; key=value overrides apply on top of it")
    p.add_argument("--adopt-config", action="store_true",
                   help="with --resume: continue with --config even where it differs from "
                   "the run's saved config.yaml, or with an edited config.yaml even where it "
                   "differs from the config saved in the checkpoint")
    p.add_argument("--accept-unverified", action="store_true",
                   help="with --resume: also load a checkpoint that has no .sha256 checksum "
                   "file beside it (skipped otherwise)")
    p.add_argument("--init-weights", metavar="FILE",
                   help="start from these weights only, optimiser reset "
                   "(same as model.init_weights=FILE)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit")
    p.set_defaults(run=run)


def _resumed_config(args: argparse.Namespace, asked: TrainConfig,
                    overrides: list[str]) -> TrainConfig:
    """The config a resumed run continues with: the run's saved ``config.yaml`` plus this
    command line's overrides (listed), or ``--config`` itself with ``--adopt-config``. A
    ``--config`` that differs from the saved one elsewhere is refused, naming the keys."""
    if args.config is None and not args.run_dir:
        raise UserError("--resume without --config needs --run-dir (to find its config.yaml)")
    saved_path = Path(asked.run_dir) / "config.yaml"
    if not saved_path.is_file():
        raise UserError(f"--resume: {saved_path} not found (was a run started in "
                        f"{asked.run_dir}?)")
    saved = flatten(to_dict(load_config(saved_path)))
    resumed = load_config(saved_path, overrides)
    given = {o.partition("=")[0].strip() for o in overrides}
    if args.config is not None:
        differs = [k for k, v in flatten(to_dict(asked)).items()
                   if saved.get(k) != v and k not in given]
        if differs and not args.adopt_config:
            shown = ", ".join(sorted(differs)[:6]) + (" ..." if len(differs) > 6 else "")
            raise UserError(f"--config differs from the run's saved {saved_path} in {shown}; "
                            "drop --config to continue as saved, or pass --adopt-config")
        if args.adopt_config:
            resumed = asked
    now = flatten(to_dict(resumed))
    changed = sorted(k for k in now if now[k] != saved.get(k))
    if changed:
        print("flowdeblur train: resuming with " + ", ".join(f"{k}={now[k]}" for k in changed))
    return resumed


def run(args: argparse.Namespace) -> int:
    """Train as the arguments say; exit status 0, or 128 + the signal that interrupted it."""
    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run_dir={args.run_dir}")
    if args.init_weights:
        overrides.append(f"model.init_weights={args.init_weights}")
    if (args.accept_unverified or args.adopt_config) and not args.resume:
        flag = "--accept-unverified" if args.accept_unverified else "--adopt-config"
        raise UserError(f"{flag} applies only with --resume")
    config = load_config(args.config, overrides)
    if args.resume:
        config = _resumed_config(args, config, overrides)
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    # What this command line changes on purpose; any other difference from the resumed
    # checkpoint's config (a hand-edited config.yaml) is refused unless adopted.
    given = None if args.adopt_config else [o.partition("=")[0].strip() for o in overrides]
    result = train(config, resume=args.resume, accept_unverified=args.accept_unverified,
                   overrides=given)
    if result["interrupted"]:
        return 128 + int(getattr(signal, result["interrupted"]))
    return 0
