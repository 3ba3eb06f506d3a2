"""The training stream of one process: synthetic scenes, a real dataset, or both per batch.

A batch is a dict of (N, C, H, W) tensors on the training device, keyed as in
docs/DESIGN.md: ``frame_t``, ``frame_next`` (the frame paired with t), ``sharp_t`` and, for
three-frame variants, ``frame_prev``; synthetic batches also carry the ground-truth flow
``flow``, ``valid`` (and ``flow_prev``, ``valid_prev``). With the reblurring loss on
(``reblur.weight`` > 0) every batch also carries ``reblur.batch_size`` unlabelled triples of
real video (:mod:`flowdeblur.training.unlabelled`), keyed ``unlabelled_prev``,
``unlabelled_t``, ``unlabelled_next``, ``unlabelled_duty``.

Everything random in the stream is seeded per process rank and saved in checkpoints
(:meth:`TrainingBatches.state_dict`), so a resumed run sees the batches an uninterrupted one
would have seen.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Iterator
from typing import Any

import torch

from ..data import readers
from ..data.augment import augment
from ..data.degrade import degrade_batch
from ..data.pool import ScenePool
from ..data.synthetic import SceneConfig, SyntheticScenes
from ..errors import UserError
from ..models import VARIANTS
from .config import TrainConfig, degrade_config
from .rng import rank_seed
from .unlabelled import UnlabelledTriples

#: Image keys of a training batch ((N, 3, H, W) in [0, 1]) that the losses read.
IMAGE_KEYS = ("frame_t", "frame_next", "sharp_t", "frame_prev")
#: Ground-truth flow keys of a synthetic batch, read by flow pre-training (stage "flow").
FLOW_KEYS = ("flow", "valid", "flow_prev", "valid_prev")


def scene_config(config: TrainConfig, three_frames: bool) -> SceneConfig:
    """The synthetic scenes of ``config.data.synthetic``; UserError names an unknown key."""
    names = {f.name for f in dataclasses.fields(SceneConfig)}
    kwargs = {}
    for key, value in config.data.synthetic.items():
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hint = f"; did you mean 'data.synthetic.{close[0]}'?" if close else ""
            raise UserError(f"unknown config key 'data.synthetic.{key}'{hint}")
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    side = config.data.scene_size or config.data.crop_size
    return SceneConfig(size=(side, side), three_frames=three_frames, **kwargs)


def augment_kwargs(config: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`flowdeblur.data.augment.augment` for ``config.data``."""
    d = config.data
    return dict(
        crop_size=(d.crop_size, d.crop_size),
        scale_range=tuple(d.scale_range),
        max_rotation_deg=d.max_rotation_deg,
        flips=d.flips,
        permute_colors=d.permute_colors,
    )


def batch_side(config: TrainConfig) -> int:
    """The side of a batch's square images: ``data.crop_size``, or the scenes' side when
    synthetic scenes are used whole (no pool, no augmentation)."""
    d = config.data
    whole = d.source != "real" and not d.synthetic_pool and not d.augment_synthetic
    return (d.scene_size or d.crop_size) if whole else d.crop_size


class RealPatches(torch.utils.data.Dataset):
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
        index, draw = key
        item = self.base[index]
        sample = {k: item[k].unsqueeze(0) for k in IMAGE_KEYS if k in item}
        generator = torch.Generator().manual_seed(rank_seed(self.seed, self.rank, draw))
        out = augment(sample, generator=generator, **self.augment_kwargs)
        return {k: v[0] for k, v in out.items() if k in sample}


class EndlessSampler(torch.utils.data.Sampler):
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


class _PoolProgress:
    """Prints the pool's rendering progress every tenth of the pool (rank 0 only)."""

    def __init__(self, size: int, enabled: bool) -> None:
        self.size, self.enabled = size, enabled
        self.start = time.perf_counter()
        self.next_report = size // 10

    def __call__(self, done: int) -> None:
        if not self.enabled or (done < self.next_report and done != self.size):
            return
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        print(f"flowdeblur train: pool {done}/{self.size} samples rendered "
              f"({rate:.1f} samples/s)", flush=True)
        self.next_report = done + max(self.size // 10, 1)


class TrainingBatches:
    """The training stream of one process: synthetic, real or mixed batches on ``device``.

    ``next()`` returns a dict of (N, C, H, W) tensors (see the module docstring) with
    N = ``batch_size`` (this process's share of the global batch). ``state_dict()`` /
    ``load_state_dict()`` capture where the stream stands; call ``start()`` once, after
    ``load_state_dict`` when resuming, before the first ``next()``.
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
        self.augment_kwargs = augment_kwargs(config)
        self.scenes = self.pool = self.real = None
        self._real_iter: Iterator | None = None
        if self.n_synthetic:
            self.scenes = SyntheticScenes(
                scene_config(config, self.three_frames),
                seed=rank_seed(config.seed, rank),
                device=device,
            )
            # Augmentation of synthetic batches draws from its own generator (saved state).
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(rank_seed(config.seed, rank, 1))
            if d.synthetic_pool:
                self.pool = self._render_pool(config, rank)
        if self.n_real:
            self.real = self._open_real(config, rank)
        self.unlabelled = self._open_unlabelled(config, rank, world_size)
        # Degradations draw from their own CPU generator (saved state), so runs resume exactly.
        self.degrade = degrade_config(d)
        self.degrade_generator = torch.Generator()
        self.degrade_generator.manual_seed(rank_seed(config.seed, rank, 7))

    def _render_pool(self, config: TrainConfig, rank: int) -> ScenePool:
        """Render ``data.synthetic_pool`` samples of this process's own stream, once (again on
        resume: the pool depends on the seed alone). The pool's draws come from the
        CPU generator ``pool_generator`` (saved state)."""
        size = config.data.synthetic_pool
        keys = IMAGE_KEYS + (FLOW_KEYS if config.stage == "flow" else ())
        pool = ScenePool(self.scenes, size, config.data.crop_size,
                         chunk=max(self.n_synthetic, 8), keys=keys,
                         progress=_PoolProgress(size, enabled=rank == 0))
        self.pool_generator = torch.Generator()
        self.pool_generator.manual_seed(rank_seed(config.seed, rank, 5))
        return pool

    def _open_real(self, config: TrainConfig, rank: int) -> RealPatches:
        d = config.data
        base = readers.PairedFrames(d.real_root, d.real_layout, split="train",
                                    frames=3 if self.three_frames else 2)
        if len(base) == 0:
            raise UserError(f"no training pairs found in {d.real_root} (layout {d.real_layout})")
        return RealPatches(base, config.seed, rank, self.augment_kwargs)

    def _open_unlabelled(self, config: TrainConfig, rank: int, world_size: int
                         ) -> UnlabelledTriples | None:
        """The unlabelled triples of the reblurring loss (None when it is off), cropped to the
        side of the other images so that one forward pass takes them all."""
        if not config.reblur.weight:
            return None
        if config.reblur.batch_size % world_size:
            raise UserError(f"reblur.batch_size={config.reblur.batch_size} does not split "
                            f"evenly over {world_size} processes")
        self.n_unlabelled = config.reblur.batch_size // world_size
        return UnlabelledTriples(config.data.unlabelled_videos, side=batch_side(config),
                                 flips=config.data.flips, duty_range=config.reblur.duty_range,
                                 seed=config.seed, rank=rank)

    def start(self, *, num_workers: int, rank: int, world_size: int, seed: int) -> None:
        """Start loading real data (call after ``load_state_dict`` when resuming)."""
        if self.real is None:
            return
        sampler = EndlessSampler(self.real, rank, world_size, seed, self.real_draws)
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
        """The next batch: the synthetic share, then the real share, concatenated on N, with
        ``data.degrade`` applied to its blurry inputs, then the unlabelled triples (if any)."""
        batch = degrade_batch(self._assemble(), self.degrade, self.degrade_generator)
        if self.unlabelled is None:
            return batch
        return {**batch, **self.unlabelled.sample(self.n_unlabelled, self.device)}

    def _assemble(self) -> dict[str, torch.Tensor]:
        parts = []
        if self.scenes is not None:
            parts.append(self._next_synthetic())
        if self._real_iter is not None:
            batch = next(self._real_iter)
            self.real_draws += self.n_real
            parts.append({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
        if len(parts) == 1:
            return parts[0]
        shared = [k for k in parts[0] if all(k in p for p in parts)]
        return {k: torch.cat([p[k] for p in parts]) for k in shared}

    def _next_synthetic(self) -> dict[str, torch.Tensor]:
        if self.pool is not None:
            batch = self.pool.sample(self.n_synthetic, self.pool_generator)
        else:
            batch = self.scenes.sample(self.n_synthetic)
        if self.augment_synthetic:
            batch = augment(batch, generator=self.generator, **self.augment_kwargs)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()
                if isinstance(v, torch.Tensor)}

    def close(self) -> None:
        """Stop the DataLoader workers (if any)."""
        self._real_iter = None  # the iterator shuts its workers down when released

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"real_draws": self.real_draws,
                                 "degrade_generator": self.degrade_generator.get_state()}
        if self.scenes is not None:
            state["scenes"] = self.scenes.state_dict()
            state["augment_generator"] = self.generator.get_state()
        if self.pool is not None:
            state["pool_generator"] = self.pool_generator.get_state()
        if self.unlabelled is not None:
            state["unlabelled"] = self.unlabelled.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.real_draws = int(state.get("real_draws", 0))
        if "degrade_generator" in state:  # absent from checkpoints of runs without it
            self.degrade_generator.set_state(state["degrade_generator"])
        if self.scenes is not None:
            if "scenes" not in state:
                raise UserError("the checkpoint holds no synthetic data stream state")
            self.scenes.load_state_dict(state["scenes"])
            self.generator.set_state(state["augment_generator"])
        if self.pool is not None:
            if "pool_generator" not in state:
                raise UserError("the checkpoint was written by a run without data.synthetic_pool")
            self.pool_generator.set_state(state["pool_generator"])
        if self.unlabelled is not None:
            if "unlabelled" not in state:
                raise UserError("the checkpoint was written by a run without the reblurring "
                                "loss (reblur.weight)")
            self.unlabelled.load_state_dict(state["unlabelled"])
