"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def random_gates(*shape: int, low: float = 0.0, generator: torch.Generator | None = None,
                 dtype=torch.float32) -> torch.Tensor:
    """Gates in (-1, 1) with |w| >= low and random signs."""
    mag = low + (1 - low) * torch.rand(*shape, generator=generator, dtype=torch.float64) * 0.999
    sign = torch.where(torch.rand(*shape, generator=generator) < 0.5, -1.0, 1.0).double()
    return (mag * sign).to(dtype)
