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
either the previous checkpoint or the new one, never half of one; a write that fails (a full
disk) is one line naming the checkpoint. Beside each checkpoint, ``step_00001000.pt.sha256``
holds its SHA-256. A checkpoint is refused (:class:`CorruptCheckpoint`) when it is damaged
(checksum), has no checksum (unless ``accept_unverified``), needs unpickling of arbitrary
objects (read with ``torch.load(weights_only=True)`` only: never executed), holds malformed
entries or non-finite weights. Resuming falls back to the newest usable checkpoint; rotation
(:func:`prune_checkpoints`) counts only usable checkpoints and never deletes a refused one.

Resuming (:func:`find_resume_point`) continues only the same stage, model variant and number of
processes, and, when asked, only the config saved in the checkpoint except for the keys given
as overrides. A run whose loss or weights stop being finite raises :class:`TrainingDiverged`,
which names the last usable checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import reprlib
import warnings
import zipfile
from collections.abc import Collection
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
from .config import MAX_YAML_DEPTH, MAX_YAML_NODES, TrainConfig, flatten, to_dict
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
    """A checkpoint file that cannot be used: damaged, truncated, unsafe, malformed, with
    non-finite weights, not ours, or without a checksum."""


class UnverifiedCheckpoint(CorruptCheckpoint):
    """A checkpoint without its ``.sha256``: loaded only when unverified ones are accepted."""


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
    try:
        with atomic_file(path) as tmp:
            torch.save(state, tmp)
            digest = file_sha256(tmp)
        atomic_write_text(checksum_path(path), digest + "\n")
    except (OSError, RuntimeError) as e:
        # torch reports a full disk as a RuntimeError about its zip writer, and either error
        # names the hidden temporary file: say what the user knows instead.
        reason = (e.strerror if isinstance(e, OSError) and e.strerror
                  else "the write failed; is the disk full?")
        checksum_path(path).unlink(missing_ok=True)  # a checkpoint without it is not trusted
        raise UserError(f"cannot write checkpoint {path}: {reason}") from None


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest usable checkpoints (and stale temporary files).

    A checkpoint that would be refused on resume (:func:`is_usable`) neither counts toward
    ``keep`` nor is deleted: a damaged file with a higher step must not push out the intact
    ones, and what it is stays for the user to look at.
    """
    kept = 0
    for found in reversed(list_checkpoints(run_dir)):
        if not is_usable(found.path):
            continue
        if kept < keep:
            kept += 1
            continue
        found.path.unlink(missing_ok=True)
        checksum_path(found.path).unlink(missing_ok=True)
        _USABLE.pop(found.path, None)
    for p in checkpoint_dir(run_dir).glob(_STALE_TEMPS):
        p.unlink(missing_ok=True)


#: :func:`is_usable` verdicts of this process, per checkpoint path, with the file identities
#: they hold for: a checkpoint is read whole once, not at every rotation.
_USABLE: dict[Path, tuple[tuple, bool]] = {}


def _identity(path: Path) -> tuple:
    """What changes when the checkpoint or its checksum file is replaced or edited."""
    def stat(p: Path) -> tuple | None:
        try:
            st = p.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns
    return stat(path), stat(checksum_path(path))


def is_usable(path: Path) -> bool:
    """Whether checkpoint ``path`` loads: verified by its checksum, safe, well formed and with
    finite weights (what :func:`load_checkpoint` accepts without ``accept_unverified``)."""
    identity = _identity(path)
    cached = _USABLE.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    try:
        load_checkpoint(path)
        usable = True
    except UserError:
        usable = False
    _USABLE[path] = (identity, usable)
    return usable


def newest_usable_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of ``run_dir`` that :func:`is_usable`, or None."""
    for found in reversed(list_checkpoints(run_dir)):
        if is_usable(found.path):
            return found.path
    return None


def _verify(path: Path, accept_unverified: bool) -> None:
    """Compare ``path`` with its checksum file. Without one: UnverifiedCheckpoint, or with
    ``accept_unverified`` a warning."""
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        if not accept_unverified:
            raise UnverifiedCheckpoint(
                f"{path} has no checksum ({sidecar.name} is missing): not loaded; "
                "pass --accept-unverified to load it anyway")
        warnings.warn(f"{path} has no checksum ({sidecar.name} is missing): loaded unverified",
                      UserWarning, stacklevel=4)
        return
    with open(sidecar, "rb") as f:  # a hex digest and a newline; never read a huge file whole
        expected = f.read(128).decode("ascii", errors="replace").strip()
    if file_sha256(path) != expected:
        raise CorruptCheckpoint(
            f"{path} is corrupt or not a checkpoint (its SHA-256 differs from {sidecar.name})")


def load_checkpoint(path: str | os.PathLike, *, accept_unverified: bool = False
                    ) -> dict[str, Any]:
    """Read and check a checkpoint (tensors on CPU). UserError if missing; CorruptCheckpoint
    if damaged (checksum), unreadable, unsafe to unpickle, malformed, holding non-finite
    weights or not one of ours; UnverifiedCheckpoint (a CorruptCheckpoint) if it has no
    checksum file, unless ``accept_unverified`` (then a warning)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    _verify(path, accept_unverified)
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
    version = state.get("version")
    if type(version) is not int or version != VERSION:  # True == 1, but is no version
        raise UserError(f"{path} is checkpoint version {_shown(version)}; this flowdeblur "
                        f"reads version {VERSION}")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CorruptCheckpoint(
            f"{path} is an incomplete checkpoint (missing {', '.join(missing)})")
    problem = _malformed(state)
    if problem:
        raise CorruptCheckpoint(f"{path} is not a usable checkpoint: {problem}")
    return state


def _shown(value: Any) -> str:
    """A short ``repr`` of a value read from a file, for a message."""
    return reprlib.repr(value)[:80]


def _malformed(state: dict[str, Any]) -> str | None:
    """What is wrong with the entries of a checkpoint that loaded (None: nothing). The
    checksum only says the file is the one written, not that its writer was flowdeblur."""
    step = state["step"]
    if type(step) is not int or step < 0:  # bool is an int to isinstance
        return f"its step {_shown(step)} is not a count of steps"
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) \
            or not isinstance(config["model"].get("variant"), str):
        return "its config is not a run's config (no model.variant)"
    if _oversized(config):
        return f"its config holds more than {MAX_YAML_NODES:,} values or nests too deeply"
    for section in ("data", "optim", "schedule", "log"):
        if not isinstance(config.get(section, {}), dict):
            return f"its config's {section} section is not a mapping"
    for key in ("optimizer", "schedule"):
        if not isinstance(state[key], dict):
            return f"its {key} entry is not a mapping"
    rng = state["rng"]
    if not isinstance(rng, list) or not rng or not all(isinstance(r, dict) for r in rng):
        return "its rng entry is not a list of per-process states"
    world_size = state.get("world_size", len(rng))
    if type(world_size) is not int or world_size != len(rng):
        return f"its world_size {_shown(world_size)} differs from its {len(rng)} RNG states"
    for key in ("model", "ema") if "ema" in state else ("model",):
        problem = _bad_tensors(state[key])
        if problem:
            return f"its {key} entry {problem}"
    return None


#: Tensor types a state dict may hold (float weights; integer counters such as n_averaged).
_WEIGHT_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64,
                  torch.int64, torch.int32, torch.uint8, torch.bool}


def _bad_tensors(tensors: Any) -> str | None:
    """What keeps ``tensors`` from being a model's state dict (None: nothing): not a
    mapping of names to dense CPU tensors of the usual dtypes, or NaN or inf in one."""
    if not isinstance(tensors, dict) or not tensors:
        return "is not a state dict of tensors"
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            return "is not a state dict of tensors"
        # Sparse, meta or float8 tensors would fail the finite check below with a traceback.
        if t.layout != torch.strided or t.device.type != "cpu" or t.dtype not in _WEIGHT_DTYPES:
            return f"holds {name} as a {t.layout} {t.dtype} tensor on {t.device}"
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"is not finite (NaN or inf in {name})"
    return None


def _oversized(config: Any) -> bool:
    """Whether ``config`` (plain containers, possibly sharing parts: pickle keeps shared
    references, like YAML aliases) expands to more than :data:`MAX_YAML_NODES` values, nests
    deeper than :data:`MAX_YAML_DEPTH` or refers to itself: comparing or printing it would
    not end. Memoised per object, so the walk costs what the file holds."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(config, False)]
    while stack:
        value, done = stack.pop()
        # Keys and values themselves, not items() pairs: those are new objects at each call.
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else \
            list(value) if isinstance(value, (list, tuple)) else []
        if done:
            open_.discard(id(value))
            size[id(value)] = 1 + sum(size.get(id(c), 1) for c in children)
            if size[id(value)] > MAX_YAML_NODES:
                return True
        elif id(value) in open_ or len(open_) >= MAX_YAML_DEPTH:
            return True
        elif children and id(value) not in size:
            open_.add(id(value))
            stack.append((value, True))
            stack.extend((c, False) for c in children)
    return False


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
    per process (rank order). Returns the checkpoint's path. TrainingDiverged, and nothing
    saved, when the weights are no longer finite (a finite loss can still end in an update
    that is not).
    """
    check_finite_weights(run_dir, step, model, ema)
    target = checkpoint_path(run_dir, step)
    _set_aside(target)
    save_checkpoint(target, {
        "format": FORMAT, "version": VERSION, "step": step,
        "config": to_dict(config), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": {"kind": config.schedule.kind, "lr": learning_rate(step - 1, config)},
        "rng": rng, "world_size": len(rng),
        **({"ema": ema.state_dict()} if ema is not None else {}),
    })
    # Written just now from checked tensors: rotation need not read it back.
    _USABLE[target] = (_identity(target), True)
    prune_checkpoints(run_dir, config.log.keep_checkpoints)
    return target


def check_finite_weights(run_dir: str | os.PathLike, step: int, model: nn.Module,
                         ema: nn.Module | None = None) -> None:
    """TrainingDiverged when the weights (or their average) after ``step`` steps hold NaN or
    inf: a finite loss can still end in an update that is not finite."""
    for name, net in (("weights", model), ("weight average", ema)):
        if net is not None and not all(bool(torch.isfinite(t).all())
                                       for t in net.state_dict().values()
                                       if t.is_floating_point()):
            raise diverged(run_dir, f"the {name} became NaN or infinite at step {step}")


def _set_aside(target: Path) -> None:
    """Rename a file already at ``target`` (a checkpoint that resuming skipped, of a later
    step than the one resumed) to ``NAME.skipped`` (``NAME.skipped-2``, ...), with its
    checksum file, so that the new checkpoint does not destroy it; warns where it went."""
    if not target.exists():
        return
    aside = target.with_name(target.name + ".skipped")
    n = 1
    while aside.exists():
        n += 1
        aside = target.with_name(f"{target.name}.skipped-{n}")
    os.replace(target, aside)
    if checksum_path(target).exists():
        os.replace(checksum_path(target), checksum_path(aside))
    _USABLE.pop(target, None)
    warnings.warn(f"kept the skipped checkpoint {target.name} as {aside.name}", UserWarning,
                  stacklevel=3)


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """A checkpoint that a run continues from."""

    path: Path
    state: dict[str, Any]  #: as read by :func:`load_checkpoint`

    @property
    def step(self) -> int:
        return self.state["step"]


def find_resume_point(config: TrainConfig, world_size: int, resume: bool, *,
                      accept_unverified: bool = False,
                      overrides: Collection[str] | None = None) -> ResumePoint | None:
    """The newest usable checkpoint of ``config.run_dir`` when resuming, None for a fresh run.

    Refused checkpoints (:class:`CorruptCheckpoint`) are skipped with a warning; one without a
    checksum loads only with ``accept_unverified``. ``overrides``: the dotted keys this run
    changes on purpose; any other key where ``config`` differs from the config saved in the
    checkpoint is refused by name (None: no such check).

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
            state = load_checkpoint(candidate.path, accept_unverified=accept_unverified)
        except CorruptCheckpoint as e:
            warnings.warn(f"skipping {e}", UserWarning, stacklevel=2)
            problems.append(str(e))
            continue
        _check_resumable(state, config, world_size, candidate.path)
        if overrides is not None:
            _check_same_config(state["config"], config, overrides, candidate.path)
        return ResumePoint(candidate.path, state)
    raise UserError(f"--resume: no usable checkpoint: {'; '.join(problems)}")


def _check_same_config(saved: dict, config: TrainConfig, overrides: Collection[str],
                       path: Path) -> None:
    """UserError naming the keys where ``config`` differs from the checkpoint's ``saved``
    config without being among ``overrides`` (a key or a section above or below it). Keys the
    checkpoint does not hold (added to flowdeblur since) are not compared."""
    def given(key: str) -> bool:
        return any(key == o or key.startswith(o + ".") or o.startswith(key + ".")
                   for o in overrides)

    was = flatten(saved)
    differs = sorted(k for k, v in flatten(to_dict(config)).items()
                     if k in was and _plain(was[k]) != _plain(v) and not given(k))
    if differs:
        shown = ", ".join(differs[:6]) + (" ..." if len(differs) > 6 else "")
        raise UserError(
            f"the run's config differs from the one saved in {path} in {shown} (was "
            f"config.yaml edited?); give them as key=value to change them, or pass "
            f"--adopt-config")


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, as :func:`to_dict` stores them."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


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
    _write_weights(model, path, config.export_dtype,
                   _export_metadata(config.stage, step, config.ema_decay))
    return path


def _write_weights(model: nn.Module, path: Path, dtype: str, metadata: dict[str, str]) -> None:
    """:func:`save_weights`, with a failed write (full disk) as one line naming ``path``
    rather than the hidden temporary file."""
    try:
        save_weights(model, path, dtype=dtype, extra_metadata=metadata)
    except OSError as e:
        raise UserError(f"cannot write the weights to {path}: {e.strerror or e}") from None


def _export_metadata(stage: str, step: int, ema_decay: float | None) -> dict[str, str]:
    """The metadata of exported weights: the run's stage and step and, for a weight average
    (``ema_decay`` given), its decay."""
    metadata = {"stage": str(stage), "step": str(step)}
    if ema_decay is not None:
        metadata["ema_decay"] = str(ema_decay)
    return metadata


def diverged(run_dir: str | os.PathLike, what: str) -> TrainingDiverged:
    """The error for a run whose loss or weights stopped being finite (``what`` says which
    and when): it names the last good checkpoint, the newest usable one (finite weights),
    which the run left untouched."""
    good = newest_usable_checkpoint(run_dir)
    return TrainingDiverged(
        f"{what}; stopped without "
        + (f"saving; the last good checkpoint is {good}" if good
           else "saving (no usable checkpoint was written yet)")
        + "; try a lower optim.lr or set optim.grad_clip"
    )


def export_weights_from_checkpoint(
    checkpoint: str | os.PathLike, output: str | os.PathLike, *, dtype: str = "fp32",
    average: bool = False, accept_unverified: bool = False,
) -> Path:
    """Write the model weights of a training checkpoint as a safetensors weights file: the
    trained weights, or with ``average`` the run's weight average (``ema_decay``), which is
    what a finished run exports, with the same metadata (stage, step and, for the average,
    ``ema_decay``). UserError when ``average`` and the checkpoint holds none."""
    state = load_checkpoint(checkpoint, accept_unverified=accept_unverified)
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
    _write_weights(model, Path(output), dtype, _export_metadata(
        run.get("stage"), state["step"], run.get("ema_decay") if average else None))
    return Path(output)


def _averaged_weights(ema_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's state dict inside a saved ``torch.optim.swa_utils.AveragedModel``: its
    entries are the network's under ``module.``, beside the ``n_averaged`` counter."""
    prefix = "module."
    return {k.removeprefix(prefix): v for k, v in ema_state.items() if k.startswith(prefix)}
