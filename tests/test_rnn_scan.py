"""ops/rnn_scan.py: the chunked linear scan against the reference loop, forward and backward,
at awkward sizes and with negative and zero gates."""

from __future__ import annotations

import pytest
import torch
from helpers import random_gates

from flowdeblur.ops import backend_available, spatial_rnn
from flowdeblur.ops.rnn_reference import scan_reference, spatial_rnn_reference
from flowdeblur.ops.rnn_scan import CHUNK, MAX_LENGTH, scan_chunked, spatial_rnn_scan

pytestmark = pytest.mark.usefixtures("one_thread")

# Lengths below, at and around the chunk (8) and its multiples, odd ones, a long line.
SHAPES = [(1, 1, 1, 1), (2, 3, 7, 11), (1, 2, 8, 9), (1, 2, 17, 1), (1, 1, 3, 65),
          (2, 2, 13, 31), (1, 1, 130, 5)]


def _gates(n, c, h, w, generator) -> torch.Tensor:
    """Gates in (-1, 1) of both signs, with exact zeros in every chunk."""
    g = random_gates(n, c, h, w, generator=generator, dtype=torch.float64)
    g[..., ::3] = 0.0
    g[..., ::5, :] = 0.0
    return g


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_the_reference(shape):
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(n, c, h, w, dtype=torch.float64, generator=gen, requires_grad=True)
    g = _gates(n, 4 * c, h, w, gen).requires_grad_(True)
    got = spatial_rnn_scan(x, g)
    want = spatial_rnn_reference(x, g)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn(got.shape, dtype=torch.float64, generator=gen)
    got_grads = torch.autograd.grad(got, (x, g), grad_out)
    want_grads = torch.autograd.grad(want, (x, g), grad_out)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_random_sizes_in_float32_as_the_network_runs_it():
    gen = torch.Generator().manual_seed(7)
    for _ in range(4):
        h, w = (int(v) for v in torch.randint(1, 40, (2,), generator=gen))
        x = torch.randn(1, 2, h, w, generator=gen)
        g = random_gates(1, 8, h, w, generator=gen)
        torch.testing.assert_close(spatial_rnn_scan(x, g), spatial_rnn_reference(x, g),
                                   rtol=1e-5, atol=1e-5)


def test_a_long_line_with_gates_near_minus_one_and_zero():
    """Many chunks: the carried state alternates in sign and survives 2000 positions."""
    length = 250 * CHUNK + 3
    x = torch.randn(1, 1, 1, length, dtype=torch.float64)
    w = torch.full_like(x, -0.9995)
    w[..., 1000] = 0.0  # a zero gate cuts the line in two
    want = scan_reference(x, w, "left_to_right")
    torch.testing.assert_close(scan_chunked(x, w), want, rtol=1e-10, atol=1e-10)


def test_bf16_inputs_are_scanned_in_float32():
    x = torch.randn(1, 2, 5, 19)
    g = random_gates(1, 8, 5, 19)
    got = spatial_rnn_scan(x.bfloat16(), g.bfloat16())
    assert got.dtype == torch.bfloat16
    want = spatial_rnn_reference(x.bfloat16().double(), g.bfloat16().double())
    torch.testing.assert_close(got.double(), want, rtol=2e-2, atol=2e-2)


def test_is_the_scan_backend_of_spatial_rnn():
    assert backend_available("scan", "cpu")
    x, g = torch.randn(1, 2, 4, 6), random_gates(1, 8, 4, 6)
    torch.testing.assert_close(spatial_rnn(x, g, backend="scan"), spatial_rnn_scan(x, g))


def test_lines_longer_than_it_handles_are_refused():
    x = torch.zeros(1, MAX_LENGTH + 1)
    with pytest.raises(ValueError, match="up to"):
        scan_chunked(x, x)
