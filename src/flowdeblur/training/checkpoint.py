"""Training checkpoints: written atomically, found by step, checked when read.

A checkpoint is one ``torch.save`` file, ``run_dir/checkpoints/step_00001000.pt``, holding a dict:

==============  ===============================================================================
format          ``"flowdeblur-checkpoint"`` (anything else is rejected)
version         :data:`VERSION`
step            optimiser steps completed
config          the run's TrainConfig as a plain dict
model           the (unwrapped) model's state dict
optimizer       the optimiser's state dict
schedule        learning-rate schedule state (``kind``, ``lr`` of the last step)
rng             one entry per process: torch, cuda, numpy and python RNG states and the
                synthetic data stream's state dict
world_size      number of processes that wrote it (``len(rng)``)
==============  ===============================================================================

Writes go to a temporary file in the same folder, then ``os.replace``: a crash (even kill -9)
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

FORMAT = "flowdeblur-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "step", "config", "model", "optimizer", "schedule", "rng")

_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint of ``step`` lives (zero-padded so names sort by step)."""
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in ``run_dir``, oldest first (temporary files skipped)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (must hold the :data:`REQUIRED` keys) to ``path`` atomically."""
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (and stale temporary files)."""
    found = list_checkpoints(run_dir)
    for _, p in found[: max(len(found) - keep, 0)]:
        p.unlink(missing_ok=True)
    for p in checkpoint_dir(run_dir).glob(".step_*.tmp"):
        p.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a checkpoint (tensors on CPU). UserError if missing, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "Weights only load failed" not in str(e):
                raise
            # A data stream's state may hold objects the safe loader refuses (e.g. numpy
            # arrays); checkpoints are our own files in the user's own run folder.
            state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile, AttributeError, ImportError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is corrupt or not a checkpoint ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a flowdeblur training checkpoint")
    if state.get("version") != VERSION:
        raise UserError(
            f"{path} is checkpoint version {state.get('version')!r}; this flowdeblur reads "
            f"version {VERSION}"
        )
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise UserError(f"{path} is an incomplete checkpoint (missing {', '.join(missing)})")
    if not isinstance(state["step"], int) or state["step"] < 0:
        raise UserError(f"{path} holds an invalid step {state['step']!r}")
    return state
