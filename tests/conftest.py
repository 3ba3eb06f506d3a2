"""Shared test fixtures and the ``gpu`` marker.

Tests that need CUDA carry ``@pytest.mark.gpu`` and nothing else: the hook below skips them on
machines without CUDA, so ``pytest -m gpu`` selects every GPU test there is.
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
