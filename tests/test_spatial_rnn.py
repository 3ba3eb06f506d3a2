"""The spatial RNN (Eq. 13): reference loop and vectorised torch backend against an
independent element-by-element implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import random_gates

from flowdeblur.ops import BACKENDS, resolve_backend, spatial_rnn
from flowdeblur.ops.rnn_reference import DIRECTIONS, scan_reference

# The backends that exist in every environment; kernel backends have their own test files.
PORTABLE = ["reference", "torch"]


def naive_numpy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Eq. 13 written out pixel by pixel in float64, one direction block after another."""
    n, c, h, wd = x.shape
    out = np.zeros((n, 4 * c, h, wd))
    for k in range(4):
        g = w[:, k * c : (k + 1) * c]
        o = out[:, k * c : (k + 1) * c]
        for b in range(n):
            for ch in range(c):
                if k in (0, 1):  # horizontal
                    cols = range(wd) if k == 0 else range(wd - 1, -1, -1)
                    for r in range(h):
                        prev = 0.0
                        for j in cols:
                            prev = (1 - g[b, ch, r, j]) * x[b, ch, r, j] + g[b, ch, r, j] * prev
                            o[b, ch, r, j] = prev
                else:
                    rows = range(h) if k == 2 else range(h - 1, -1, -1)
                    for j in range(wd):
                        prev = 0.0
                        for r in rows:
                            prev = (1 - g[b, ch, r, j]) * x[b, ch, r, j] + g[b, ch, r, j] * prev
                            o[b, ch, r, j] = prev
    return out


SHAPES = [(2, 3, 7, 11), (1, 2, 1, 9), (1, 2, 6, 1), (1, 1, 1, 1), (3, 5, 4, 5)]


@pytest.mark.parametrize("backend", PORTABLE)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_naive(backend, shape):
    n, c, h, w = shape
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    g = random_gates(n, 4 * c, h, w, dtype=torch.float64)
    expected = naive_numpy(x.numpy(), g.numpy())
    got = spatial_rnn(x, g, backend=backend)
    assert got.shape == (n, 4 * c, h, w)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,direction", list(enumerate(DIRECTIONS)))
def test_each_direction_block_uses_its_own_gates(k, direction):
    """Block k of the output depends only on gate block k, and runs in its direction."""
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    g = random_gates(1, 8, 5, 6, dtype=torch.float64)
    out = spatial_rnn(x, g, backend="torch")
    block = out[:, 2 * k : 2 * k + 2]
    torch.testing.assert_close(block, scan_reference(x, g[:, 2 * k : 2 * k + 2], direction))
    # Changing another block's gates leaves this block alone.
    g2 = g.clone()
    g2[:, (2 * k + 2) % 8 : (2 * k + 2) % 8 + 2] = 0.5
    torch.testing.assert_close(spatial_rnn(x, g2, backend="torch")[:, 2 * k : 2 * k + 2], block)
    # The first element along the scan direction is (1 - w) * x: nothing came before it.
    first = {0: (..., 0), 1: (..., -1), 2: (..., 0, slice(None)), 3: (..., -1, slice(None))}[k]
    gk = g[:, 2 * k : 2 * k + 2]
    torch.testing.assert_close(block[first], ((1 - gk) * x)[first])


@pytest.mark.parametrize("length_axis", ["w", "h"])
def test_long_rows_fp32_against_fp64(length_axis):
    """Length 1100 with |w| >= 0.9, mixed signs: closed forms (cumprod) underflow here."""
    shape = (1, 2, 3, 1100) if length_axis == "w" else (1, 2, 1100, 3)
    x = torch.randn(*shape, dtype=torch.float64)
    g = random_gates(shape[0], 4 * shape[1], *shape[2:], low=0.9, dtype=torch.float64)
    ref = spatial_rnn(x, g, backend="reference")
    got = spatial_rnn(x.float(), g.float(), backend="torch").double()
    assert torch.isfinite(got).all()
    rel = (got - ref).norm() / ref.norm()
    assert rel < 1e-5, rel


def test_torch_backend_gradients_match_reference():
    x = torch.randn(2, 3, 7, 11, dtype=torch.float64, requires_grad=True)
    g = random_gates(2, 12, 7, 11, dtype=torch.float64).requires_grad_()
    grad_out = torch.randn(2, 12, 7, 11, dtype=torch.float64)
    ref = torch.autograd.grad(spatial_rnn(x, g, backend="reference"), (x, g), grad_out)
    got = torch.autograd.grad(spatial_rnn(x, g, backend="torch"), (x, g), grad_out)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(1, 2, 4, 5), (2, 1, 1, 3), (1, 1, 3, 1)])
def test_gradcheck_torch_backend(shape):
    n, c, h, w = shape
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    g = random_gates(n, 4 * c, h, w, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: spatial_rnn(a, b, backend="torch"), (x, g))


def test_low_precision_storage_accumulates_in_fp32():
    x = torch.randn(1, 4, 8, 300)
    g = random_gates(1, 16, 8, 300, low=0.9)
    ref = spatial_rnn(x.double(), g.double(), backend="reference")
    got = spatial_rnn(x.bfloat16(), g.bfloat16(), backend="torch")
    assert got.dtype == torch.bfloat16
    # Inputs are rounded to bf16 (rel. 4e-3); accumulation error must not grow with length.
    rel = (got.double() - ref).norm() / ref.norm()
    assert rel < 2e-2, rel


def test_bad_shapes_are_rejected():
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="4C"):
        spatial_rnn(x, torch.randn(1, 9, 4, 4))
    with pytest.raises(ValueError, match="4-D"):
        spatial_rnn(x[0], torch.randn(12, 4, 4))
    with pytest.raises(ValueError, match="unknown spatial_rnn backend"):
        spatial_rnn(x, torch.randn(1, 12, 4, 4), backend="cuda-magic")


def test_backend_names_and_auto_resolution():
    assert set(BACKENDS) == {"auto", "reference", "torch", "cpu", "triton", "scan"}
    assert resolve_backend("auto", "cpu") in ("cpu", "torch")
    assert resolve_backend("reference", "cpu") == "reference"
