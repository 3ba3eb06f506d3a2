"""Random streams of a training process: seeds per rank, and the state a checkpoint keeps.

Every process of a run draws from its own streams, derived from ``(config.seed, rank, k)``;
a checkpoint stores each process's generator states so that a resumed run draws exactly what
the interrupted one would have.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rank_seed(seed: int, rank: int, *more: int) -> int:
    """An independent 31-bit seed per ``(seed, rank, *more)``.

    ``SeedSequence`` mixes the entries, so (seed 0, rank 1) and (seed 1, rank 0) do not
    collide the way ``seed + rank`` would.
    """
    return int(np.random.SeedSequence([seed, rank, *more]).generate_state(1)[0]) & 0x7FFFFFFF


def seed_process(seed: int, rank: int) -> None:
    """Seed torch, numpy and Python's ``random`` for this process (after the model is built:
    the model's initial weights come from ``torch.manual_seed(seed)`` on every rank)."""
    torch.manual_seed(rank_seed(seed, rank, 2))
    np.random.seed(rank_seed(seed, rank, 3))
    random.seed(rank_seed(seed, rank, 4))


def rng_state(data_state: dict[str, Any]) -> dict[str, Any]:
    """This process's generator states, plus ``data_state`` (the data stream's state dict).

    Keys: torch, cuda (one state per device, empty without CUDA), numpy, python, data.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's key array as a tensor, so the checkpoint loads with weights_only=True
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
        "data": data_state,
    }


def restore_rng_state(state: dict[str, Any]) -> dict[str, Any]:
    """Set the generators from a :func:`rng_state` dict; returns its data stream state."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    return state["data"]
