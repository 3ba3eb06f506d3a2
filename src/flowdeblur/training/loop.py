"""Training: flow pre-training (stage 1) and joint training with Eq. 14 (stage 2).

The whole loop is :func:`train`, one function read top to bottom; the helpers above it build
the batches, compute the loss and write logs. Two stages:

* ``stage: flow`` replaces the paper's FlowNetS initialisation (whose weights do not fit Table
  I's narrower network): only the flow network runs, trained with the multi-scale end-point
  error against the synthetic scenes' ground-truth flow. The deblurring U-Net is not run at all
  (the EPE gives it no gradient), and the flow network's parts that only feed the RNN gates
  (rnnw1..3, deconv2, up2to1) get no gradient either, so they are frozen; they keep their
  Xavier initialisation and train in stage 2.
* ``stage: joint`` trains the whole network with Eq. 14 (warping terms + MSE), starting from
  the stage-1 weights (``model.init_weights``). ``flow_loss: false`` is Table IV's
  "w/o flow losses".

The run folder (``run_dir``) holds ``config.yaml`` (the resolved config), ``losses.jsonl``
(one line per step: loss, its parts, lr), ``checkpoints/step_NNNNNNNN.pt`` (the newest
``log.keep_checkpoints``; see
:mod:`flowdeblur.training.checkpoint`), ``tb/`` (TensorBoard scalars and
images) and, once the run finishes, ``weights.safetensors``.

Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m flowdeblur train ...`` (DDP). Each
process draws its own synthetic stream (seeded by rank) and its own share of a real dataset
(DistributedSampler); ``data.batch_size`` is the global batch. The run folder must be shared by
all nodes (rank 0 writes, every rank reads it on ``--resume``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError
from ..models import VARIANTS, FlowDeblurNet, pad_to_multiple
from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import VERSION as CHECKPOINT_VERSION
from .checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from .config import TrainConfig, to_dict, to_yaml
from .losses import eq14_loss, multiscale_epe

__all__ = [
    "TrainingBatches",
    "TrainingDiverged",
    "compute_loss",
    "export_weights_from_checkpoint",
    "learning_rate",
    "train",
]

#: Keys of a training batch that the losses read (images (N,3,H,W), flow (N,2,H,W)).
IMAGE_KEYS = ("frame_t", "frame_next", "sharp_t", "frame_prev")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


# ---------------------------------------------------------------------------------------------
# Processes and devices


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # whether train() created the process group (and must end it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _init_distributed(device_kind: str) -> _Dist:
    """Join the process group that torchrun describes in the environment (if any)."""
    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device={name} but CUDA is not available")
        device = torch.device(name if ":" in name else f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        return device
    return torch.device(name)


def _rank_seed(seed: int, rank: int, *more: int) -> int:
    """Independent 31-bit seeds per (seed, rank, ...) without collisions like seed + rank."""
    return int(np.random.SeedSequence([seed, rank, *more]).generate_state(1)[0]) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
# Data: synthetic scenes, a real dataset, or both in every batch


def _scene_config(config: TrainConfig, three_frames: bool) -> Any:
    from ..data.synthetic import SceneConfig

    names = {f.name: f for f in dataclasses.fields(SceneConfig)}
    kwargs = {}
    for key, value in config.data.synthetic.items():
        if key not in names:
            close = difflib.get_close_matches(key, list(names), n=1)
            hint = f"; did you mean 'data.synthetic.{close[0]}'?" if close else ""
            raise UserError(f"unknown config key 'data.synthetic.{key}'{hint}")
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    side = config.data.scene_size or config.data.crop_size
    return SceneConfig(size=(side, side), three_frames=three_frames, **kwargs)


def _augment_kwargs(config: TrainConfig) -> dict:
    d = config.data
    return dict(
        crop_size=(d.crop_size, d.crop_size),
        scale_range=tuple(d.scale_range),
        max_rotation_deg=d.max_rotation_deg,
        flips=d.flips,
        permute_colors=d.permute_colors,
    )


class _RealPatches(torch.utils.data.Dataset):
    """Augmented patches of a real dataset, addressed by ``(index, draw)``.

    The augmentation of draw number ``draw`` is seeded by (seed, rank, draw) alone, so a
    resumed run cuts exactly the patches the interrupted one would have, with any number of
    DataLoader workers.
    """

    def __init__(self, base: Any, seed: int, rank: int, augment_kwargs: dict) -> None:
        self.base, self.seed, self.rank, self.augment_kwargs = base, seed, rank, augment_kwargs

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        from ..data.augment import augment

        index, draw = key
        item = self.base[index]
        sample = {k: item[k].unsqueeze(0) for k in IMAGE_KEYS if k in item}
        generator = torch.Generator().manual_seed(_rank_seed(self.seed, self.rank, draw))
        out = augment(sample, generator=generator, **self.augment_kwargs)
        return {k: v[0] for k, v in out.items() if k in sample}


class _EndlessSampler(torch.utils.data.Sampler):
    """Yields ``(index, draw)`` forever: epoch after epoch of a DistributedSampler's order
    (this rank's share, reshuffled per epoch), starting at draw number ``start``."""

    def __init__(self, dataset: Any, rank: int, world_size: int, seed: int, start: int) -> None:
        self.order = torch.utils.data.DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = start
        if len(self.order) == 0:
            raise UserError(
                f"the real dataset has {len(dataset)} training pairs, too few for "
                f"{world_size} processes"
            )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draw = self.start
        while True:
            epoch, k = divmod(draw, len(self.order))
            self.order.set_epoch(epoch)
            indices = list(self.order)
            for index in indices[k:]:
                yield index, draw
                draw += 1


class TrainingBatches:
    """The training stream of one process: synthetic, real or mixed batches on ``device``.

    ``next()`` returns a dict of (N, C, H, W) tensors: frame_t, frame_next, sharp_t (and
    frame_prev for
    three-frame variants); with synthetic data also flow, valid (and flow_prev, valid_prev).
    ``state_dict()`` / ``load_state_dict()`` capture where the stream stands, so a resumed run
    sees the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        device: torch.device,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        d = config.data
        self.device = device
        self.three_frames = VARIANTS[config.model.variant].in_frames == 3
        n_real = {"synthetic": 0, "real": batch_size, "mix": round(batch_size * d.real_fraction)}
        self.n_real = n_real[d.source]
        self.n_synthetic = batch_size - self.n_real
        self.real_draws = 0  # real samples consumed so far by this process
        self.augment_synthetic = d.augment_synthetic
        self.augment_kwargs = _augment_kwargs(config)
        self.scenes = None
        if self.n_synthetic:
            try:
                from ..data.synthetic import SyntheticScenes
            except ImportError as e:
                raise UserError(f"synthetic training data is unavailable ({e})") from None
            self.scenes = SyntheticScenes(
                _scene_config(config, self.three_frames),
                seed=_rank_seed(config.seed, rank),
                device=device,
            )
            # Augmentation of synthetic batches draws from its own generator (saved state).
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(_rank_seed(config.seed, rank, 1))
        self.pool = None
        if self.n_synthetic and d.synthetic_pool:
            self.pool = self._render_pool(config, rank)
        self.real = None
        self._real_iter: Iterator | None = None
        if self.n_real:
            self.real = self._open_real(config, rank)

    def _render_pool(self, config: TrainConfig, rank: int) -> Any:
        """Render ``data.synthetic_pool`` samples of this process's own stream, once (again on
        resume: the pool depends on the seed alone). The pool's draws come from the
        CPU generator ``pool_generator`` (saved state)."""
        from ..data.pool import ScenePool

        size = config.data.synthetic_pool
        keys = ("frame_t", "frame_next", "sharp_t", "frame_prev")
        if config.stage == "flow":
            keys += ("flow", "valid", "flow_prev", "valid_prev")
        start = time.perf_counter()
        next_report = [size // 10]

        def report(done: int) -> None:  # every tenth of the pool (rank 0 only)
            if rank == 0 and (done >= next_report[0] or done == size):
                rate = done / max(time.perf_counter() - start, 1e-9)
                print(f"flowdeblur train: pool {done}/{size} samples rendered "
                      f"({rate:.1f} samples/s)", flush=True)
                next_report[0] = done + max(size // 10, 1)

        pool = ScenePool(self.scenes, size, config.data.crop_size,
                         chunk=max(self.n_synthetic, 8), keys=keys, progress=report)
        self.pool_generator = torch.Generator()
        self.pool_generator.manual_seed(_rank_seed(config.seed, rank, 5))
        return pool

    def _open_real(self, config: TrainConfig, rank: int) -> _RealPatches:
        from ..data.readers import PairedFrames

        d = config.data
        base = PairedFrames(d.real_root, d.real_layout, split="train",
                            frames=3 if self.three_frames else 2)
        if len(base) == 0:
            raise UserError(f"no training pairs found in {d.real_root} (layout {d.real_layout})")
        return _RealPatches(base, config.seed, rank, self.augment_kwargs)

    def start(self, *, num_workers: int, rank: int, world_size: int, seed: int) -> None:
        """Start loading real data (call after ``load_state_dict`` when resuming)."""
        if self.real is None:
            return
        sampler = _EndlessSampler(self.real, rank, world_size, seed, self.real_draws)
        loader = torch.utils.data.DataLoader(
            self.real,
            batch_size=self.n_real,
            sampler=sampler,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            drop_last=True,
            persistent_workers=num_workers > 0,
        )
        self._real_iter = iter(loader)

    def next(self) -> dict[str, torch.Tensor]:
        parts = []
        if self.scenes is not None:
            if self.pool is not None:
                batch = self.pool.sample(self.n_synthetic, self.pool_generator)
            else:
                batch = self.scenes.sample(self.n_synthetic)
            if self.augment_synthetic:
                from ..data.augment import augment

                batch = augment(batch, generator=self.generator, **self.augment_kwargs)
            parts.append({k: v.to(self.device, non_blocking=True) for k, v in batch.items()
                          if isinstance(v, torch.Tensor)})
        if self._real_iter is not None:
            batch = next(self._real_iter)
            self.real_draws += self.n_real
            parts.append({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
        if len(parts) == 1:
            return parts[0]
        shared = [k for k in parts[0] if all(k in p for p in parts)]
        return {k: torch.cat([p[k] for p in parts]) for k in shared}

    def close(self) -> None:
        """Stop the DataLoader workers (if any)."""
        self._real_iter = None  # the iterator shuts its workers down when released

    def state_dict(self) -> dict:
        state: dict[str, Any] = {"real_draws": self.real_draws}
        if self.scenes is not None:
            state["scenes"] = self.scenes.state_dict()
            state["augment_generator"] = self.generator.get_state()
        if self.pool is not None:
            state["pool_generator"] = self.pool_generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.real_draws = int(state.get("real_draws", 0))
        if self.scenes is not None:
            if "scenes" not in state:
                raise UserError("the checkpoint holds no synthetic data stream state")
            self.scenes.load_state_dict(state["scenes"])
            self.generator.set_state(state["augment_generator"])
        if self.pool is not None:
            if "pool_generator" not in state:
                raise UserError("the checkpoint was written by a run without data.synthetic_pool")
            self.pool_generator.set_state(state["pool_generator"])


# ---------------------------------------------------------------------------------------------
# Loss, parameters, schedule, RNG


def compute_loss(
    net: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    """One forward pass and its loss -> (loss, named parts, what to visualise).

    Stage "flow": ``net`` is the flow network alone (``FlowDeblurNet.flownet``), fed the blurry
    frames it will see in stage 2; loss = multi-scale EPE (plus the t->t-1 flows' EPE for the
    'bidirectional' variant). Stage "joint": ``net`` is the FlowDeblurNet; loss = Eq. 14.
    """
    in_frames = VARIANTS[config.model.variant].in_frames
    prev = batch.get("frame_prev") if in_frames == 3 else None
    if config.stage == "flow":
        frames = [batch["frame_t"], batch["frame_next"], prev][:in_frames]
        flows, gates = net(pad_to_multiple(torch.cat(frames, dim=1)))  # (N, 3*in_frames, H, W)
        epe = multiscale_epe(flows, batch["flow"], batch.get("valid"))
        if in_frames == 3:
            epe = epe + multiscale_epe(
                [f[:, 2:4] for f in flows], batch["flow_prev"], batch.get("valid_prev")
            )
        return epe, {"epe": epe}, {"flows": flows, "gates": gates, "image": None}
    out = net(batch["frame_t"], batch["frame_next"], prev)
    loss = eq14_loss(
        out, batch["frame_t"], batch["frame_next"], batch["sharp_t"], frame_prev=prev,
        flow_loss=config.flow_loss, reduction=config.loss_reduction,
    )
    return loss.total, {"image": loss.image, "flow": loss.flow}, {
        "flows": out.flows, "gates": out.gates, "image": out.image
    }


def _probe_batch(config: TrainConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """A tiny random batch with every key any stage reads (for :func:`_freeze_unreached`)."""
    g = torch.Generator().manual_seed(0)
    size = (1, 3, 64, 64)
    batch = {k: torch.rand(size, generator=g) for k in IMAGE_KEYS}
    batch["flow"] = torch.randn((1, 2, 64, 64), generator=g)
    batch["flow_prev"] = torch.randn((1, 2, 64, 64), generator=g)
    return {k: v.to(device) for k, v in batch.items()}


def _freeze_unreached(net: nn.Module, config: TrainConfig, device: torch.device) -> list[str]:
    """Freeze the parameters this stage's loss gives no gradient (e.g. the gate heads under
    the EPE); DDP requires every trained parameter to receive one. Returns their names."""
    loss, _, _ = compute_loss(net, _probe_batch(config, device), config)
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    frozen = []
    for (name, p), g in zip(named, grads):
        if g is None:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate of the optimiser step that follows ``step`` completed steps."""
    base, s = config.optim.lr, config.schedule
    if s.warmup_steps and step < s.warmup_steps:
        return base * (step + 1) / s.warmup_steps
    if s.kind == "poly":  # Caffe's "poly": base * (1 - iter / max_iter) ^ power
        return base * max(1.0 - step / config.steps, 0.0) ** s.power
    return base


def _rng_state(batches: TrainingBatches) -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's key array as a tensor, so the checkpoint loads with weights_only=True
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
        "data": batches.state_dict(),
    }


def _set_rng_state(state: dict, batches: TrainingBatches) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    batches.load_state_dict(state["data"])


def _load_init_weights(model: FlowDeblurNet, path: str, strict: bool) -> str:
    """Weights-only start; returns a one-line note of what was loaded."""
    from ..weights import load_state_into, read_weights

    if strict:
        load_state_into(model, path)
        return f"initialised from {path}"
    state, _ = read_weights(path)
    own = model.state_dict()
    fits = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    if not fits:
        raise UserError(f"no tensor of {path} fits model.variant={model.variant}")
    with torch.no_grad():
        for k in fits:
            own[k].copy_(state[k].to(own[k].dtype))
    return f"initialised {len(fits)} of {len(own)} tensors from {path}"


# ---------------------------------------------------------------------------------------------
# Logs


def _flow_image(flow: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) flow -> (N, 3, H, W) in [0, 1]: colour wheel, or magnitude if viz lacks it."""
    try:
        from ..viz import flow_to_color
    except ImportError:
        mag = flow.float().norm(dim=1, keepdim=True)
        mag = mag / mag.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return mag.expand(-1, 3, -1, -1)
    return flow_to_color(flow.float())


def _gate_image(gates: torch.Tensor) -> torch.Tensor:
    """(N, 4C, H, W) gates in (-1, 1) -> (N, 3, 2H, 2W): per-direction channel means."""
    try:
        from ..viz import gates_to_image
    except ImportError:
        n, c4, h, w = gates.shape
        g = ((gates.float().view(n, 4, c4 // 4, h, w).mean(2) + 1) / 2).clamp(0, 1)
        grid = torch.cat([torch.cat([g[:, 0], g[:, 1]], -1), torch.cat([g[:, 2], g[:, 3]], -1)], -2)
        return grid.unsqueeze(1).expand(-1, 3, -1, -1)
    return gates_to_image(gates.float())


def _log_images(writer: Any, step: int, batch: dict, vis: dict) -> None:
    """First sample of the batch: blurry, output, sharp, colour-coded flows, gate maps."""

    def put(tag: str, image: torch.Tensor) -> None:
        writer.add_image(tag, image[0].detach().float().clamp(0, 1).cpu(), step)

    put("images/blurry", batch["frame_t"][:1])
    put("images/sharp", batch["sharp_t"][:1])
    if vis["image"] is not None:
        put("images/output", vis["image"][:1])
    if vis["flows"]:
        put("flow/predicted", _flow_image(vis["flows"][0][:1, :2].detach()))
    if "flow" in batch:
        put("flow/ground_truth", _flow_image(batch["flow"][:1]))
    if vis["image"] is not None:  # gates only mean something once the RNNs train (stage 2)
        for i, g in enumerate(vis["gates"], 1):
            put(f"gates/rnnw{i}", _gate_image(g[:1].detach()))


class _LossLog:
    """``run_dir/losses.jsonl``: one JSON line per step (rank 0 only)."""

    def __init__(self, path: Path, start_step: int) -> None:
        self.path = path
        # A killed run may have logged steps past its last checkpoint: drop them, so the file
        # reads as one uninterrupted run.
        kept = []
        if start_step > 0 and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= start_step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    break  # a line cut by the kill: nothing valid follows it
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        os.replace(tmp, path)
        self.file = path.open("a", buffering=1)

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.file.close()


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The loop


def train(config: TrainConfig, *, resume: bool = False) -> dict[str, Any]:
    """Train a FlowDeblurNet as ``config`` says; returns a summary of the run.

    Args:
        config: a validated :class:`~flowdeblur.training.config.TrainConfig`
            (see :func:`flowdeblur.training.config.load_config`).
        resume: continue from the newest checkpoint in ``config.run_dir`` (model, optimiser,
            schedule, RNG and data-stream state, step) instead of starting afresh.
    Returns:
        dict with ``final_step``, ``last_loss`` (mean over processes), ``run_dir``,
        ``interrupted`` (the signal name if SIGINT/SIGTERM stopped it, else None),
        ``weights`` (path of the exported weights, None if interrupted) and ``model``
        (the trained FlowDeblurNet, unwrapped, on its training device).
    Raises:
        UserError: bad config, unusable checkpoint or weights, or ``TrainingDiverged``.
    """
    from tqdm import tqdm

    want = "cuda" if config.device.startswith("cuda") or (
        config.device == "auto" and torch.cuda.is_available()) else "cpu"
    ddp = _init_distributed(want)
    master = ddp.rank == 0
    run_dir = Path(config.run_dir)
    writer = pbar = losslog = batches = None
    previous_handlers: dict[int, Any] = {}
    try:
        device = _pick_device(config.device, ddp.local_rank)
        if config.data.batch_size % ddp.world_size:
            raise UserError(f"data.batch_size={config.data.batch_size} does not split evenly "
                            f"over {ddp.world_size} processes")
        batch_size = config.data.batch_size // ddp.world_size  # per process

        # -- where to start: a checkpoint (resume) or fresh (optionally from weights alone)
        ckpt = None
        if resume:
            path = latest_checkpoint(run_dir)
            if path is None:
                raise UserError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
            ckpt = load_checkpoint(path)
            _check_resumable(ckpt, config, ddp.world_size, path)
        elif list_checkpoints(run_dir):
            raise UserError(f"{run_dir} already holds checkpoints: pass --resume to continue "
                            f"that run, or choose another run_dir")
        step = ckpt["step"] if ckpt else 0

        # -- model (the same initial weights on every process), optimiser
        torch.manual_seed(config.seed)
        model = FlowDeblurNet(config.model.variant, rnn_backend=config.model.rnn_backend)
        note = "initialised with Xavier weights"
        if ckpt is not None:
            try:
                model.load_state_dict(ckpt["model"])
            except RuntimeError as e:
                raise UserError(f"{path} does not fit model.variant={config.model.variant} "
                                f"({str(e).splitlines()[0]})") from None
            note = f"resumed from {path} at step {step}"
        elif config.model.init_weights:
            note = _load_init_weights(model, config.model.init_weights, config.model.init_strict)
        elif config.model.output_init == "identity":
            model.deblurnet.init_output_as_identity()
            note += ", the output conv starting as a copy of frame t"
        model.to(device).train()
        # Stage 1 runs the flow network alone; the deblurring U-Net would get no gradient.
        net = model.flownet if config.stage == "flow" else model
        frozen = _freeze_unreached(net, config, device)
        params = [p for p in net.parameters() if p.requires_grad]
        # The fused kernel: one pass over each tensor instead of a chain of elementwise ops
        # (measured on CPU-2: 4-7 ms instead of 27-100 ms, against a 0.5-0.67 s step;
        # docs/BENCHMARKS.md).
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        optimizer = torch.optim.Adam(params, lr=config.optim.lr, betas=config.optim.betas,
                                     weight_decay=config.optim.weight_decay, fused=fused)
        if ckpt is not None:
            try:
                optimizer.load_state_dict(ckpt["optimizer"])
            except (ValueError, KeyError, RuntimeError) as e:
                raise UserError(f"the optimiser state in {path} does not fit this run "
                                f"({str(e).splitlines()[0]})") from None
            for group in optimizer.param_groups:  # the checkpoint's flag came back with it
                group["fused"] = fused
        trained = net
        if ddp.enabled:
            trained = nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None
            )

        # -- data, RNG (per process), logs
        batches = TrainingBatches(config, device=device, batch_size=batch_size,
                                  rank=ddp.rank, world_size=ddp.world_size)
        torch.manual_seed(_rank_seed(config.seed, ddp.rank, 2))
        np.random.seed(_rank_seed(config.seed, ddp.rank, 3))
        random.seed(_rank_seed(config.seed, ddp.rank, 4))
        if ckpt is not None:
            if len(ckpt["rng"]) != ddp.world_size:  # checked above; keeps the index honest
                raise UserError(f"{path} was written by {len(ckpt['rng'])} processes")
            _set_rng_state(ckpt["rng"][ddp.rank], batches)
        batches.start(num_workers=config.data.num_workers, rank=ddp.rank,
                      world_size=ddp.world_size, seed=config.seed)
        if master:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_text_atomic(run_dir / "config.yaml", to_yaml(config))
            losslog = _LossLog(run_dir / "losses.jsonl", step)
            if config.log.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(run_dir / "tb"))
            print(f"flowdeblur train: stage={config.stage} variant={config.model.variant} "
                  f"device={device} processes={ddp.world_size} batch={config.data.batch_size}x"
                  f"{config.data.crop_size} steps={config.steps}; {note}"
                  + (f"; {len(frozen)} tensors get no gradient and stay frozen" if frozen else ""),
                  flush=True)

        # -- SIGINT/SIGTERM: finish the current step, save, exit (a second one: stop at once)
        caught: list[int] = []

        def on_signal(signum: int, _frame: Any) -> None:
            if caught:
                raise KeyboardInterrupt
            caught.append(signum)
            if master:
                print(f"\nflowdeblur train: {signal.Signals(signum).name}: saving after this "
                      "step (send it again to stop without saving)", flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous_handlers[sig] = signal.signal(sig, on_signal)
            except ValueError:  # not the main thread: leave signals alone
                break

        def save(at: int) -> Path:
            states = [None] * ddp.world_size
            own = _rng_state(batches)
            if ddp.enabled:
                dist.all_gather_object(states, own)
            else:
                states = [own]
            target = checkpoint_path(run_dir, at)
            if master:
                save_checkpoint(target, {
                    "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": at,
                    "config": to_dict(config), "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": {"kind": config.schedule.kind, "lr": learning_rate(at - 1, config)},
                    "rng": states, "world_size": ddp.world_size,
                })
                prune_checkpoints(run_dir, config.log.keep_checkpoints)
            return target

        use_amp = config.amp and device.type == "cuda"
        pbar = tqdm(total=config.steps, initial=step, desc=config.stage, dynamic_ncols=True,
                    disable=not (master and config.log.progress))
        last_loss = float("nan")
        interrupted = None
        tick = time.perf_counter()
        while step < config.steps:
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = batches.next()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, parts, vis = compute_loss(trained, batch, config)

            # One collective per step: every process's loss and parts, and the signal (if any)
            # that asked a process to stop, so that all of them stop at the same step.
            signum = torch.tensor(float(caught[0] if caught else 0), device=device)
            stats = torch.stack([loss.detach().float(),
                                 *(v.detach().float() for v in parts.values()), signum])
            if ddp.enabled:
                gathered = [torch.empty_like(stats) for _ in range(ddp.world_size)]
                dist.all_gather(gathered, stats)
                stats_all = torch.stack(gathered).cpu()  # (world, 2 + parts)
            else:
                stats_all = stats.cpu()[None]
            mean = stats_all.mean(0)
            if not torch.isfinite(stats_all[:, 0]).all():
                good = latest_checkpoint(run_dir)
                raise TrainingDiverged(
                    f"the loss became {float(mean[0])} at step {step + 1}; stopped without "
                    + (f"saving; the last good checkpoint is {good}" if good
                       else "saving (no checkpoint was written yet)")
                    + "; try a lower optim.lr or set optim.grad_clip"
                )

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
            optimizer.step()
            step += 1
            last_loss = float(mean[0])

            if master:
                record = {"step": step, "loss": last_loss, "lr": lr}
                record.update({k: float(v) for k, v in zip(parts, mean[1:-1])})
                if ddp.enabled:
                    record["rank_losses"] = stats_all[:, 0].tolist()
                losslog.write(record)
                pbar.set_postfix(loss=f"{last_loss:.4g}", refresh=False)
                pbar.update(1)
                if writer is not None and step % config.log.every == 0:
                    now = time.perf_counter()
                    writer.add_scalar("loss/total", last_loss, step)
                    for k, v in zip(parts, mean[1:-1]):
                        writer.add_scalar(f"loss/{k}", float(v), step)
                    writer.add_scalar("lr", lr, step)
                    writer.add_scalar("steps_per_second", config.log.every / (now - tick), step)
                    tick = now
                if writer is not None and config.log.image_every and (
                        step % config.log.image_every == 0 or step == 1):
                    _log_images(writer, step, batch, vis)

            stop_signal = int(stats_all[:, -1].max())
            if stop_signal or step % config.log.checkpoint_every == 0 or step == config.steps:
                save(step)
            if stop_signal and step < config.steps:
                interrupted = signal.Signals(stop_signal).name
                break
        weights = None
        if master and interrupted is None:
            from ..weights import save_weights

            weights = run_dir / "weights.safetensors"
            save_weights(model, weights, dtype=config.export_dtype,
                         extra_metadata={"stage": config.stage, "step": str(step)})
        if master:
            pbar.close()
            where = f"{run_dir} (checkpoint step {step})"
            print(f"flowdeblur train: {'interrupted by ' + interrupted if interrupted else 'done'}"
                  f" at step {step}, loss {last_loss:.5g}; {where}"
                  + ("; continue with --resume" if interrupted else f"; weights: {weights}"),
                  flush=True)
        return {"final_step": step, "last_loss": last_loss, "run_dir": str(run_dir),
                "interrupted": interrupted, "weights": str(weights) if weights else None,
                "model": model}
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if pbar is not None:
            pbar.close()
        if writer is not None:
            writer.close()
        if losslog is not None:
            losslog.close()
        if batches is not None:
            batches.close()
        if ddp.owns_group:
            dist.destroy_process_group()


def _check_resumable(ckpt: dict, config: TrainConfig, world_size: int, path: Path) -> None:
    """A checkpoint continues only the same model, stage and number of processes."""
    saved = ckpt["config"]
    for key, now in (("stage", config.stage), ("model.variant", config.model.variant)):
        section, _, name = key.rpartition(".")
        was = (saved.get(section, {}) if section else saved).get(name)
        if was != now:
            raise UserError(f"{path} was trained with {key}={was}, this run has {key}={now}; "
                            f"start a new run_dir (use --init-weights to start from its weights)")
    if len(ckpt["rng"]) != world_size:
        raise UserError(
            f"{path} was written by {len(ckpt['rng'])} processes, this run has {world_size}: "
            f"resume with the same number, or start a new run_dir with --init-weights"
        )
    if ckpt["step"] >= config.steps:
        raise UserError(f"{path} is already at step {ckpt['step']} >= steps={config.steps}; "
                        f"raise steps to train further")


def export_weights_from_checkpoint(
    checkpoint: str | os.PathLike, output: str | os.PathLike, *, dtype: str = "fp32"
) -> Path:
    """Write the model weights of a training checkpoint as a safetensors weights file."""
    from ..weights import save_weights

    state = load_checkpoint(checkpoint)
    model = FlowDeblurNet(state["config"]["model"]["variant"])
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        reason = str(e).splitlines()[0]
        raise UserError(f"{checkpoint} holds an unusable model ({reason})") from None
    save_weights(model, output, dtype=dtype, extra_metadata={"step": str(state["step"])})
    return Path(output)

