"""The compiled CPU backend of the spatial RNN against the reference loop (forward and backward)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from flowdeblur.ops import resolve_backend, rnn_cpu, spatial_rnn
from flowdeblur.ops.rnn_cpu import spatial_rnn_cpu
from flowdeblur.ops.rnn_reference import DIRECTIONS, scan_reference, spatial_rnn_reference

pytestmark = pytest.mark.skipif(not rnn_cpu.is_available(), reason="numba is not installed")


def _inputs(shape, *, seed=0, dtype=torch.float32, low=0.0, high=1.0):
    """x ~ N(0, 1) (N, C, H, W) and gates of random sign with |w| in [low, high)."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    mag = low + (high - low) * torch.rand((n, 4 * c, h, w), generator=gen, dtype=torch.float64)
    sign = torch.randint(0, 2, (n, 4 * c, h, w), generator=gen).to(torch.float64) * 2 - 1
    return x.to(dtype), (mag * sign).to(dtype)


def _forward_backward(fn, x, w, grad):
    x = x.detach().clone().requires_grad_()
    w = w.detach().clone().requires_grad_()
    out = fn(x, w)
    out.backward(grad)
    return out.detach(), x.grad, w.grad


def _assert_matches_reference(x, w, *, seed=1):
    grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(seed), dtype=w.dtype)
    out, gx, gw = _forward_backward(spatial_rnn_cpu, x, w, grad)
    ref, rgx, rgw = _forward_backward(spatial_rnn_reference, x, w, grad)
    # Same arithmetic in the same order, no fused multiply-add: the forward is exact.
    assert torch.equal(out, ref)
    # Gradients of x sum four directions, in a different order than autograd: rounding only.
    torch.testing.assert_close(gx, rgx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rgw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", range(4), ids=DIRECTIONS)
def test_each_direction_forward_and_backward(k):
    # Upstream gradient only on block k: any mix-up of direction, block or flip shows.
    x, w = _inputs((2, 3, 7, 11), seed=k)
    c = x.shape[1]
    grad = torch.zeros_like(w)
    gen = torch.Generator().manual_seed(9)
    grad[:, k * c : (k + 1) * c] = torch.randn(2, c, 7, 11, generator=gen)
    out, gx, gw = _forward_backward(spatial_rnn_cpu, x, w, grad)

    xr = x.clone().requires_grad_()
    wk = w[:, k * c : (k + 1) * c].clone().requires_grad_()
    ref = scan_reference(xr, wk, DIRECTIONS[k])
    ref.backward(grad[:, k * c : (k + 1) * c])

    assert torch.equal(out[:, k * c : (k + 1) * c], ref.detach())
    torch.testing.assert_close(gx, xr.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw[:, k * c : (k + 1) * c], wk.grad, rtol=1e-5, atol=1e-6)
    others = torch.ones(4 * c, dtype=torch.bool)
    others[k * c : (k + 1) * c] = False
    assert torch.count_nonzero(gw[:, others]) == 0


@pytest.mark.parametrize(
    "shape", [(2, 3, 7, 11), (1, 2, 1, 9), (1, 2, 9, 1), (1, 1, 1, 1), (3, 5, 6, 4), (1, 1, 5, 300)]
)
def test_shapes_match_reference(shape):
    x, w = _inputs(shape, seed=sum(shape))
    _assert_matches_reference(x, w)


@pytest.mark.parametrize("shape", [(1, 2, 3, 1100), (1, 2, 1030, 3)], ids=["rows", "columns"])
def test_long_lines_against_float64(shape):
    # |w| >= 0.9 with mixed signs: long memory and alternating signs, where sloppy accumulation
    # (or a float64 detour that loses precision on the way back) would show.
    x, w = _inputs(shape, seed=3, low=0.9, high=1.0)
    grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(4))
    out, gx, gw = _forward_backward(spatial_rnn_cpu, x, w, grad)
    ref, rgx, rgw = _forward_backward(spatial_rnn_reference, x.double(), w.double(), grad.double())
    for got, want in ((out, ref), (gx, rgx), (gw, rgw)):
        assert got.dtype == torch.float32
        scale = want.abs().max().item()
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_run_in_float32(dtype):
    x, w = _inputs((2, 3, 9, 13), seed=5, dtype=dtype)
    grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(6)).to(dtype)
    out, gx, gw = _forward_backward(spatial_rnn_cpu, x, w, grad)
    assert out.dtype == gx.dtype == gw.dtype == dtype
    ref, rgx, rgw = _forward_backward(spatial_rnn_reference, x.float(), w.float(), grad.float())
    # Computed in float32 from the same (rounded) inputs: only the final rounding differs.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), ref, rtol=eps, atol=eps * ref.abs().max().item())
    # The backward reads the output rounded to dtype, so allow a few roundings there.
    for got, want in ((gx, rgx), (gw, rgw)):
        torch.testing.assert_close(
            got.float(), want, rtol=4 * eps, atol=4 * eps * want.abs().max().item()
        )


def _bits(t):
    """The raw bits of a float32 (int32) or bfloat16 (int16) tensor, for exact comparison."""
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int16)


def _old_bf16_forward(x, w):
    # What the backend did before it read bf16 directly: upcast, float32 kernels, round once.
    return rnn_cpu._forward(x.float(), w.float()).to(torch.bfloat16)


def _bf16_gates(shape, seed):
    """bf16 gates of both signs with exact zeros (+0 and -0) and +-1 sprinkled in."""
    _, w = _inputs(shape, seed=seed, dtype=torch.bfloat16)
    flat = w.view(-1)
    flat[::5], flat[1::7], flat[2::11], flat[3::13] = 0.0, -0.0, 1.0, -1.0
    return w


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 7, 13), (1, 2, 5, rnn_cpu.MIN_COLUMN_STRIP + 45), (2, 3, 40, 7), (1, 1, 1, 1)],
    ids=["small", "column-strips", "tall", "one"],
)
def test_bf16_forward_is_the_float32_result_rounded(shape):
    # bf16 is read as bits and the output rounded as it is written: bit for bit the old
    # upcast -> float32 kernels -> .to(bfloat16), on both paths (direct and the operator).
    x, _ = _inputs(shape, seed=21, dtype=torch.bfloat16)
    w = _bf16_gates(shape, seed=22)
    want = _old_bf16_forward(x, w)
    out = spatial_rnn_cpu(x, w)
    assert out.dtype == torch.bfloat16
    assert torch.equal(_bits(out), _bits(want))
    assert torch.equal(_bits(torch.ops.flowdeblur.spatial_rnn_cpu(x, w)), _bits(want))
    ref = spatial_rnn_reference(x.float(), w.float())
    eps = torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(out.float(), ref, rtol=eps, atol=eps * ref.abs().max().item())


def test_bf16_mixed_with_float32():
    # Only the bf16 argument is read as bits; the output has x's dtype, as before.
    x, _ = _inputs((2, 3, 6, 9), seed=23)
    w = _bf16_gates((2, 3, 6, 9), seed=24)
    assert torch.equal(spatial_rnn_cpu(x, w), rnn_cpu._forward(x, w.float()))
    xb = x.bfloat16()
    assert torch.equal(_bits(spatial_rnn_cpu(xb, w.float())), _bits(_old_bf16_forward(xb, w)))


def test_bf16_non_contiguous_inputs():
    x, _ = _inputs((2, 3, 8, 6), seed=25, dtype=torch.bfloat16)
    w = _bf16_gates((2, 3, 8, 6), seed=26)
    xs = x.transpose(2, 3).contiguous().transpose(2, 3)
    wl = w.contiguous(memory_format=torch.channels_last)
    ws = torch.cat([w, w], dim=2)[:, :, ::2]
    ws.copy_(w)
    assert not xs.is_contiguous() and not wl.is_contiguous() and not ws.is_contiguous()
    want = _bits(_old_bf16_forward(x, w))
    assert torch.equal(_bits(spatial_rnn_cpu(xs, wl)), want)
    assert torch.equal(_bits(spatial_rnn_cpu(x, ws)), want)


@pytest.mark.parametrize("shape", [(2, 3, 7, 13), (1, 2, 5, rnn_cpu.MIN_COLUMN_STRIP + 45)],
                         ids=["small", "column-strips"])
def test_bf16_backward_is_the_float32_result_rounded(shape):
    # The backward reads bf16 x, w, h and grad_h as bits and writes dL/dw in bf16: the same
    # numbers as the float32 kernels on the upcast tensors, rounded once.
    x, _ = _inputs(shape, seed=27, dtype=torch.bfloat16)
    w = _bf16_gates(shape, seed=28)
    grad = torch.randn(w.shape, generator=torch.Generator().manual_seed(29)).bfloat16()
    out, gx, gw = _forward_backward(spatial_rnn_cpu, x, w, grad)
    assert gx.dtype == gw.dtype == torch.bfloat16
    want_gx, want_gw = rnn_cpu._backward(x.float(), w.float(), out.float(), grad.float())
    assert torch.equal(_bits(gx), _bits(want_gx.bfloat16()))
    assert torch.equal(_bits(gw), _bits(want_gw.bfloat16()))


def _round_each(values, out):
    for i in range(values.shape[0]):
        out[i] = rnn_cpu._narrow(values[i], out)


def _widen_each(bits, out):
    for i in range(bits.shape[0]):
        out[i] = rnn_cpu._widen(bits[i])


def test_bf16_rounding_matches_torch():
    specials = [0.0, -0.0, float("inf"), -float("inf"), float("nan"), 3.4e38, -3.39e38, 1e38,
                1e-40, -1e-40, 1e-45, -1e-45, 1.17e-38, 9.2e-41, 1.0, -1.0]
    ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000, 0x00008000, 0x00018000,
                     0x7F7F8000, 0x7F7F7FFF, 0xFF7F8000, 0x00007FFF, 0x80008000],
                    dtype=np.uint32).view(np.float32)
    noise = torch.randint(-2**31, 2**31, (4096,), generator=torch.Generator().manual_seed(30),
                          dtype=torch.int64).to(torch.int32).view(torch.float32)
    values = torch.cat([torch.tensor(specials), torch.from_numpy(ties), noise])
    got = np.empty(values.shape[0], dtype=np.uint16)
    rnn_cpu.numba.njit(_round_each)(values.numpy(), got)
    want = values.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    nan = torch.isnan(values).numpy()
    assert nan.sum() > 1  # the noise holds NaNs of other payloads too
    assert np.array_equal(got[~nan], want[~nan])
    assert (got[nan] == rnn_cpu.BF16_NAN_BITS).all()
    assert torch.isnan(torch.from_numpy(got[nan].view(np.int16)).view(torch.bfloat16)).all()


def test_bf16_widening_matches_torch_for_every_bit_pattern():
    bits = np.arange(2**16, dtype=np.uint16)
    got = np.empty(bits.shape[0], dtype=np.float32)
    rnn_cpu.numba.njit(_widen_each)(bits, got)
    want = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # NaN payloads included


def test_gradcheck_float64():
    x, w = _inputs((1, 2, 3, 4), seed=7, dtype=torch.float64)
    x.requires_grad_()
    w.requires_grad_()
    assert spatial_rnn_cpu(x, w).dtype == torch.float64
    assert torch.autograd.gradcheck(spatial_rnn_cpu, (x, w), eps=1e-6, atol=1e-8)


def test_non_contiguous_inputs():
    x, w = _inputs((2, 3, 8, 6), seed=8)
    xs = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, transposed strides
    ws = torch.cat([w, w], dim=2)[:, :, ::2]  # strided view
    ws.copy_(w)
    wl = w.contiguous(memory_format=torch.channels_last)
    assert not xs.is_contiguous() and not ws.is_contiguous() and not wl.is_contiguous()
    ref = spatial_rnn_reference(x, w)
    assert torch.equal(spatial_rnn_cpu(xs, ws), ref)
    assert torch.equal(spatial_rnn_cpu(x, wl), ref)
    _assert_matches_reference(xs, wl)


def test_every_element_written(monkeypatch):
    # Poison every buffer the op allocates with NaN: an element left unwritten shows as NaN.
    real_empty = torch.empty

    def poisoned_empty(*args, **kwargs):
        return real_empty(*args, **kwargs).fill_(float("nan"))

    monkeypatch.setattr(torch, "empty", poisoned_empty)
    x, w = _inputs((2, 3, 5, 300), seed=10)  # 300 columns: more than one column strip
    grad = torch.ones(w.shape)
    out, gx, gw = _forward_backward(spatial_rnn_cpu, x, w, grad)
    for t in (out, gx, gw):
        assert not torch.isnan(t).any()
    monkeypatch.undo()
    _, rgx, rgw = _forward_backward(spatial_rnn_reference, x, w, grad)
    assert torch.equal(out, spatial_rnn_reference(x, w))
    torch.testing.assert_close(gx, rgx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, rgw, rtol=1e-5, atol=1e-5)


def test_public_dispatch():
    x, w = _inputs((1, 4, 6, 7), seed=11)
    assert resolve_backend("auto", "cpu") == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning on CPU
        auto = spatial_rnn(x, w)
    assert torch.equal(spatial_rnn(x, w, backend="cpu"), spatial_rnn_reference(x, w))
    assert torch.equal(auto, spatial_rnn_reference(x, w))


def test_rejects_bad_shapes():
    x, w = _inputs((1, 2, 3, 4))
    with pytest.raises(ValueError, match="4C"):
        spatial_rnn_cpu(x, w[:, :6])


def test_respects_torch_thread_limit(monkeypatch):
    numba = rnn_cpu.numba
    calls = []
    real_set = numba.set_num_threads

    def recording_set(n):
        calls.append(n)
        real_set(n)

    monkeypatch.setattr(numba, "set_num_threads", recording_set)
    x, w = _inputs((1, 3, 6, 5), seed=12)
    before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = spatial_rnn_cpu(x, w)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out, spatial_rnn_reference(x, w))
    if numba_before > 1:
        assert calls and calls[0] == 1
    assert numba.get_num_threads() == numba_before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_uses_serial_kernels():
    # numba's GNU OpenMP layer kills a forked child that launches a parallel region; the
    # backend must switch to its serial twins there (as in a DataLoader worker).
    x, w = _inputs((1, 2, 5, 6), seed=13)
    spatial_rnn_cpu(x, w)  # a parallel launch in this process first
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            torch.set_num_threads(1)  # as DataLoader workers do; torch's own OpenMP needs it
            xg = x.clone().requires_grad_()
            out = spatial_rnn_cpu(xg, w)
            out.sum().backward()
            with os.fdopen(write_fd, "wb") as f:
                pickle.dump((out.detach(), xg.grad), f)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("forked child hung")
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    assert os.waitstatus_to_exitcode(done[1]) == 0
    out, gx = pickle.loads(data)
    xr = x.clone().requires_grad_()
    ref = spatial_rnn_reference(xr, w)
    ref.sum().backward()
    assert torch.equal(out, ref.detach())
    torch.testing.assert_close(gx, xr.grad, rtol=1e-5, atol=1e-5)


def _tiny_kernel(a):
    total = 0.0
    for i in rnn_cpu.prange(a.shape[0]):
        total += a[i]
    return total


@pytest.mark.skipif(
    not hasattr(rnn_cpu.numba.core.config, "CACHE_LOCATOR_CLASSES"), reason="numba too old"
)
def test_cache_falls_back_when_no_directory_is_writable(monkeypatch, tmp_path):
    import tempfile

    config = rnn_cpu.numba.core.config
    # Only NUMBA_CACHE_DIR may be used, and it is unset: numba alone would raise on decoration.
    monkeypatch.setattr(config, "CACHE_LOCATOR_CLASSES", "UserProvidedCacheLocator")
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    kernel = rnn_cpu.cached_jit(_tiny_kernel)
    assert kernel(torch.arange(5.0).numpy()) == 10.0
    assert config.CACHE_DIR == ""  # restored after decoration
    assert list(tmp_path.rglob("*_tiny_kernel*.nbi"))  # cached in the private temp dir

    # No private temp dir either (its parent is a file): compile without a disk cache, warn.
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "file" / "sub"))
    monkeypatch.setattr(rnn_cpu, "_warned_no_cache", False)
    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        kernel = rnn_cpu.cached_jit(_tiny_kernel)
    assert kernel(torch.arange(4.0).numpy()) == 6.0


def test_is_one_torch_operator_with_fake_and_autograd():
    # opcheck: the schema, the fake (shape-only) implementation and the autograd registration
    # agree with the real kernel, which is what torch.compile and torch.export rely on.
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    w = torch.rand(2, 12, 5, 7, dtype=torch.float64).mul(2).sub(1)
    torch.library.opcheck(torch.ops.flowdeblur.spatial_rnn_cpu.default, (x, w))
    torch.library.opcheck(torch.ops.flowdeblur.spatial_rnn_cpu.default,
                          (x.requires_grad_(), w.requires_grad_()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_calls_match_the_operator(dtype):
    # Without gradients the kernels run without the operator's dispatch; the result must be
    # the operator's, bit for bit, on awkward sizes and dtypes.
    x = torch.randn(2, 3, 17, 29).to(dtype)
    w = torch.rand(2, 12, 17, 29).mul(2).sub(1).to(dtype)
    with torch.no_grad():
        direct = spatial_rnn_cpu(x, w)
        through_op = torch.ops.flowdeblur.spatial_rnn_cpu(x, w)
    assert direct.dtype == dtype
    assert torch.equal(direct, through_op)
    assert rnn_cpu._plain_inference(x, w)
    assert not rnn_cpu._plain_inference(x.clone().requires_grad_(), w)


def test_inference_leaves_torch_dynamo_unimported():
    # The operator's first call imports torch._dynamo (over a second); uncompiled inference
    # must not pay it. A fresh process, since this one may have imported it already.
    code = ("import sys, torch\n"
            "from flowdeblur.ops.rnn_cpu import spatial_rnn_cpu\n"
            "with torch.no_grad():\n"
            "    spatial_rnn_cpu(torch.randn(1, 2, 5, 6), torch.rand(1, 8, 5, 6))\n"
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_compiles_and_exports_without_a_graph_break():
    x, w = torch.randn(1, 2, 9, 11), torch.rand(1, 8, 9, 11)
    want = spatial_rnn_reference(x, w)
    compiled = torch.compile(lambda a, b: spatial_rnn_cpu(a * 1.0, b), fullgraph=True)
    torch.testing.assert_close(compiled(x, w), want)

    class Layer(torch.nn.Module):
        def forward(self, a, b):
            return spatial_rnn_cpu(a, b)

    graph = torch.export.export(Layer(), (x, w)).graph
    ops = [n.target for n in graph.nodes if n.op == "call_function"]
    assert torch.ops.flowdeblur.spatial_rnn_cpu.default in ops
