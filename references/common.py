"""Helpers shared by the reference scripts: paths, scene settings and cached scores of weights.

The scripts import this module as ``common`` (they run as ``python references/NAME.py``, which
puts this folder first on ``sys.path``). Scores are written beside what they score and reused,
so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import filecmp
import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from flowdeblur.evaluation.heldout import HELDOUT_SEED, format_heldout_table, heldout_scores
from flowdeblur.media.atomic import atomic_file, atomic_write_text
from flowdeblur.training.config import load_config
from flowdeblur.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
#: The experiment configs of the reference scripts (the user recipes are in ROOT/configs).
CONFIGS = Path(__file__).resolve().parent / "configs"
#: The recipe of the shipped weights: its scenes make the held-out set and tune unsharp masking.
SHIPPED_RECIPE = ROOT / "configs" / "cpu_shipped.yaml"


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else None


def same_copy(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` unless ``target`` exists; whether ``target`` now holds the
    bytes of ``source``. A copy, not a link: the source (e.g. the shipped weights) may be
    replaced later, and the scores kept beside the copy must stay those of its contents."""
    if target.is_file():
        return filecmp.cmp(source, target, shallow=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as temporary:  # a killed copy leaves no partial file
        shutil.copyfile(source, temporary)
    return True


def scene_settings(config: str | Path | None) -> dict:
    """The synthetic scene settings (``data.synthetic``) of a training config; {} without one."""
    return load_config(config).data.synthetic if config else {}


def dev_mean(clips: dict, method: str) -> float:
    """Mean PSNR of ``method`` over the clips of a real-clip score (``{clip: {method: ...}}``)."""
    return sum(c[method]["psnr"] for c in clips.values()) / len(clips)


def score_synthetic(target: Path, weights: Iterable[Path], samples: int,
                    seed: int = HELDOUT_SEED) -> dict:
    """Synthetic PSNR/SSIM of every weights file (rows ``flowdeblur (PATH)``), cached in
    ``target``: only the weights without a row there are scored, on one set drawn once.

    ``seed``: the held-out set's, or ``VALIDATION_SEED`` for a set to choose on. Returns the
    report of :func:`flowdeblur.evaluation.heldout.heldout_scores` with every row so far.
    """
    done = read_json(target) or {"rows": {}}
    missing = [w for w in weights if f"flowdeblur ({w})" not in done["rows"]]
    if missing:
        new = heldout_scores({str(w): load_weights(w) for w in missing}, samples=samples,
                             seed=seed, settings=scene_settings(SHIPPED_RECIPE))
        new.pop("tuning_psnr")
        print(format_heldout_table(new["rows"]), flush=True)
        done = {**new, "rows": {**done["rows"], **new["rows"]}}
        atomic_write_text(target, json.dumps(done, indent=1))
    return done
