"""The learning-rate schedule: constant (the paper) or Caffe's "poly", after a linear warm-up."""

from __future__ import annotations

import torch

from .config import TrainConfig


def learning_rate(step: int, config: TrainConfig) -> float:
    """Learning rate of the optimiser step that follows ``step`` completed steps."""
    base, s = config.optim.lr, config.schedule
    if s.warmup_steps and step < s.warmup_steps:
        return base * (step + 1) / s.warmup_steps
    if s.kind == "poly":  # Caffe's "poly": base * (1 - iter / max_iter) ^ power
        return base * max(1.0 - step / config.steps, 0.0) ** s.power
    return base


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, config: TrainConfig) -> float:
    """Set every parameter group to :func:`learning_rate` of ``step``; returns that rate."""
    lr = learning_rate(step, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
