"""The processes of a run: the process group torchrun describes, and what they exchange.

With ``torchrun --nproc_per_node=N -m flowdeblur train ...`` every process trains on its own
share of the batch (DistributedDataParallel). Once per step the processes exchange their losses
and any stop signal (:func:`gather_step_stats`), so that they log one mean, notice a diverged
loss together and stop at the same step; at a checkpoint they gather their RNG states
(:meth:`Processes.gather`), which rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist

from .objective import StepLoss


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place in the run (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: Whether :func:`init_distributed` created the process group (and :meth:`close` ends it).
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_master(self) -> bool:
        """Rank 0 writes the run folder (logs, checkpoints, weights)."""
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (a collective: all processes call it)."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def init_distributed(device_type: str) -> Processes:
    """Join the process group that torchrun describes in the environment (if any).

    ``device_type`` ("cuda" or "cpu") picks the backend: NCCL for GPUs, gloo for CPUs.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return Processes(dist.get_rank(), dist.get_world_size(), local_rank)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)


@dataclasses.dataclass(frozen=True)
class StepStats:
    """One step's loss over all processes."""

    #: Mean over processes of the total loss, and of each named part.
    loss: float
    parts: dict[str, float]
    #: Each process's total loss, in rank order.
    rank_losses: list[float]
    #: Whether every process's loss is finite.
    finite: bool
    #: The signal number that asked some process to stop, else 0.
    stop_signal: int
    #: Whether some process has used up ``time_limit_s``.
    out_of_time: bool = False


def gather_step_stats(
    loss: StepLoss, signum: int, processes: Processes, device: torch.device,
    out_of_time: bool = False,
) -> StepStats:
    """One collective per step: every process's loss, its parts, its stop signal and whether
    its time is up (so that all processes stop at the same step)."""
    own = torch.stack([loss.total.detach().float(),
                       *(v.detach().float() for v in loss.parts.values()),
                       torch.tensor(float(out_of_time), device=device),
                       torch.tensor(float(signum), device=device)])
    if processes.enabled:
        gathered = [torch.empty_like(own) for _ in range(processes.world_size)]
        dist.all_gather(gathered, own)
        every = torch.stack(gathered).cpu()  # (world, 1 + parts + 1)
    else:
        every = own.cpu()[None]
    mean = every.mean(0)
    return StepStats(
        loss=float(mean[0]),
        parts={k: float(v) for k, v in zip(loss.parts, mean[1:-2])},
        rank_losses=every[:, 0].tolist(),
        finite=bool(torch.isfinite(every[:, 0]).all()),
        stop_signal=int(every[:, -1].max()),
        out_of_time=bool(every[:, -2].max() > 0),
    )
