"""Helpers shared by the reference scripts: paths, scene settings, training runs that resume
and results cached beside what they come from.

The scripts import this module as ``common`` (they run as ``python references/NAME.py``, which
puts this folder first on ``sys.path``). Every result is written beside what it comes from and
reused, so an interrupted experiment continues where it stopped: a run whose weights exist is
not trained again, one with checkpoints resumes from them (:func:`train_or_resume`), and a
score that records the same inputs is read rather than computed (:func:`cached_json`).
"""

from __future__ import annotations

import filecmp
import json
import math
import shutil
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

import torch

from flowdeblur.errors import UserError
from flowdeblur.evaluation.heldout import HELDOUT_SEED, format_heldout_table, heldout_scores
from flowdeblur.media.atomic import atomic_file, atomic_write_text
from flowdeblur.training.checkpoint import export_weights_from_checkpoint, list_checkpoints
from flowdeblur.training.config import (
    TrainConfig,
    flatten,
    load_config,
    read_config_file,
    to_dict,
)
from flowdeblur.training.loop import train
from flowdeblur.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
#: The experiment configs of the reference scripts (the user recipes are in ROOT/configs).
CONFIGS = Path(__file__).resolve().parent / "configs"
#: The recipe of the shipped weights: its scenes make the held-out set and tune unsharp masking.
SHIPPED_RECIPE = ROOT / "configs" / "cpu_shipped.yaml"
#: The file in a run folder that sums the wall time and steps of every call that trained it.
TIMING = "timing.json"


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else None


def atomic_copy(source: Path, target: Path) -> None:
    """Copy the bytes of ``source`` to ``target`` (replacing it, creating its folder), whole
    or not at all: a killed copy leaves no partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as temporary:
        shutil.copyfile(source, temporary)


def same_copy(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` unless ``target`` exists; whether ``target`` now holds the
    bytes of ``source``. A copy, not a link: the source (e.g. the shipped weights) may be
    replaced later, and the scores kept beside the copy must stay those of its contents."""
    if target.is_file():
        return filecmp.cmp(source, target, shallow=False)
    atomic_copy(source, target)
    return True


def is_current(path: Path, source: Path) -> bool:
    """Whether ``path`` exists and is not older than ``source``, the file it was made from. A
    result kept without its source (a score without the weights it scored) still counts."""
    return path.is_file() and (not source.is_file()
                               or path.stat().st_mtime >= source.stat().st_mtime)


def recorded_json(path: Path, inputs: dict, source: Path) -> dict | None:
    """The JSON object in ``path`` when it records ``inputs`` (each key with the same value)
    and :func:`is_current` against ``source``; None when it must be computed (again)."""
    saved = read_json(path)
    if saved is None or not is_current(path, source) \
            or any(saved.get(key) != value for key, value in inputs.items()):
        return None
    return saved


def cached_json(path: Path, compute: Callable[[], dict], *, inputs: dict, source: Path) -> dict:
    """:func:`recorded_json`, or else ``compute()`` with ``inputs`` added, written to ``path``
    (atomically) for the next call. ``inputs``: what defines the result besides ``source``
    (e.g. the test set), so that a changed one is computed again."""
    saved = recorded_json(path, inputs, source)
    if saved is None:
        saved = {**compute(), **inputs}
        atomic_write_text(path, json.dumps(saved, indent=1))
    return saved


def comma_list(text: str, option: str, kind: Callable[[str], object] = str,
               choices: Collection | None = None) -> list:
    """The items of ``option``'s comma-separated value ``text``, each made a ``kind`` (``int``:
    integers), in order; UserError naming ``option`` when there are none, one is not a
    ``kind``, one repeats, or one is not among ``choices``."""
    try:
        items = [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        items = []
    unknown = [item for item in items if choices is not None and item not in choices]
    if unknown:
        raise UserError(f"{option}: unknown {unknown}; choose from "
                        f"{', '.join(map(str, choices))}")
    if not items or len(set(items)) != len(items):
        what = "integers" if kind is int else "values"
        raise UserError(f"{option} must list distinct comma-separated {what}, got {text!r}")
    return items


def scene_settings(config: str | Path | None) -> dict:
    """The synthetic scene settings (``data.synthetic``) of a training config; {} without one."""
    return load_config(config).data.synthetic if config else {}


def dev_mean(clips: dict, method: str) -> float:
    """Mean PSNR of ``method`` over the clips of a real-clip score (``{clip: {method: ...}}``)."""
    return sum(c[method]["psnr"] for c in clips.values()) / len(clips)


def seed_stats(values: list[float]) -> dict:
    """``n``, ``mean``, ``std`` (the sample standard deviation; 0 for one value), ``min`` and
    ``max`` of one figure over the seeds of a training run."""
    n, mean = len(values), sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "mean": mean, "std": std, "min": min(values), "max": max(values)}


def format_stats(stats: dict, digits: int) -> str:
    """:func:`seed_stats` as ``mean ± std [min, max]``, or the mean alone for one seed."""
    if stats["n"] < 2:
        return f"{stats['mean']:.{digits}f}"
    return (f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f} "
            f"[{stats['min']:.{digits}f}, {stats['max']:.{digits}f}]")


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


# ---------------------------------------------------------------------------------------------
# Training runs


def weights_path(config: TrainConfig) -> Path:
    """Where the run of ``config`` exports its weights when it finishes."""
    return Path(config.export_path or Path(config.run_dir) / "weights.safetensors")


def finished_weights(config: TrainConfig) -> Path | None:
    """The weights of the run of ``config`` when it is finished (:func:`weights_path`), None
    while it has steps to train. A run stopped after its last step but before its export is
    exported now from its last checkpoint (the weight average when it keeps one, as the run
    would have)."""
    weights = weights_path(config)
    if weights.is_file():
        return weights
    found = list_checkpoints(config.run_dir)
    if not found or found[-1].step < config.steps:
        return None
    return export_weights_from_checkpoint(found[-1].path, weights, dtype=config.export_dtype,
                                          average=config.ema_decay > 0)


def train_or_resume(config: TrainConfig) -> dict | None:
    """Bring the run of ``config`` to its weights; returns the summary of
    :func:`flowdeblur.training.loop.train`, or None when the run was finished
    (:func:`finished_weights`).

    A run with checkpoints resumes from them. The wall time and steps of the training add up
    in the run folder's :data:`TIMING` file over resumes. Raises what ``train`` raises
    (UserError; TrainingDiverged when the loss or weights stop being finite).
    """
    if finished_weights(config) is not None:
        return None
    run_dir = Path(config.run_dir)
    found = list_checkpoints(run_dir)
    timing = read_json(run_dir / TIMING) or {"seconds": 0.0, "steps": 0}
    start = time.perf_counter()
    try:
        summary = train(config, resume=bool(found))
    finally:
        if torch.cuda.is_available():  # the next run of the script starts with a clean cache
            torch.cuda.empty_cache()
    atomic_write_text(run_dir / TIMING, json.dumps({
        "seconds": timing["seconds"] + time.perf_counter() - start,
        "steps": timing["steps"] + summary["final_step"] - (found[-1].step if found else 0)}))
    return summary


def check_same_run(config: TrainConfig, ignore: Collection[str] = ("device", "log")) -> None:
    """UserError when the run folder of ``config`` holds a run of another config (its saved
    ``config.yaml``), apart from the top-level keys in ``ignore``. Paths inside the folder that
    holds the run folder are compared from there, so a moved folder of runs still matches;
    keys the saved config lacks (added to flowdeblur since) are not compared."""
    run_dir = Path(config.run_dir)
    if not (run_dir / "config.yaml").is_file():
        return
    saved = _placed(read_config_file(run_dir / "config.yaml"))
    for key, value in _placed(to_dict(config)).items():
        if key.split(".")[0] not in ignore and key in saved and saved[key] != value:
            raise UserError(f"{run_dir} holds a run with {key}={saved[key]!r}, this one has "
                            f"{value!r}: use another output folder (or delete that run)")


def _placed(tree: dict) -> dict:
    """A config dict as dotted keys, with the paths inside the folder above its run folder
    relative to that folder."""
    base = Path(tree.get("run_dir") or ".").parent

    def place(value: object) -> object:
        inside = isinstance(value, str) and Path(value).is_relative_to(base)
        return Path(value).relative_to(base).as_posix() if inside else value

    return {key: place(value) for key, value in flatten(tree).items()}
