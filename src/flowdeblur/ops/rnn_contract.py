"""The call contract every spatial_rnn backend checks, so a wrong call fails alike on all."""

from __future__ import annotations

import torch


def check_rnn_inputs(x: torch.Tensor, w: torch.Tensor) -> None:
    """Raise ValueError unless x is (N, C, H, W) and w is (N, 4C, H, W) on the same device."""
    if x.dim() != 4 or w.dim() != 4:
        raise ValueError(
            f"spatial_rnn expects 4-D x and w, got {tuple(x.shape)} and {tuple(w.shape)}"
        )
    n, c, h, wd = x.shape
    if tuple(w.shape) != (n, 4 * c, h, wd):
        raise ValueError(
            f"spatial_rnn: gates must have shape (N, 4C, H, W) = {(n, 4 * c, h, wd)}, "
            f"got {tuple(w.shape)}"
        )
    if x.device != w.device:
        raise ValueError(f"spatial_rnn: x on {x.device} but w on {w.device}")
