"""Training: flow pre-training (stage 1) and joint training with Eq. 14 (stage 2).

The whole loop is :func:`train`, read top to bottom: set-up, the step loop, checkpoints, the
end. Its parts live beside it in this package (docs/DESIGN.md shows how a batch flows):

==============  ===============================================================================
config          :class:`TrainConfig`, read from YAML plus ``key=value`` overrides
batches         :class:`TrainingBatches`: synthetic, real or mixed batches of one process
objective       :func:`compute_loss`: the stage's forward pass and loss
losses          Eq. 14 and the multi-scale EPE
reblur          the reblurring loss on unlabelled real video (optional, beside Eq. 14)
unlabelled      the unlabelled videos' frame triples
schedule        the learning rate of each step
setup           device, model and first weights, optimiser
distributed     the processes of a multi-GPU run and what they exchange each step
rng             seeds per process and the RNG states a checkpoint keeps
checkpoint      checkpoint files: save, resume, prune; the NaN stop
run_log         config.yaml, losses.jsonl, TensorBoard, progress bar
run_lock        one training per run folder
signals         SIGINT/SIGTERM: save after the current step and exit
==============  ===============================================================================

Two stages:

* ``stage: flow`` replaces the paper's FlowNetS initialisation (whose weights do not fit Table
  I's narrower network): only the flow network runs, trained with the multi-scale end-point
  error against the synthetic scenes' ground-truth flow. The deblurring U-Net is not run at all
  (the EPE gives it no gradient), and the flow network's parts that only feed the RNN gates
  (rnnw1..3, deconv2, up2to1) get no gradient either, so they are frozen; they keep their
  Xavier initialisation and train in stage 2.
* ``stage: joint`` trains the whole network with Eq. 14 (warping terms + MSE), starting from
  the stage-1 weights (``model.init_weights``). ``flow_loss: false`` is Table IV's
  "w/o flow losses".

The run folder (``run_dir``) holds ``config.yaml``, ``losses.jsonl``, ``tb/`` (see
:mod:`flowdeblur.training.run_log`), ``checkpoints/step_NNNNNNNN.pt`` (the newest
``log.keep_checkpoints``; see :mod:`flowdeblur.training.checkpoint`) and, once the run
finishes, ``weights.safetensors``.

Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m flowdeblur train ...`` (DDP). Each
process draws its own synthetic stream (seeded by rank) and its own share of a real dataset
(DistributedSampler); ``data.batch_size`` is the global batch. The run folder must be shared by
all nodes (rank 0 writes, every rank reads it on ``--resume``).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from ..media.atomic import check_can_create
from ..runtime import resolve_device
from .batches import TrainingBatches
from .checkpoint import (
    ResumePoint,
    check_finite_weights,
    diverged,
    export_final_weights,
    find_resume_point,
    save_training_state,
)
from .config import TrainConfig
from .distributed import gather_step_stats, init_distributed
from .objective import compute_loss, freeze_unreached
from .rng import restore_rng_state, rng_state, seed_process
from .run_lock import RunLock
from .run_log import RunLog
from .schedule import set_learning_rate
from .setup import (
    build_ema,
    build_model,
    build_optimizer,
    frozen_flow,
    per_process_batch,
    to_layout,
    training_runtime,
    wrap_distributed,
)
from .signals import StopSignals

__all__ = ["train"]


def train(config: TrainConfig, *, resume: bool = False, accept_unverified: bool = False,
          overrides: Collection[str] | None = None) -> dict[str, Any]:
    """Train a FlowDeblurNet as ``config`` says; returns a summary of the run.

    Args:
        config: a validated :class:`~flowdeblur.training.config.TrainConfig`
            (see :func:`flowdeblur.training.config.load_config`).
        resume: continue from the newest usable checkpoint in ``config.run_dir`` (model,
            optimiser, schedule, RNG and data-stream state, step) instead of starting afresh.
        accept_unverified: with ``resume``, also load a checkpoint without its checksum file
            (otherwise skipped with a warning).
        overrides: with ``resume``, the dotted config keys this run changes on purpose; other
            keys that differ from the checkpoint's saved config are refused (None: no check).
    Returns:
        dict with ``final_step``, ``last_loss`` (mean over processes), ``run_dir``,
        ``interrupted`` (the signal name if SIGINT/SIGTERM stopped it, else None), ``weights``
        (the exported file, None if interrupted), ``model`` (unwrapped, on its device) and
        ``ema_model`` (the weight average, or None). A run that reaches ``time_limit_s`` ends
        like a finished one, at the step it had reached.
    Raises:
        UserError: bad config, unusable checkpoint or weights, or ``TrainingDiverged``.
    """
    run_dir = Path(config.run_dir)
    with contextlib.ExitStack() as cleanup:
        # -- set-up: processes, device, where to start, model, optimiser
        requested = resolve_device(config.device)  # "auto": CUDA when available
        processes = init_distributed(requested.type)
        cleanup.callback(processes.close)
        if processes.is_master:
            _check_export_path(config)  # before the work, not after it
            cleanup.enter_context(RunLock(run_dir))  # one training per run folder
        runtime = training_runtime(requested, processes.local_rank, config.amp, config.cpu_amp,
                                   config.channels_last)
        device = runtime.device
        batch_size = per_process_batch(config.data.batch_size, processes)
        start = find_resume_point(config, processes.world_size, resume,  # None: a fresh run
                                  accept_unverified=accept_unverified, overrides=overrides)
        step = start.step if start else 0
        model, note = build_model(config, start)
        model.to(device).train()
        reblur_flow = frozen_flow(config, runtime)  # the reblurring loss's flows; None: off
        if runtime.channels_last:  # before the optimiser and the average copy its tensors
            model.to(memory_format=torch.channels_last)
        # Stage 1 runs the flow network alone; the deblurring U-Net would get no gradient.
        net = model.flownet if config.stage == "flow" else model
        frozen = freeze_unreached(net, config, device)
        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, config.optim, start)
        ema = build_ema(model, config.ema_decay, start)  # None unless config.ema_decay
        trained = wrap_distributed(net, processes, device)

        # -- data and random streams (this process's own), logs, signals
        batches = TrainingBatches(config, device=device, batch_size=batch_size,
                                  rank=processes.rank, world_size=processes.world_size)
        cleanup.callback(batches.close)
        seed_process(config.seed, processes.rank)
        if start is not None:
            _restore_streams(batches, start, processes.rank)
        batches.start(num_workers=config.data.num_workers, rank=processes.rank,
                      world_size=processes.world_size, seed=config.seed)
        log = cleanup.enter_context(RunLog(config, start_step=step, enabled=processes.is_master))
        log.started(device=device, world_size=processes.world_size, note=note, frozen=frozen)
        signals = cleanup.enter_context(StopSignals(announce=processes.is_master))
        # -- the step loop
        last_loss, interrupted = float("nan"), None
        deadline = time.monotonic() + (config.time_limit_s or math.inf)
        while step < config.steps:
            lr = set_learning_rate(optimizer, step, config)
            batch = to_layout(batches.next(), runtime)
            with runtime.autocast():  # bf16 with config.amp (CUDA) / cpu_amp, else fp32
                if reblur_flow is not None:
                    batch = reblur_flow.add_flows(batch)
                loss = compute_loss(trained, batch, config)
            # Every process learns every loss and any stop signal, so all stop at one step.
            stats = gather_step_stats(loss, signals.caught, processes, device,
                                      out_of_time=time.monotonic() > deadline)
            if not stats.finite:
                raise diverged(run_dir, f"the loss became {stats.loss} at step {step + 1}")

            _optimise(loss.total, optimizer, params, config.optim.grad_clip, ema, model)
            step += 1
            last_loss = stats.loss
            log.step(step, lr, stats, batch, loss.visuals)

            # -- checkpoint: periodically, at the end, when a signal asks to stop or time is up
            last_step = step == config.steps or stats.out_of_time
            if stats.stop_signal or last_step or step % config.log.checkpoint_every == 0:
                _checkpoint(config, step, model, optimizer, ema, batches, processes)
            if stats.stop_signal and step < config.steps:
                interrupted = signal.Signals(stats.stop_signal).name
                break
            if stats.out_of_time:
                break
        # -- the end: weights of a finished run (the weight average's, when kept)
        weights = export_final_weights(config, model if ema is None else ema.module, step) \
            if processes.is_master and interrupted is None else None
        log.finished(step=step, loss=last_loss, interrupted=interrupted, weights=weights)
        return {"final_step": step, "last_loss": last_loss, "run_dir": str(run_dir),
                "interrupted": interrupted, "weights": str(weights) if weights else None,
                "model": model, "ema_model": ema.module if ema is not None else None}


def _optimise(total: torch.Tensor, optimizer: torch.optim.Optimizer, params: list,
              grad_clip: float | None, ema, model: nn.Module) -> None:
    """One optimiser step on the loss ``total`` (clipped gradients, then the weight average)."""
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    if ema is not None:
        ema.update_parameters(model)


def _checkpoint(config: TrainConfig, step: int, model: nn.Module, optimizer, ema, batches,
                processes) -> None:
    """Save the training state at ``step``. Runs on every process (their weights are the same)
    so that all stop together; only the master writes."""
    check_finite_weights(Path(config.run_dir), step, model, ema)
    rng = processes.gather(rng_state(batches.state_dict()))
    if processes.is_master:
        save_training_state(Path(config.run_dir), step, config=config, model=model,
                            optimizer=optimizer, rng=rng, ema=ema)


def _check_export_path(config: TrainConfig) -> None:
    """UserError unless the final weights can be written to ``config.export_path``."""
    if not config.export_path:
        return  # the default lies in run_dir, which the run lock checks
    path = Path(config.export_path)
    if path.is_dir():
        raise UserError(f"export_path {path} is a folder; give a file name "
                        "(e.g. weights.safetensors)")
    check_can_create(path, "export_path")


def _restore_streams(batches: TrainingBatches, start: ResumePoint, rank: int) -> None:
    """Set this process's generators and data stream as the checkpoint saved them; UserError
    for states that do not fit (a checkpoint whose checksum is right but contents are not)."""
    try:
        batches.load_state_dict(restore_rng_state(start.state["rng"][rank]))
    except (TypeError, KeyError, ValueError, IndexError, RuntimeError, AttributeError) as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(f"the random and data stream states in {start.path} do not fit this "
                        f"run ({reason})") from None
