"""Compiled CPU backend of the spatial RNN (paper Eq. 13): numba kernels, forward and backward.

Each kernel runs the two scans along one axis (both directions) for every independent line:

* rows (left->right, right->left): one ``prange`` task per (n, c, row); the line is contiguous
  in memory and the scan walks it element by element.
* columns (top->bottom, bottom->top): scanned in place, without a transposed copy. One task per
  (n, c, strip of columns); the sequential loop runs over rows and the inner loop over the
  strip's columns, which are contiguous and independent, so it vectorises.

Everything is computed in the input dtype when that is float32 or float64 (so gradcheck works
in float64) and in float32 for any other dtype, with the same arithmetic as the reference loop
(``(1 - w) * x + w * h``, ``fastmath=False``, no fused multiply-add), so float32 forward
outputs equal the reference's bit for bit; gradients agree to rounding (summation order).

bfloat16 tensors reach the kernels as their raw bits (uint16), widened to float32 element by
element as they are read, and a bfloat16 forward output (and gate gradient) is rounded to
bfloat16 as it is written, as torch's ``.to(torch.bfloat16)`` rounds: under bf16 autocast at
720p, converting whole tensors to float32 and back cost more than the scans themselves.

The kernels are compiled on first use and cached on disk (``cache=True``: ``__pycache__``
beside this file, else numba's user cache directory, else a private temporary directory), so
only the very first call on a machine pays the compile time.
"""

from __future__ import annotations

import os
import stat
import tempfile
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from .rnn_contract import check_rnn_inputs

try:
    import numba
    from llvmlite import ir
    from numba import prange
    from numba.core import types as numba_types
    from numba.extending import intrinsic, overload, register_jitable
except ImportError:  # a declared dependency, but let the dispatch fall back cleanly without it
    numba = None
    prange = range

#: Narrowest strip of columns a vertical-scan task takes when planes are split to give every
#: thread work (few planes, N*C small). Narrower strips measured slower; whole rows are best
#: when there are enough planes (benchmarks/bench_rnn_cpu.py --layouts).
MIN_COLUMN_STRIP = 256

_JIT_OPTIONS = {"parallel": True, "fastmath": False, "nogil": True}

_warned_no_cache = False
_parallel_pid: int | None = None  # the process that first launched a parallel kernel


def is_available() -> bool:
    """Whether the compiled CPU backend can run (numba is importable)."""
    return numba is not None


# --------------------------------------------------------------------------- compilation


def _private_cache_dir() -> str | None:
    """A per-user cache directory under the system temp dir, or None if none is safe to use."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:
        return None
    path = os.path.join(tempfile.gettempdir(), f"flowdeblur-numba-cache-{getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.stat(path)
    except OSError:
        return None
    # numba's cache files are pickles: never load them from a directory others can write to.
    if info.st_uid != getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return path


def cached_jit(fn: Callable | None = None, **options) -> Callable:
    """``numba.njit(cache=True)`` that never fails for want of a writable cache directory.

    numba caches next to the module, else in ``NUMBA_CACHE_DIR`` / the user cache dir, and
    raises at decoration time (i.e. on import of this module) when none is writable. Then
    point it at a private temp dir for this function only, and as a last resort compile
    without a disk cache.
    """
    if fn is None:  # used as @cached_jit(option=...)
        return lambda f: cached_jit(f, **options)
    if numba is None:
        return fn
    options = {**_JIT_OPTIONS, **options}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:
        pass
    fallback = _private_cache_dir()
    if fallback is not None:
        config = numba.core.config
        saved = config.CACHE_DIR
        config.CACHE_DIR = fallback  # read when the dispatcher picks its cache locator, now
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:
            pass
        finally:
            config.CACHE_DIR = saved
    global _warned_no_cache
    if not _warned_no_cache:
        _warned_no_cache = True
        warnings.warn(
            "flowdeblur: no writable numba cache directory; the CPU RNN kernels will be "
            "compiled again in every process (set NUMBA_CACHE_DIR to a writable directory)",
            RuntimeWarning,
            stacklevel=2,
        )
    return numba.njit(cache=False, **options)(fn)


class _Kernel:
    """A ``prange`` kernel, compiled parallel; in a process forked after a parallel launch,
    a serial twin instead.

    numba's default threading layer here is GNU OpenMP, which kills a forked child that
    launches a parallel region (e.g. a DataLoader worker running the model). The twin is the
    same code compiled with ``parallel=False`` (``prange`` becomes ``range``), built lazily
    under its own name so that its disk-cache entry is separate.
    """

    def __init__(self, fn: Callable) -> None:
        self.py_func = fn
        self.parallel = cached_jit(fn)
        self._serial: Callable | None = None

    def serial(self) -> Callable:
        if self._serial is None:
            fn = self.py_func
            twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial")
            twin.__qualname__ = fn.__qualname__ + "_serial"
            self._serial = cached_jit(twin, parallel=False)
        return self._serial

    def __call__(self, *args) -> None:
        global _parallel_pid
        pid = os.getpid()
        if _parallel_pid is None:
            _parallel_pid = pid
        if pid != _parallel_pid:
            self.serial()(*args)
            return
        with _thread_limit():
            self.parallel(*args)


@contextmanager
def _thread_limit() -> Iterator[None]:
    """Run numba with no more threads than torch may use (``torch.set_num_threads``)."""
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    if wanted == previous:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


# --------------------------------------------------------------------------- bfloat16 bits
# The kernels read every element through ``_widen`` and write every output element through
# ``_narrow``: for float arrays both compile to nothing, for bfloat16 bits (uint16 arrays) they
# convert, so one kernel source serves every dtype and float32/float64 code is unchanged.

#: The bfloat16 bits a NaN rounds to: torch's vectorised conversion (AVX2/AVX-512) gives
#: 0xFFFF, the scalar one 0x7FC0; both are NaN, this one matches whole-tensor ``.to()``.
BF16_NAN_BITS = 0xFFFF


def _widen(value):
    """An element as the kernels compute with it: bfloat16 bits -> float32, floats as they are.
    Only compiled (numba overload below)."""
    raise NotImplementedError("_widen runs inside numba kernels only")


def _holds_bits(array):
    """Whether ``array`` holds bfloat16 bits (uint16): a constant once compiled. Only compiled
    (numba overload below)."""
    raise NotImplementedError("_holds_bits runs inside numba kernels only")


def _narrow(value, out):
    """``value`` (compute dtype) as an element of ``out``: rounded to bfloat16 bits for a uint16
    array, unchanged for a float array. Only compiled (numba overload below)."""
    raise NotImplementedError("_narrow runs inside numba kernels only")


if numba is not None:

    @intrinsic
    def _bf16_bits_to_f32(typingctx, bits):
        # bfloat16 is the top half of a float32: shift the 16 bits up, reinterpret. Exact.
        if bits != numba_types.uint16:
            return None

        def codegen(context, builder, signature, args):
            wide = builder.zext(args[0], ir.IntType(32))
            wide = builder.shl(wide, ir.Constant(ir.IntType(32), 16))
            return builder.bitcast(wide, ir.FloatType())

        return numba_types.float32(numba_types.uint16), codegen

    @intrinsic
    def _f32_bits(typingctx, value):
        # The float32's bits as a uint32 (a reinterpretation, no conversion).
        if value != numba_types.float32:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return numba_types.uint32(numba_types.float32), codegen

    @register_jitable
    def _f32_to_bf16_bits(value):
        """float32 -> bfloat16 bits, round to nearest even, as torch's ``.to(torch.bfloat16)``
        (c10's ``round_to_nearest_even``): add 0x7FFF plus the lowest kept bit, drop 16 bits.
        Overflow rounds to infinity, subnormals are kept; a NaN gives :data:`BF16_NAN_BITS`.
        In int64, so that the sum cannot wrap and no literal promotes it to float."""
        if value != value:
            return np.uint16(BF16_NAN_BITS)
        bits = np.int64(_f32_bits(value))
        return np.uint16((bits + ((bits >> 16) & 1) + 0x7FFF) >> 16)

    @overload(_widen)
    def _widen_typed(value):
        if value == numba_types.uint16:
            return lambda value: _bf16_bits_to_f32(value)
        if isinstance(value, numba_types.Float):
            return lambda value: value
        return None

    @overload(_holds_bits)
    def _holds_bits_typed(array):
        bits = array.dtype == numba_types.uint16
        return lambda array: bits

    @overload(_narrow)
    def _narrow_typed(value, out):
        if out.dtype == numba_types.uint16:
            return lambda value, out: _f32_to_bf16_bits(value)
        return lambda value, out: value


# --------------------------------------------------------------------------- kernels
# Array arguments: x (N, C, H, W); w, h, grad_h, grad_w (N, K, H, W) with K >= base + 2C, the
# two directions of this axis being channel blocks [base, base+C) (increasing index) and
# [base+C, base+2C) (decreasing index). ``one`` is 1 in the compute dtype: a float literal
# would promote float32 arithmetic to float64 and stop matching the reference. Any input array
# may hold bfloat16 bits (uint16, read through ``_widen``), and so may h in the forward and
# grad_w in the backward (written through ``_narrow``); grad_x accumulates: a float array.


@_Kernel
def _rows_forward(x, w, h, base, one):
    n, c, rows, length = x.shape
    zero = one - one
    for task in prange(n * c * rows):
        b = task // (c * rows)
        ch = (task // rows) % c
        r = task % rows
        xr = x[b, ch, r]
        wf, hf = w[b, base + ch, r], h[b, base + ch, r]
        carry = zero
        for j in range(length):
            wj = _widen(wf[j])
            carry = (one - wj) * _widen(xr[j]) + wj * carry
            hf[j] = _narrow(carry, hf)
        wb, hb = w[b, base + c + ch, r], h[b, base + c + ch, r]
        carry = zero
        for j in range(length - 1, -1, -1):
            wj = _widen(wb[j])
            carry = (one - wj) * _widen(xr[j]) + wj * carry
            hb[j] = _narrow(carry, hb)


@cached_jit(parallel=False)
def _column_step(x_row, w_row, prev_row, out_row, one):
    # One vectorisable step of a vertical scan over a strip of columns (h in a float dtype).
    for j in range(out_row.shape[0]):
        wj = _widen(w_row[j])
        out_row[j] = (one - wj) * _widen(x_row[j]) + wj * prev_row[j]


@cached_jit(parallel=False)
def _column_step_rounded(x_row, w_row, carry, out_row, one):
    # The same step when out_row holds bfloat16 bits, which cannot be read back as the previous
    # row: ``carry`` holds that row in the compute dtype and becomes this row. (A step of its
    # own: carrying a row this way measured slower when h is float32.)
    for j in range(out_row.shape[0]):
        wj = _widen(w_row[j])
        hj = (one - wj) * _widen(x_row[j]) + wj * carry[j]
        carry[j] = hj
        out_row[j] = _narrow(hj, out_row)


@_Kernel
def _columns_forward(x, w, h, base, one, strip):
    n, c, rows, width = x.shape
    strips = (width + strip - 1) // strip
    for task in prange(n * c * strips):
        b = task // (c * strips)
        ch = (task // strips) % c
        j0 = (task % strips) * strip
        j1 = min(j0 + strip, width)
        xp = x[b, ch, :, j0:j1]
        wf, hf = w[b, base + ch, :, j0:j1], h[b, base + ch, :, j0:j1]
        wb, hb = w[b, base + c + ch, :, j0:j1], h[b, base + c + ch, :, j0:j1]
        if _holds_bits(h):  # a compile-time constant: one branch is compiled away
            carry = np.full(j1 - j0, one - one)  # h[-1] = 0, and w * 0 added as the reference
            for i in range(rows):
                _column_step_rounded(xp[i], wf[i], carry, hf[i], one)
            carry[:] = one - one
            for i in range(rows - 1, -1, -1):
                _column_step_rounded(xp[i], wb[i], carry, hb[i], one)
            continue
        zeros = np.zeros_like(hf[0])  # h[-1] = 0, kept in the same expression as the reference
        _column_step(xp[0], wf[0], zeros, hf[0], one)
        for i in range(1, rows):
            _column_step(xp[i], wf[i], hf[i - 1], hf[i], one)
        _column_step(xp[rows - 1], wb[rows - 1], zeros, hb[rows - 1], one)
        for i in range(rows - 2, -1, -1):
            _column_step(xp[i], wb[i], hb[i + 1], hb[i], one)


# Backward. For one scan h[i] = (1 - w[i]) x[i] + w[i] h[i-1], h[-1] = 0, with upstream
# gradient G[i] = dL/dh[i] (from this direction's output block only), h[i] reaches the loss
# directly and through h[i+1] (dh[i+1]/dh[i] = w[i+1]), so the total gradient
#     g[i] = G[i] + w[i+1] g[i+1],      g[L-1] = G[L-1]
# is a scan in the opposite direction, carried here as carry[i] = w[i] g[i]. Then, as h[i]
# depends on x[i] and w[i] only through step i,
#     dL/dx[i] = (1 - w[i]) g[i]
#     dL/dw[i] = g[i] (h[i-1] - x[i]),       h[-1] = 0,
# where h is the saved forward output. x feeds all four scans, so its gradient is the sum of
# the four directions' contributions: the row kernel writes it (left->right) and adds
# (right->left), then the column kernel adds. Each w block feeds one scan: written once.


@_Kernel
def _rows_backward(x, w, h, grad_h, grad_x, grad_w, base, one):
    n, c, rows, length = x.shape
    zero = one - one
    for task in prange(n * c * rows):
        b = task // (c * rows)
        ch = (task // rows) % c
        r = task % rows
        xr, dxr = x[b, ch, r], grad_x[b, ch, r]
        # left->right forward, so the gradient runs right->left; h[i-1] is hf[j-1].
        k = base + ch
        wf, hf, gf, dwf = w[b, k, r], h[b, k, r], grad_h[b, k, r], grad_w[b, k, r]
        carry = zero
        for j in range(length - 1, -1, -1):
            g = _widen(gf[j]) + carry
            wj = _widen(wf[j])
            dxr[j] = (one - wj) * g  # the first of the four contributions: written
            prev = _widen(hf[j - 1]) if j > 0 else zero
            dwf[j] = _narrow(g * (prev - _widen(xr[j])), dwf)
            carry = wj * g
        # right->left forward: gradient runs left->right; h[i-1] is hb[j+1].
        k = base + c + ch
        wb, hb, gb, dwb = w[b, k, r], h[b, k, r], grad_h[b, k, r], grad_w[b, k, r]
        carry = zero
        for j in range(length):
            g = _widen(gb[j]) + carry
            wj = _widen(wb[j])
            dxr[j] += (one - wj) * g
            prev = _widen(hb[j + 1]) if j < length - 1 else zero
            dwb[j] = _narrow(g * (prev - _widen(xr[j])), dwb)
            carry = wj * g


@cached_jit(parallel=False)
def _column_step_backward(x_row, w_row, prev_row, g_row, dx_row, dw_row, carry, one):
    # One vectorisable step of a vertical backward scan; ``carry`` holds w[i+1] g[i+1].
    for j in range(carry.shape[0]):
        g = _widen(g_row[j]) + carry[j]
        wj = _widen(w_row[j])
        dx_row[j] += (one - wj) * g
        dw_row[j] = _narrow(g * (_widen(prev_row[j]) - _widen(x_row[j])), dw_row)
        carry[j] = wj * g


@_Kernel
def _columns_backward(x, w, h, grad_h, grad_x, grad_w, base, one, strip):
    n, c, rows, width = x.shape
    strips = (width + strip - 1) // strip
    for task in prange(n * c * strips):
        b = task // (c * strips)
        ch = (task // strips) % c
        j0 = (task % strips) * strip
        j1 = min(j0 + strip, width)
        xp, dxp = x[b, ch, :, j0:j1], grad_x[b, ch, :, j0:j1]
        zeros = np.zeros_like(dxp[0])  # h[-1] = 0 (dxp: a float array, as the compute dtype)
        carry = np.zeros_like(dxp[0])
        # top->bottom forward: gradient runs bottom->top; h[i-1] is the row above.
        k = base + ch
        wf, hf = w[b, k, :, j0:j1], h[b, k, :, j0:j1]
        gf, dwf = grad_h[b, k, :, j0:j1], grad_w[b, k, :, j0:j1]
        for i in range(rows - 1, 0, -1):
            _column_step_backward(xp[i], wf[i], hf[i - 1], gf[i], dxp[i], dwf[i], carry, one)
        _column_step_backward(xp[0], wf[0], zeros, gf[0], dxp[0], dwf[0], carry, one)
        # bottom->top forward: gradient runs top->bottom; h[i-1] is the row below.
        k = base + c + ch
        wb, hb = w[b, k, :, j0:j1], h[b, k, :, j0:j1]
        gb, dwb = grad_h[b, k, :, j0:j1], grad_w[b, k, :, j0:j1]
        carry[:] = one - one
        for i in range(rows - 1):
            _column_step_backward(xp[i], wb[i], hb[i + 1], gb[i], dxp[i], dwb[i], carry, one)
        _column_step_backward(
            xp[rows - 1], wb[rows - 1], zeros, gb[rows - 1], dxp[rows - 1], dwb[rows - 1],
            carry, one,
        )


# --------------------------------------------------------------------------- launchers


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # float64 stays float64 (gradcheck); bf16/fp16/anything else run in float32.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _direct_bf16(dtype: torch.dtype, compute: torch.dtype) -> bool:
    """Whether a ``dtype`` tensor reaches (or leaves) the kernels as bfloat16 bits, converted
    per element in float32 compute, rather than as a whole-tensor copy in the compute dtype."""
    return dtype == torch.bfloat16 and compute == torch.float32


def _kernel_array(t: torch.Tensor) -> np.ndarray:
    """A numpy view of contiguous ``t``: bfloat16 as its bits (uint16; numpy has no bf16)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _as_kernel_input(t: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    """A C-contiguous numpy view of ``t`` for compute ``dtype`` (copies only when it must):
    in ``dtype``, or bfloat16 bits that the kernels widen as they read."""
    t = t.detach()
    if not _direct_bf16(t.dtype, dtype):
        t = t.to(dtype)
    return _kernel_array(t.contiguous())


def _one(dtype: torch.dtype) -> np.floating:
    """1 as a numpy scalar of compute ``dtype``: the kernels' ``one``."""
    return torch.ones((), dtype=dtype).numpy()[()]


def _column_strip(planes: int, width: int) -> int:
    """Columns per vertical-scan task: whole rows unless there are too few planes to share."""
    tasks_wanted = 4 * numba.config.NUMBA_NUM_THREADS
    splits = -(-tasks_wanted // planes)
    return max(MIN_COLUMN_STRIP, -(-width // splits))


def _forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (N, C, H, W), w (N, 4C, H, W) -> h (N, 4C, H, W): bfloat16 for bfloat16 x (rounded
    from float32 as the kernels write it), else in the compute dtype."""
    dtype = _compute_dtype(x.dtype)
    n, c, height, width = x.shape
    out_dtype = x.dtype if _direct_bf16(x.dtype, dtype) else dtype
    h = torch.empty((n, 4 * c, height, width), dtype=out_dtype)
    if h.numel() == 0:
        return h
    xa, wa, ha = _as_kernel_input(x, dtype), _as_kernel_input(w, dtype), _kernel_array(h)
    one = _one(dtype)
    _rows_forward(xa, wa, ha, 0, one)
    _columns_forward(xa, wa, ha, 2 * c, one, _column_strip(n * c, width))
    return h


def _backward(
    x: torch.Tensor, w: torch.Tensor, h: torch.Tensor, grad_h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (dL/dx, dL/dw), shapes of x and w: dL/dx in the compute dtype (the kernels
    accumulate into it), dL/dw in bfloat16 for bfloat16 w (rounded as written), else in the
    compute dtype."""
    dtype = _compute_dtype(x.dtype)
    grad_x = torch.empty(x.shape, dtype=dtype)
    grad_w = torch.empty(w.shape, dtype=w.dtype if _direct_bf16(w.dtype, dtype) else dtype)
    if grad_w.numel() == 0:
        return grad_x.zero_(), grad_w
    xa, wa, ha, ga = (_as_kernel_input(t, dtype) for t in (x, w, h, grad_h))
    one = _one(dtype)
    dxa, dwa = grad_x.numpy(), _kernel_array(grad_w)
    n, c, _, width = x.shape
    _rows_backward(xa, wa, ha, ga, dxa, dwa, 0, one)
    _columns_backward(xa, wa, ha, ga, dxa, dwa, 2 * c, one, _column_strip(n * c, width))
    return grad_x, grad_w


# One torch operator, ``flowdeblur::spatial_rnn_cpu``, rather than an autograd.Function: the
# compilers see an opaque operator with a known output shape, so ``torch.compile`` keeps the
# whole forward in one graph (no break at the numba call) and ``torch.export`` (int8
# quantization, runtime/int8.py) captures the network whole.
@torch.library.custom_op("flowdeblur::spatial_rnn_cpu", mutates_args=(), device_types="cpu")
def _spatial_rnn_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # A new tensor: _forward never returns an input (for bf16 x, .to is a no-op).
    return _forward(x, w).to(x.dtype)


@_spatial_rnn_op.register_fake
def _(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    n, c, height, width = x.shape
    return x.new_empty((n, 4 * c, height, width))


def _save_for_backward(ctx, inputs: tuple[torch.Tensor, torch.Tensor],
                       output: torch.Tensor) -> None:
    # The output is the h the backward needs: saving it costs no extra memory. (For bf16/fp16
    # the backward then sees h rounded to that dtype, like the torch backend.)
    x, w = inputs
    ctx.save_for_backward(x, w, output)


# The backward is an operator too, so that compiled training graphs hold it opaque as well.
@torch.library.custom_op("flowdeblur::spatial_rnn_cpu_backward", mutates_args=(),
                         device_types="cpu")
def _spatial_rnn_backward_op(x: torch.Tensor, w: torch.Tensor, h: torch.Tensor,
                             grad_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    grad_x, grad_w = _backward(x, w, h, grad_h)
    return grad_x.to(x.dtype), grad_w.to(w.dtype)


@_spatial_rnn_backward_op.register_fake
def _(x, w, h, grad_h):
    return torch.empty_like(x), torch.empty_like(w)


def _op_backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, w, h = ctx.saved_tensors
    return _spatial_rnn_backward_op(x, w, h, grad_out)


_spatial_rnn_op.register_autograd(_op_backward, setup_context=_save_for_backward)


def spatial_rnn_cpu(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Four-direction spatial RNN (paper Eq. 13), compiled CPU kernels (numba).

    For each direction k (0: left->right, 1: right->left, 2: top->bottom, 3: bottom->top) with
    gates ``w[:, k*C:(k+1)*C]``: ``h[i] = (1 - w[i]) * x[i] + w[i] * h[i-1]``, ``h[-1] = 0``.

    Args:
        x: (N, C, H, W) CPU tensor, any float dtype, any strides.
        w: (N, 4C, H, W) gates, same device.
    Returns:
        (N, 4C, H, W) in x's dtype: the four directional outputs in the order above.
        Differentiable in x and w (compiled backward; not twice differentiable).
        float32/float64 are computed in that dtype, other dtypes in float32.
    """
    if numba is None:
        raise RuntimeError("the 'cpu' spatial_rnn backend needs numba (pip install numba)")
    if x.device.type != "cpu" or w.device.type != "cpu":
        raise ValueError(f"spatial_rnn_cpu needs CPU tensors, got {x.device} and {w.device}")
    check_rnn_inputs(x, w)
    if _plain_inference(x, w):
        return _forward(x, w).to(x.dtype)
    return _spatial_rnn_op(x, w)


def _plain_inference(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether this call may run the kernels directly rather than through the operator: plain
    tensors needing no gradient, outside any compiler's trace or dispatch mode. The operator's
    first call imports torch._dynamo (about 1.3 s on a 2-core CPU), a start-up cost every
    uncompiled ``deblur`` would otherwise pay; the result is the same ``_forward``."""
    return (not torch.compiler.is_compiling()
            and type(x) is torch.Tensor and type(w) is torch.Tensor
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
            and torch._C._len_torch_dispatch_stack() == 0)
