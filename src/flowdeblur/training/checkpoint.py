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

Writes go through :func:`flowdeblur.media.atomic.atomic_file`: a crash (even kill -9) leaves
either the previous checkpoint or the new one, never half of one. Beside each checkpoint,
``step_00001000.pt.sha256`` holds its SHA-256: a checkpoint damaged later is refused, and
resuming falls back to the newest intact one. Checkpoints are read with
``torch.load(weights_only=True)`` only: a file that needs unpickling of arbitrary objects is
refused, never executed.

Resuming (:func:`find_resume_point`) continues only the same stage, model variant and number of
processes; a run whose loss stops being finite raises :class:`TrainingDiverged`, which names the
last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import UserError
from ..media.atomic import (
    TEMP_SUFFIX,
    atomic_file,
    atomic_write_text,
    file_sha256,
    temp_prefix,
)
from ..models import FlowDeblurNet
from ..weights import save_weights
from .config import TrainConfig, to_dict
from .schedule import learning_rate

FORMAT = "flowdeblur-checkpoint"
VERSION = 1
REQUIRED = ("format", "version", "step", "config", "model", "optimizer", "schedule", "rng")

_NAME = re.compile(r"^step_(\d+)\.pt$")
#: Temporaries that :func:`atomic_file` leaves when a write is cut by kill -9.
_STALE_TEMPS = f"{temp_prefix(Path('step_*.pt'))}*{TEMP_SUFFIX}"


class Checkpoint(NamedTuple):
    """One checkpoint file of a run."""

    step: int
    path: Path


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


class CorruptCheckpoint(UserError):
    """A checkpoint file that cannot be used: damaged, truncated, unsafe or not ours."""


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint of ``step`` lives (zero-padded so names sort by step)."""
    return checkpoint_dir(run_dir) / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Checkpoint]:
    """Every checkpoint in ``run_dir``, oldest first (temporary files skipped)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append(Checkpoint(int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1].path if found else None


def checksum_path(path: str | os.PathLike) -> Path:
    """The file beside checkpoint ``path`` that holds its SHA-256."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (must hold the :data:`REQUIRED` keys) to ``path`` atomically, then its
    checksum beside it."""
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    with atomic_file(path) as tmp:
        torch.save(state, tmp)
        digest = file_sha256(tmp)
    atomic_write_text(checksum_path(path), digest + "\n")


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (and stale temporary files)."""
    found = list_checkpoints(run_dir)
    for old in found[: max(len(found) - keep, 0)]:
        old.path.unlink(missing_ok=True)
        checksum_path(old.path).unlink(missing_ok=True)
    for p in checkpoint_dir(run_dir).glob(_STALE_TEMPS):
        p.unlink(missing_ok=True)


def _verify(path: Path) -> None:
    """Compare ``path`` with its checksum file; a checkpoint without one loads with a warning."""
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        warnings.warn(f"{path} has no checksum ({sidecar.name} is missing): loaded unverified",
                      UserWarning, stacklevel=3)
        return
    expected = sidecar.read_text().strip()
    if file_sha256(path) != expected:
        raise CorruptCheckpoint(
            f"{path} is corrupt or not a checkpoint (its SHA-256 differs from {sidecar.name})")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a checkpoint (tensors on CPU). UserError if missing; CorruptCheckpoint
    if damaged (checksum), unreadable, unsafe to unpickle or not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    _verify(path)
    try:
        # Tensors and plain containers only: nothing in a checkpoint may run code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile, AttributeError, ImportError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CorruptCheckpoint(
            f"{path} is corrupt or not a checkpoint, or unsafe to load ({reason[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CorruptCheckpoint(f"{path} is not a flowdeblur training checkpoint")
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


def save_training_state(
    run_dir: str | os.PathLike,
    step: int,
    *,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: list[dict[str, Any]],
    ema: nn.Module | None = None,
) -> Path:
    """Checkpoint a run after ``step`` steps, then prune to ``config.log.keep_checkpoints``.

    ``model`` is the unwrapped network, ``rng`` one :func:`flowdeblur.training.rng.rng_state`
    per process (rank order). Returns the checkpoint's path.
    """
    target = checkpoint_path(run_dir, step)
    save_checkpoint(target, {
        "format": FORMAT, "version": VERSION, "step": step,
        "config": to_dict(config), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": {"kind": config.schedule.kind, "lr": learning_rate(step - 1, config)},
        "rng": rng, "world_size": len(rng),
        **({"ema": ema.state_dict()} if ema is not None else {}),
    })
    prune_checkpoints(run_dir, config.log.keep_checkpoints)
    return target


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """A checkpoint that a run continues from."""

    path: Path
    state: dict[str, Any]  #: as read by :func:`load_checkpoint`

    @property
    def step(self) -> int:
        return self.state["step"]


def find_resume_point(config: TrainConfig, world_size: int, resume: bool) -> ResumePoint | None:
    """The newest checkpoint of ``config.run_dir`` when resuming, None for a fresh run.

    UserError when resuming finds no checkpoint or one of another run (stage, variant, number
    of processes) or one already at ``config.steps``; and when a fresh run would mix its
    checkpoints with an earlier run's.
    """
    run_dir = Path(config.run_dir)
    if not resume:
        if list_checkpoints(run_dir):
            raise UserError(f"{run_dir} already holds checkpoints: pass --resume to continue "
                            f"that run, or choose another run_dir")
        return None
    found = list_checkpoints(run_dir)
    if not found:
        raise UserError(f"--resume: no checkpoint in {checkpoint_dir(run_dir)}")
    problems = []
    for candidate in reversed(found):  # the newest intact one
        try:
            state = load_checkpoint(candidate.path)
        except CorruptCheckpoint as e:
            warnings.warn(f"skipping {e}", UserWarning, stacklevel=2)
            problems.append(str(e))
            continue
        _check_resumable(state, config, world_size, candidate.path)
        return ResumePoint(candidate.path, state)
    raise UserError(f"--resume: no intact checkpoint: {'; '.join(problems)}")


def _check_resumable(state: dict, config: TrainConfig, world_size: int, path: Path) -> None:
    """A checkpoint continues only the same model, stage and number of processes."""
    saved = state["config"]
    for key, now in (("stage", config.stage), ("model.variant", config.model.variant)):
        section, _, name = key.rpartition(".")
        was = (saved.get(section, {}) if section else saved).get(name)
        if was != now:
            raise UserError(f"{path} was trained with {key}={was}, this run has {key}={now}; "
                            f"start a new run_dir (use --init-weights to start from its weights)")
    if len(state["rng"]) != world_size:
        raise UserError(
            f"{path} was written by {len(state['rng'])} processes, this run has {world_size}: "
            f"resume with the same number, or start a new run_dir with --init-weights"
        )
    if state["step"] >= config.steps:
        raise UserError(f"{path} is already at step {state['step']} >= steps={config.steps}; "
                        f"raise steps to train further")


def export_final_weights(config: TrainConfig, model: nn.Module, step: int) -> Path:
    """Write a finished run's weights to ``config.export_path`` (default
    ``run_dir/weights.safetensors``) in ``config.export_dtype``; returns the path."""
    path = Path(config.export_path or Path(config.run_dir) / "weights.safetensors")
    save_weights(model, path, dtype=config.export_dtype,
                 extra_metadata=_export_metadata(config.stage, step, config.ema_decay))
    return path


def _export_metadata(stage: str, step: int, ema_decay: float | None) -> dict[str, str]:
    """The metadata of exported weights: the run's stage and step and, for a weight average
    (``ema_decay`` given), its decay."""
    metadata = {"stage": str(stage), "step": str(step)}
    if ema_decay is not None:
        metadata["ema_decay"] = str(ema_decay)
    return metadata


def diverged(run_dir: str | os.PathLike, loss: float, step: int) -> TrainingDiverged:
    """The error for a loss that became ``loss`` (not finite) at ``step``: it names the last
    good checkpoint, which the run left untouched."""
    good = latest_checkpoint(run_dir)
    return TrainingDiverged(
        f"the loss became {loss} at step {step}; stopped without "
        + (f"saving; the last good checkpoint is {good}" if good
           else "saving (no checkpoint was written yet)")
        + "; try a lower optim.lr or set optim.grad_clip"
    )


def export_weights_from_checkpoint(
    checkpoint: str | os.PathLike, output: str | os.PathLike, *, dtype: str = "fp32",
    average: bool = False,
) -> Path:
    """Write the model weights of a training checkpoint as a safetensors weights file: the
    trained weights, or with ``average`` the run's weight average (``ema_decay``), which is
    what a finished run exports, with the same metadata (stage, step and, for the average,
    ``ema_decay``). UserError when ``average`` and the checkpoint holds none."""
    state = load_checkpoint(checkpoint)
    model = FlowDeblurNet(state["config"]["model"]["variant"])
    if average and "ema" not in state:
        raise UserError(f"{checkpoint} holds no weight average (the run had ema_decay=0)")
    weights = _averaged_weights(state["ema"]) if average else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        reason = str(e).splitlines()[0]
        raise UserError(f"{checkpoint} holds an unusable model ({reason})") from None
    # The metadata of a finished run's export, so that a file chosen from a checkpoint ships
    # as it is.
    run = state["config"]
    save_weights(model, output, dtype=dtype, extra_metadata=_export_metadata(
        run.get("stage"), state["step"], run.get("ema_decay") if average else None))
    return Path(output)


def _averaged_weights(ema_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's state dict inside a saved ``torch.optim.swa_utils.AveragedModel``: its
    entries are the network's under ``module.``, beside the ``n_averaged`` counter."""
    prefix = "module."
    return {k.removeprefix(prefix): v for k, v in ema_state.items() if k.startswith(prefix)}
