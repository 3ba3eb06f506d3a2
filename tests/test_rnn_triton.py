"""Triton backend of the spatial RNN (``rnn_triton``) against the float64 reference loop.

On CPU the kernels run in Triton's interpreter. ``triton.jit`` reads ``TRITON_INTERPRET`` when
the kernels are decorated, i.e. when ``flowdeblur.ops.rnn_triton`` is first imported, so:

* ``TRITON_INTERPRET=1 pytest tests/test_rnn_triton.py`` runs the interpreter tests directly;
* a plain ``pytest tests/`` runs ``test_interpreter_suite_in_subprocess``, which re-runs this
  file in a child pytest with ``TRITON_INTERPRET=1`` (the parent skips the interpreter tests
  themselves, saying so).

GPU tests (real sizes, torch.compile with Inductor) run in a process with compiled kernels
when CUDA is present, and are skipped otherwise.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import random_gates

pytest.importorskip("triton")

from flowdeblur.ops import backend_available, resolve_backend, rnn_triton, spatial_rnn  # noqa: E402, I001
from flowdeblur.ops.rnn_reference import (  # noqa: E402
    DIRECTIONS,
    scan_reference,
    spatial_rnn_reference,
)
from flowdeblur.ops.rnn_torch import spatial_rnn_torch  # noqa: E402

INTERPRETED = rnn_triton._INTERPRETED

interpreter_only = pytest.mark.skipif(
    not INTERPRETED,
    reason="needs kernels built under TRITON_INTERPRET=1; run by "
    "test_interpreter_suite_in_subprocess",
)
# With @pytest.mark.gpu: a test of the compiled kernels, not of the interpreter.
compiled_only = pytest.mark.skipif(INTERPRETED, reason="needs compiled kernels")

# Largest allowed max|got - ref| / max(1, max|ref|), ref in float64 from the same rounded
# inputs. bf16: the interpreter truncates fp32 -> bf16 (the GPU rounds to nearest), so its
# error is up to one bf16 ulp per stored value, 2^-7 relative, and dL/dw reads h[i-1] back
# from the bf16 output.
TOL = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 2.5e-2}


@pytest.fixture(autouse=True)
def _poison_fresh_outputs(monkeypatch):
    """Kernel outputs start as NaN, so an element no program writes fails the comparison."""
    monkeypatch.setattr(rnn_triton, "_POISON_OUTPUTS", True)


def make_inputs(shape, dtype, *, low=0.0, seed=0, device="cpu"):
    """x (N,C,H,W), gates (N,4C,H,W) in (-1, 1) with |w| >= low, incoming gradient dL/dout."""
    n, c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(dtype)
    g = random_gates(n, 4 * c, h, w, low=low, generator=gen, dtype=dtype)
    dh = torch.randn(n, 4 * c, h, w, generator=gen, dtype=torch.float64).to(dtype)
    return x.to(device), g.to(device), dh.to(device)


def reference(x, g, dh, impl=spatial_rnn_reference):
    """Forward and (dL/dx, dL/dw) in float64 from the same (rounded) inputs."""
    xr = x.double().requires_grad_()
    gr = g.double().requires_grad_()
    out = impl(xr, gr)
    dx, dg = torch.autograd.grad(out, (xr, gr), dh.double())
    return out.detach(), dx, dg


def run_kernels(x, g, dh, config=None):
    out = rnn_triton._forward(x, g, config)
    dx, dg = rnn_triton._backward(dh, x, g, out, config)
    return out, dx, dg


def assert_matches(got, ref, dtype, what):
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} != {tuple(ref.shape)}"
    assert not torch.isnan(got).any(), f"{what}: NaN (an element was never written)"
    err = (got.double().cpu() - ref.cpu()).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    assert err <= TOL[dtype] * scale, f"{what}: error {err:.3g} > {TOL[dtype]:.1g} * {scale:.3g}"


def assert_all_match(got, ref, dtype):
    for name, a, b in zip(("forward", "dL/dx", "dL/dw"), got, ref):
        assert_matches(a, b, dtype, name)


# ---------------------------------------------------------------------------- interpreter


# Awkward sizes: odd, single row / column / element, W=70 over 64-step row tiles and 32-wide
# column tiles, H=33 over 32-step column tiles, rows blocks straddling (n, c) planes.
SHAPES = [(2, 3, 7, 11), (1, 2, 1, 9), (1, 2, 6, 1), (1, 1, 1, 1), (2, 1, 5, 70), (1, 2, 33, 17)]


@interpreter_only
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_float64(shape):
    x, g, dh = make_inputs(shape, torch.float64)
    assert_all_match(run_kernels(x, g, dh), reference(x, g, dh), torch.float64)


@interpreter_only
@pytest.mark.parametrize(
    "config,shape",
    [
        (rnn_triton._Config(row_block=2, row_steps=4, col_steps=4, col_block=4), (2, 3, 5, 13)),
        (rnn_triton._Config(row_block=4, row_steps=8, col_steps=2, col_block=8), (2, 3, 5, 13)),
        (rnn_triton._Config(row_block=1, row_steps=1, col_steps=1, col_block=1), (1, 2, 3, 5)),
    ],
    ids=["tiles2x4", "tiles4x8", "tiles1x1"],
)
def test_carry_across_tiles_blocks_and_planes(config, shape):
    """Tiny tiles: every line spans several tiles (carry), the last tile and the last block
    of columns are partial (masks), and row blocks cross (n, c) plane boundaries (C*H = 15,
    odd); 1x1 tiles make every step its own tile."""
    x, g, dh = make_inputs(shape, torch.float64, seed=1)
    assert_all_match(run_kernels(x, g, dh, config), reference(x, g, dh), torch.float64)


@interpreter_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(2, 3, 7, 11), (1, 2, 5, 70)])
def test_storage_dtypes(dtype, shape):
    x, g, dh = make_inputs(shape, dtype, seed=2)
    assert_all_match(run_kernels(x, g, dh), reference(x, g, dh), dtype)


@interpreter_only
@pytest.mark.parametrize(
    "shape,config",
    [
        ((1, 1, 2, 320), rnn_triton._Config(row_block=2, row_steps=64, col_steps=2, col_block=32)),
        ((1, 1, 320, 2), rnn_triton._Config(row_block=64, row_steps=2, col_steps=32, col_block=2)),
    ],
    ids=["rows", "columns"],
)
def test_long_lines_float32(shape, config):
    """320 steps through the GPU's default tile lengths (64 along rows, 32 along columns):
    5 or 10 tiles per line, |w| >= 0.9 so the carry matters throughout. (The default config
    would fit a 320-long column of a 2-wide image into one tile, hence explicit ones.)"""
    default = rnn_triton._pick_config(512, 512, 640, backward=False)
    assert max(config.row_steps, config.col_steps) in (default.row_steps, default.col_steps)
    x, g, dh = make_inputs(shape, torch.float32, low=0.9, seed=3)
    assert_all_match(run_kernels(x, g, dh, config), reference(x, g, dh), torch.float32)


@interpreter_only
@pytest.mark.parametrize("k", range(4), ids=DIRECTIONS)
def test_each_direction_alone(k):
    """Block k runs in direction k with gates k; a gradient on block k alone reaches only
    gate block k and gives dL/dx of that direction only."""
    c = 2
    x, g, dh = make_inputs((1, c, 6, 9), torch.float64, seed=4 + k)
    only_k = torch.zeros_like(dh)
    only_k[:, k * c : (k + 1) * c] = dh[:, k * c : (k + 1) * c]
    out, dx, dg = run_kernels(x, g, only_k)
    gk = g[:, k * c : (k + 1) * c]
    torch.testing.assert_close(out[:, k * c : (k + 1) * c], scan_reference(x, gk, DIRECTIONS[k]))
    xr, gr = x.clone().requires_grad_(), gk.clone().requires_grad_()
    ex, eg = torch.autograd.grad(
        scan_reference(xr, gr, DIRECTIONS[k]), (xr, gr), dh[:, k * c : (k + 1) * c]
    )
    torch.testing.assert_close(dx, ex)
    torch.testing.assert_close(dg[:, k * c : (k + 1) * c], eg)
    others = torch.cat([dg[:, j * c : (j + 1) * c] for j in range(4) if j != k], dim=1)
    assert torch.equal(others, torch.zeros_like(others))


@interpreter_only
def test_gradcheck_float64():
    x, g, _ = make_inputs((1, 2, 3, 5), torch.float64, seed=5)
    assert torch.autograd.gradcheck(
        rnn_triton.spatial_rnn_triton, (x.requires_grad_(), g.requires_grad_()), fast_mode=True
    )


@interpreter_only
def test_opcheck_operators():
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch."""
    x, g, dh = make_inputs((1, 2, 3, 5), torch.float32, seed=6)
    torch.library.opcheck(rnn_triton._spatial_rnn_op, (x.requires_grad_(), g.requires_grad_()))
    out = rnn_triton.spatial_rnn_triton(x, g).detach()
    torch.library.opcheck(rnn_triton._spatial_rnn_backward_op, (dh, x.detach(), g.detach(), out))


@interpreter_only
def test_compiles_without_graph_break():
    """fullgraph=True fails on any graph break (here through the public dispatch, as the
    model calls it); aot_eager also traces the backward."""
    x, g, _ = make_inputs((1, 2, 4, 6), torch.float32, seed=7)

    def loss(a, b):
        return (spatial_rnn(a * 2, b, backend="triton") ** 2).sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    xs, gs = x.clone().requires_grad_(), g.clone().requires_grad_()
    got = torch.autograd.grad(compiled(xs, gs), (xs, gs))
    want = torch.autograd.grad(loss(xs, gs), (xs, gs))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@interpreter_only
def test_public_dispatch_and_autograd():
    """spatial_rnn(backend="triton") reaches this backend, casts gates to x's dtype, and
    autograd goes through the registered backward."""
    assert backend_available("triton", "cpu")
    x, g, dh = make_inputs((2, 3, 7, 11), torch.float32, seed=8)
    xs, gs = x.clone().requires_grad_(), g.double().requires_grad_()
    out = spatial_rnn(xs, gs, backend="triton")
    assert out.dtype == torch.float32
    out.backward(dh)
    assert gs.grad.dtype == torch.float64
    ref = reference(x, g, dh)
    assert_all_match((out.detach(), xs.grad, gs.grad.float()), ref, torch.float32)


@interpreter_only
def test_non_contiguous_inputs():
    x, g, dh = make_inputs((1, 2, 5, 14), torch.float32, seed=9)
    xs, gs = x[..., ::2], g.transpose(2, 3).contiguous().transpose(2, 3)[..., 1::2]
    assert not xs.is_contiguous() and not gs.is_contiguous()
    dhs = dh[..., ::2]
    got = run_kernels(xs, gs, dhs)
    assert_all_match(got, reference(xs, gs, dhs), torch.float32)


@interpreter_only
@pytest.mark.parametrize("shape", [(0, 2, 3, 4), (1, 0, 3, 4), (1, 2, 0, 4), (1, 2, 3, 0)])
def test_empty_inputs(shape):
    x, g, dh = make_inputs(shape, torch.float32)
    xs, gs = x.requires_grad_(), g.requires_grad_()
    out = rnn_triton.spatial_rnn_triton(xs, gs)
    assert out.shape == g.shape
    out.backward(dh)
    assert xs.grad.shape == x.shape and gs.grad.shape == g.shape


# ---------------------------------------------------------------------------- any process


def test_interpreter_suite_in_subprocess():
    """Runs this file's interpreter tests in a child pytest with TRITON_INTERPRET=1."""
    if INTERPRETED:
        pytest.skip("already running under the interpreter")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-x",
           "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    report = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, report
    passed = re.search(r"(\d+) passed", proc.stdout)
    # Guards against a child in which everything was skipped (the env var not taking).
    assert passed and int(passed.group(1)) >= 25, report


def test_rejects_bad_inputs():
    x = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match="gates must have shape"):
        rnn_triton.spatial_rnn_triton(x, torch.zeros(1, 4, 3, 4))
    with pytest.raises(ValueError, match="4-D"):
        rnn_triton.spatial_rnn_triton(x[0], torch.zeros(8, 3, 4))
    with pytest.raises(ValueError, match="dtype"):
        rnn_triton.spatial_rnn_triton(x.int(), torch.zeros(1, 8, 3, 4, dtype=torch.int32))


@pytest.mark.skipif(INTERPRETED, reason="checks the compiled (non-interpreted) build")
def test_cpu_unavailable_without_interpreter():
    assert not rnn_triton.is_available("cpu")
    assert rnn_triton.is_available("cuda") == torch.cuda.is_available()
    with pytest.raises(RuntimeError, match="CUDA"):
        rnn_triton.spatial_rnn_triton(torch.zeros(1, 1, 2, 2), torch.zeros(1, 4, 2, 2))


@pytest.mark.skipif(
    INTERPRETED or not rnn_triton._USES_TRITON_OP, reason="needs the triton_op registration"
)
def test_triton_op_traces_into_kernels(caplog):
    """What torch.compile does with the op (AOTAutograd, fake tensors), minus the GPU: the
    forward and backward ops decompose into three traceable user-kernel launches."""
    from functorch.compile import aot_function

    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return lambda *args: None  # never executed below

    def fwd_bwd(x, w):
        out = rnn_triton._spatial_rnn_op(x, w)
        return rnn_triton._spatial_rnn_backward_op(out, x, w, out)

    x, g, _ = make_inputs((1, 2, 5, 70), torch.bfloat16)
    # Without a GPU driver the mutation analysis falls back (and logs a warning); fine here.
    with caplog.at_level(logging.ERROR, logger="torch._higher_order_ops.triton_kernel_wrap"):
        try:
            aot_function(fwd_bwd, fw_compiler=record)(x, g)
        except Exception:  # noqa: BLE001 - running the dummy compiled graph is not the point
            pass
    assert graphs, "AOTAutograd did not trace the op"
    code = graphs[0].code
    assert code.count("triton_kernel_wrapper_functional(") == 3, code


# ---------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((1, 96, 384, 640), torch.bfloat16),
        ((1, 24, 384, 640), torch.float32),
        ((1, 48, 192, 320), torch.float16),
        ((1, 96, 96, 160), torch.float32),
        ((2, 5, 37, 1281), torch.float32),
    ],
)
def test_gpu_real_sizes(shape, dtype):
    x, g, dh = make_inputs(shape, dtype, seed=10, device="cuda")
    got = run_kernels(x, g, dh)
    ref = reference(x, g, dh, impl=spatial_rnn_torch)  # float64 on the GPU, vectorised
    # The GPU rounds to nearest: half the interpreter's bf16 error bound is plenty.
    assert_all_match(got, ref, dtype)


@pytest.mark.gpu
@compiled_only
def test_gpu_float64_gradcheck_and_opcheck():
    x, g, dh = make_inputs((2, 3, 7, 11), torch.float64, seed=11, device="cuda")
    assert torch.autograd.gradcheck(
        rnn_triton.spatial_rnn_triton, (x.requires_grad_(), g.requires_grad_())
    )
    torch.library.opcheck(rnn_triton._spatial_rnn_op, (x, g))
    out = rnn_triton.spatial_rnn_triton(x, g).detach()
    torch.library.opcheck(rnn_triton._spatial_rnn_backward_op, (dh, x.detach(), g.detach(), out))


@pytest.mark.gpu
@compiled_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_inductor_fullgraph(dtype):
    x, g, _ = make_inputs((2, 6, 37, 70), dtype, seed=12, device="cuda")

    def loss(a, b):
        return (spatial_rnn(a * 2, b, backend="triton").float() ** 2).sum()

    compiled = torch.compile(loss, fullgraph=True)
    xs, gs = x.clone().requires_grad_(), g.clone().requires_grad_()
    got = torch.autograd.grad(compiled(xs, gs), (xs, gs))
    want = torch.autograd.grad(loss(xs, gs), (xs, gs))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.gpu
@compiled_only
def test_gpu_auto_backend_is_triton():
    assert resolve_backend("auto", "cuda") == "triton"
