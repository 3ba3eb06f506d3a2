"""Triton kernels for the spatially variant RNN (paper Eq. 13), forward and backward.

Same function as ``rnn_reference``: for each direction k (left->right, right->left,
top->bottom, bottom->top) and the gates ``w_k = w[:, kC:(k+1)C]``, along that direction
``h[i] = (1 - w_k[i]) x[i] + w_k[i] h[i-1]``, ``h[-1] = 0``.

Design. The recurrence is memory bound (a multiply-add per element), so what matters is how
memory is touched and how much of it is in flight. Every program owns a block of independent
lines and walks along them tile by tile, carrying one value per line from tile to tile:

* horizontal scans (blocks 0, 1): a program owns ``ROW_BLOCK`` rows and walks along W in tiles
  of ``[ROW_BLOCK, ROW_STEPS]``; each row segment of a tile is contiguous, so loads coalesce
  even though consecutive rows are W elements apart.
* vertical scans (blocks 2, 3): a program owns ``COL_BLOCK`` contiguous columns of one (n, c)
  plane and walks down H in tiles of ``[COL_STEPS, COL_BLOCK]``; each tile row is contiguous.

No transposed or flipped copy is ever made in memory: the reverse directions walk the tiles
from the other end. Vertical ones index the tile's rows backwards (each row stays
contiguous). Horizontal ones load each tile in natural column order and reverse it in
registers around the scan (``_flip_rows``): indexing it backwards along W instead kills the
contiguity Triton needs to vectorise, and compiled for sm_90 the right->left forward then
took 96 registers per thread instead of 32. Every scan in registers runs forward.

Inside a tile the recurrence is a first-order linear one, i.e. a composition of affine maps
``h -> a h + b`` (``a = w``, ``b = (1 - w) x``), which is associative; ``tl.associative_scan``
composes them along the tile axis, and ``h = B + A * carry`` adds the carry from the previous
tile. Loading a whole tile at once matters: a loop that loads one element per line per step
(sequential per thread) keeps a single load per line in flight and pays the full memory
latency at every one of the up to 1280 steps; a tile pays it once per ``*_STEPS`` steps.

Alternatives considered: sequential-per-thread loops as above (simplest, latency bound unless
the loads are unrolled and hoisted, which Triton does not guarantee); a chunked two-pass scan
(per-chunk products and partial sums, then a pass that fixes up chunk starts; it only pays
when there are too few lines to fill the GPU, and here there are ~10^4 lines per layer);
``tl.associative_scan(..., reverse=True)`` for the reverse directions, which has open
wrong-result reports (triton-lang/triton#4362, #8412), so it is not used: reversal is done by
indexing or ``_flip_rows`` instead.

Precision: storage fp32, bf16 or fp16 with fp32 accumulation; fp64 storage is computed in
fp64 (so ``torch.autograd.gradcheck`` works, under the interpreter too).

Launches: one for the whole forward (programs of the two orientations split by program id);
two for the backward (horizontal, then vertical), because dL/dx sums the four directions and
the vertical launch finishes the fp32 sum that the horizontal one started. The backward reads
the forward output (saved by autograd) for h[i-1] instead of recomputing it.

Default tile sizes (``_pick_config``) were chosen by compiling for sm_90 without a GPU
(registers, no spills) and by the reasoning above, not by timing; ``benchmarks/
bench_rnn_gpu.py --sweep`` times the alternatives on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .rnn_contract import check_rnn_inputs

# --------------------------------------------------------------------------------------------
# Triton kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _affine_combine(a_first, b_first, a_then, b_then):
    # (a, b) stands for the map h -> a*h + b; apply "first", then "then".
    return a_first * a_then, b_first * a_then + b_then


@triton.jit
def _flip_rows(x):
    """Reverse the columns of a [lines, steps] fp32/fp64 tile (steps a power of two).

    Same idea as ``tl.flip``: reversing j in [0, 2^k) flips every bit of j, so swap the two
    halves of every aligned group of 2^(i+1) columns for i = 0..k-1. The swap of a pair
    (u, v) is computed as (u+v) - u on the bits as integers, a plain sum: exact (wrapping)
    like tl.flip's xor-sum, and fast under the CPU interpreter, where an xor-sum runs
    element by element in Python."""
    LINES: tl.constexpr = x.shape[0]
    STEPS: tl.constexpr = x.shape[1]
    if x.dtype == tl.float64:
        y = x.to(tl.int64, bitcast=True)
    else:
        y = x.to(tl.int32, bitcast=True)
    for i in tl.static_range(16):
        if (1 << i) < STEPS:
            y = tl.reshape(y, [LINES, STEPS // (2 << i), 2, 1 << i])
            y = tl.sum(y, 2, keep_dims=True) - y
            y = tl.reshape(y, [LINES, STEPS])
    return y.to(x.dtype, bitcast=True)


@triton.jit
def _scan_along_rows(a, b, carry, FROM_END: tl.constexpr):
    """Affine scan along axis 1 of a [lines, steps] tile: h = a*h_before + b, starting from
    ``carry``; from column 0 rightwards, or from the last column leftwards (FROM_END).
    Returns h (same column order as the inputs) and the carry for the next tile."""
    STEPS: tl.constexpr = a.shape[1]
    if FROM_END:
        # The tile is loaded in natural column order, so its loads stay contiguous and
        # vectorised (indexing it backwards would not be); flipping it in registers is cheap.
        a = _flip_rows(a)
        b = _flip_rows(b)
    a, h = tl.associative_scan((a, b), axis=1, combine_fn=_affine_combine)
    h = h + a * carry[:, None]
    last = tl.sum(tl.where(tl.arange(0, STEPS)[None, :] == STEPS - 1, h, 0.0), axis=1)
    if FROM_END:
        h = _flip_rows(h)
    return h, last


@triton.jit
def _scan_along_cols(a, b, carry):
    """Affine scan along axis 0 of a [steps, lines] tile, from row 0 down (reverse walks
    index the tile's rows backwards instead, which keeps the columns contiguous)."""
    STEPS: tl.constexpr = a.shape[0]
    a, h = tl.associative_scan((a, b), axis=0, combine_fn=_affine_combine)
    h = h + a * carry[None, :]
    last = tl.sum(tl.where(tl.arange(0, STEPS)[:, None] == STEPS - 1, h, 0.0), axis=0)
    return h, last


@triton.jit
def _row_bases(row_block, n_rows, C, H, W, K: tl.constexpr, ROW_BLOCK: tl.constexpr):
    """Rows r = (n*C + c)*H + h of one program: validity, row offset in x (N,C,H,W) and in
    gate/output block K of (N,4C,H,W), i.e. row (n*4C + K*C + c)*H + h. 64-bit offsets."""
    rows = row_block * ROW_BLOCK + tl.arange(0, ROW_BLOCK)
    rows64 = rows.to(tl.int64)
    CH = C * H
    return rows < n_rows, rows64 * W, (rows64 + (rows64 // CH) * (3 * CH) + K * CH) * W


@triton.jit
def _col_bases(col_block, C, H, W, K: tl.constexpr, COL_BLOCK: tl.constexpr):
    """Columns of one program (a block of one (n, c) plane): column indices, validity, and
    the plane's offset in x and in gate/output block K."""
    blocks_per_plane = tl.cdiv(W, COL_BLOCK)
    plane = col_block // blocks_per_plane  # n*C + c
    cols = (col_block % blocks_per_plane) * COL_BLOCK + tl.arange(0, COL_BLOCK)
    plane64 = plane.to(tl.int64)
    HW = H * W
    return cols, cols < W, plane64 * HW, (plane64 + (plane64 // C) * (3 * C) + K * C) * HW


@triton.jit
def _rows_forward(x_ptr, w_ptr, out_ptr, row_block, n_rows, C, H, W,
                  REVERSE: tl.constexpr, ROW_BLOCK: tl.constexpr, ROW_STEPS: tl.constexpr,
                  FP64: tl.constexpr):
    """One horizontal direction (block 0, or 1 if REVERSE) for ROW_BLOCK rows."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32  # accumulation dtype
    row_ok, x_row, g_row = _row_bases(row_block, n_rows, C, H, W, 1 if REVERSE else 0,
                                      ROW_BLOCK)
    j = tl.arange(0, ROW_STEPS)
    carry = tl.zeros([ROW_BLOCK], ACC)
    for start in range(0, W, ROW_STEPS):
        # Tiles in natural column order; right->left walks them from the right end.
        if REVERSE:
            col = W - start - ROW_STEPS + j
            mask = row_ok[:, None] & (col >= 0)[None, :]
        else:
            col = start + j
            mask = row_ok[:, None] & (col < W)[None, :]
        xv = tl.load(x_ptr + x_row[:, None] + col[None, :], mask=mask, other=0.0).to(ACC)
        wv = tl.load(w_ptr + g_row[:, None] + col[None, :], mask=mask, other=0.0).to(ACC)
        # Masked positions come after every valid one along the walk, so their zeros cannot
        # reach a valid output.
        h, carry = _scan_along_rows(wv, (1 - wv) * xv, carry, REVERSE)
        tl.store(out_ptr + g_row[:, None] + col[None, :],
                 h.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _cols_forward(x_ptr, w_ptr, out_ptr, col_block, C, H, W,
                  REVERSE: tl.constexpr, COL_STEPS: tl.constexpr, COL_BLOCK: tl.constexpr,
                  FP64: tl.constexpr):
    """One vertical direction (block 2, or 3 if REVERSE) for COL_BLOCK columns of a plane."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32  # accumulation dtype
    cols, col_ok, x_base, g_base = _col_bases(col_block, C, H, W, 3 if REVERSE else 2,
                                              COL_BLOCK)
    steps = tl.arange(0, COL_STEPS)
    carry = tl.zeros([COL_BLOCK], ACC)
    for start in range(0, H, COL_STEPS):
        p = start + steps  # position along the walk
        if REVERSE:
            row = H - 1 - p
        else:
            row = p
        mask = (p < H)[:, None] & col_ok[None, :]
        offs = row[:, None] * W + cols[None, :]
        xv = tl.load(x_ptr + x_base + offs, mask=mask, other=0.0).to(ACC)
        wv = tl.load(w_ptr + g_base + offs, mask=mask, other=0.0).to(ACC)
        h, carry = _scan_along_cols(wv, (1 - wv) * xv, carry)
        tl.store(out_ptr + g_base + offs, h.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _spatial_rnn_fwd_kernel(x_ptr, w_ptr, out_ptr, C, H, W, n_rows, n_row_blocks,
                            ROW_BLOCK: tl.constexpr, ROW_STEPS: tl.constexpr,
                            COL_STEPS: tl.constexpr, COL_BLOCK: tl.constexpr,
                            FP64: tl.constexpr):
    # Programs [0, 2*n_row_blocks) scan rows, the rest scan columns. The two directions of
    # one block of lines get neighbouring ids so they run together and share x in L2.
    pid = tl.program_id(0)
    if pid < 2 * n_row_blocks:
        if pid % 2 == 0:
            _rows_forward(x_ptr, w_ptr, out_ptr, pid // 2, n_rows, C, H, W,
                          False, ROW_BLOCK, ROW_STEPS, FP64)
        else:
            _rows_forward(x_ptr, w_ptr, out_ptr, pid // 2, n_rows, C, H, W,
                          True, ROW_BLOCK, ROW_STEPS, FP64)
    else:
        q = pid - 2 * n_row_blocks
        if q % 2 == 0:
            _cols_forward(x_ptr, w_ptr, out_ptr, q // 2, C, H, W,
                          False, COL_STEPS, COL_BLOCK, FP64)
        else:
            _cols_forward(x_ptr, w_ptr, out_ptr, q // 2, C, H, W,
                          True, COL_STEPS, COL_BLOCK, FP64)


# Backward of one direction. Index i runs along the direction of the recurrence
# (i = column for left->right, W-1-column for right->left, likewise for rows), L = its length:
#
#     h[i] = (1 - w[i]) x[i] + w[i] h[i-1],        h[-1] = 0.
#
# h[i] reaches the loss directly (dL/dh[i], the incoming gradient of this output block) and
# through h[i+1], whose partial derivative in h[i] is w[i+1]. So the total gradient
# g[i] = dL/dh[i] (total) obeys a recurrence running the other way:
#
#     g[i] = dL/dh[i] + w[i+1] g[i+1],             g[L] = 0,
#
# the same affine scan as the forward (a = w[i+1], b = dL/dh[i]), walked from i = L-1 down to
# 0. With g known, the local partial derivatives of h[i] give
#
#     dL/dx[i] = (1 - w[i]) g[i]                    (summed over the four directions)
#     dL/dw[i] = g[i] (h[i-1] - x[i]),             h[-1] = 0,
#
# where h[i-1] is read back from the saved forward output. In image coordinates i+1 is one
# pixel further along the forward direction (column + 1 for left->right, column - 1 for
# right->left, likewise rows) and i-1 one pixel back; both are masked to zero off the image.
# So the backward of left->right walks the row from the right, that of right->left from the
# left, etc.
# dL/dx is summed in an fp32 buffer: the horizontal launch writes the sum of blocks 0 and 1
# (two passes of one program over the same rows, with a barrier between them so the second
# pass sees the first pass's stores), the vertical launch adds blocks 2 and 3 the same way and
# writes the result in the storage dtype.


@triton.jit
def _rows_backward(gout_ptr, x_ptr, w_ptr, out_ptr, dx_in_ptr, dx_out_ptr, dw_ptr,
                   row_block, n_rows, C, H, W,
                   REVERSE: tl.constexpr, ACCUMULATE: tl.constexpr,
                   ROW_BLOCK: tl.constexpr, ROW_STEPS: tl.constexpr, FP64: tl.constexpr):
    """Backward of horizontal block 0 (or 1 if REVERSE) for ROW_BLOCK rows (see above)."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32  # accumulation dtype
    row_ok, x_row, g_row = _row_bases(row_block, n_rows, C, H, W, 1 if REVERSE else 0,
                                      ROW_BLOCK)
    STEP: tl.constexpr = -1 if REVERSE else 1  # column step of the forward recurrence
    j = tl.arange(0, ROW_STEPS)
    carry = tl.zeros([ROW_BLOCK], ACC)
    for start in range(0, W, ROW_STEPS):
        if REVERSE:  # forward ran right->left: its backward walks left->right
            col = start + j
        else:
            col = W - start - ROW_STEPS + j
        valid = row_ok[:, None] & ((col >= 0) & (col < W))[None, :]
        nxt = col + STEP  # column of i+1
        prv = col - STEP  # column of i-1
        has_next = valid & ((nxt >= 0) & (nxt < W))[None, :]
        has_prev = valid & ((prv >= 0) & (prv < W))[None, :]
        x_off = x_row[:, None] + col[None, :]
        g_off = g_row[:, None] + col[None, :]
        dh = tl.load(gout_ptr + g_off, mask=valid, other=0.0).to(ACC)
        w_next = tl.load(w_ptr + g_row[:, None] + nxt[None, :],
                                 mask=has_next, other=0.0).to(ACC)
        g, carry = _scan_along_rows(w_next, dh, carry, not REVERSE)
        wv = tl.load(w_ptr + g_off, mask=valid, other=0.0).to(ACC)
        xv = tl.load(x_ptr + x_off, mask=valid, other=0.0).to(ACC)
        h_prev = tl.load(out_ptr + g_row[:, None] + prv[None, :],
                                 mask=has_prev, other=0.0).to(ACC)
        tl.store(dw_ptr + g_off, (g * (h_prev - xv)).to(dw_ptr.dtype.element_ty), mask=valid)
        dx = (1 - wv) * g
        if ACCUMULATE:
            dx += tl.load(dx_in_ptr + x_off, mask=valid, other=0.0).to(ACC)
        tl.store(dx_out_ptr + x_off, dx.to(dx_out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _cols_backward(gout_ptr, x_ptr, w_ptr, out_ptr, dx_in_ptr, dx_out_ptr, dw_ptr,
                   col_block, C, H, W,
                   REVERSE: tl.constexpr, ACCUMULATE: tl.constexpr,
                   COL_STEPS: tl.constexpr, COL_BLOCK: tl.constexpr, FP64: tl.constexpr):
    """Backward of vertical block 2 (or 3 if REVERSE) for COL_BLOCK columns of a plane."""
    ACC: tl.constexpr = tl.float64 if FP64 else tl.float32  # accumulation dtype
    cols, col_ok, x_base, g_base = _col_bases(col_block, C, H, W, 3 if REVERSE else 2,
                                              COL_BLOCK)
    STEP: tl.constexpr = -1 if REVERSE else 1  # row step of the forward recurrence
    steps = tl.arange(0, COL_STEPS)
    carry = tl.zeros([COL_BLOCK], ACC)
    for start in range(0, H, COL_STEPS):
        s = start + steps  # position along the backward walk
        if REVERSE:
            row = s
        else:
            row = H - 1 - s
        valid = (s < H)[:, None] & col_ok[None, :]
        nxt = row + STEP
        prv = row - STEP
        has_next = valid & ((nxt >= 0) & (nxt < H))[:, None]
        has_prev = valid & ((prv >= 0) & (prv < H))[:, None]
        offs = row[:, None] * W + cols[None, :]
        dh = tl.load(gout_ptr + g_base + offs, mask=valid, other=0.0).to(ACC)
        w_next = tl.load(w_ptr + g_base + nxt[:, None] * W + cols[None, :],
                                 mask=has_next, other=0.0).to(ACC)
        g, carry = _scan_along_cols(w_next, dh, carry)
        wv = tl.load(w_ptr + g_base + offs, mask=valid, other=0.0).to(ACC)
        xv = tl.load(x_ptr + x_base + offs, mask=valid, other=0.0).to(ACC)
        h_prev = tl.load(out_ptr + g_base + prv[:, None] * W + cols[None, :],
                                 mask=has_prev, other=0.0).to(ACC)
        tl.store(dw_ptr + g_base + offs,
                 (g * (h_prev - xv)).to(dw_ptr.dtype.element_ty), mask=valid)
        dx = (1 - wv) * g
        if ACCUMULATE:
            dx += tl.load(dx_in_ptr + x_base + offs, mask=valid, other=0.0).to(ACC)
        tl.store(dx_out_ptr + x_base + offs, dx.to(dx_out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _spatial_rnn_bwd_rows_kernel(gout_ptr, x_ptr, w_ptr, out_ptr, dx_acc_ptr, dw_ptr,
                                 C, H, W, n_rows,
                                 ROW_BLOCK: tl.constexpr, ROW_STEPS: tl.constexpr,
                                 FP64: tl.constexpr):
    # dx_acc = dx(block 0) + dx(block 1), both passes in one program over the same rows.
    rb = tl.program_id(0)
    _rows_backward(gout_ptr, x_ptr, w_ptr, out_ptr, dx_acc_ptr, dx_acc_ptr, dw_ptr,
                   rb, n_rows, C, H, W, False, False, ROW_BLOCK, ROW_STEPS, FP64)
    # The second pass walks the other way, so other threads read what the first one stored:
    # a CTA barrier makes those global stores visible.
    tl.debug_barrier()
    _rows_backward(gout_ptr, x_ptr, w_ptr, out_ptr, dx_acc_ptr, dx_acc_ptr, dw_ptr,
                   rb, n_rows, C, H, W, True, True, ROW_BLOCK, ROW_STEPS, FP64)


@triton.jit
def _spatial_rnn_bwd_cols_kernel(gout_ptr, x_ptr, w_ptr, out_ptr, dx_acc_ptr, dx_ptr, dw_ptr,
                                 C, H, W,
                                 COL_STEPS: tl.constexpr, COL_BLOCK: tl.constexpr,
                                 FP64: tl.constexpr, DX_IN_ACC: tl.constexpr):
    # dx = dx_acc + dx(block 2) + dx(block 3). When the storage dtype is the accumulation
    # dtype the result stays in dx_acc (DX_IN_ACC) and dx_ptr is not touched, so no two
    # arguments alias a written buffer (torch.compile clones written arguments).
    cb = tl.program_id(0)
    _cols_backward(gout_ptr, x_ptr, w_ptr, out_ptr, dx_acc_ptr, dx_acc_ptr, dw_ptr,
                   cb, C, H, W, False, True, COL_STEPS, COL_BLOCK, FP64)
    tl.debug_barrier()
    if DX_IN_ACC:
        _cols_backward(gout_ptr, x_ptr, w_ptr, out_ptr, dx_acc_ptr, dx_acc_ptr, dw_ptr,
                       cb, C, H, W, True, True, COL_STEPS, COL_BLOCK, FP64)
    else:
        _cols_backward(gout_ptr, x_ptr, w_ptr, out_ptr, dx_acc_ptr, dx_ptr, dw_ptr,
                       cb, C, H, W, True, True, COL_STEPS, COL_BLOCK, FP64)


# --------------------------------------------------------------------------------------------
# Launchers: allocation, tile sizes, grids
# --------------------------------------------------------------------------------------------

# Under TRITON_INTERPRET=1 (read by triton.jit when the kernels above were decorated) the
# kernels are Python functions run on CPU tensors; tests use that, the GPU never does.
_INTERPRETED = not isinstance(_spatial_rnn_fwd_kernel, triton.runtime.jit.JITFunction)

if hasattr(torch.library, "wrap_triton") and not _INTERPRETED:
    from torch.library import wrap_triton
else:  # older torch, or interpreter mode: launch the kernels directly (no tracing through)

    def wrap_triton(kernel):  # type: ignore[no-redef]
        return kernel


_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)

#: Tests set this to fill fresh outputs with NaN, so that unwritten elements cannot hide.
_POISON_OUTPUTS = False


@dataclass(frozen=True)
class _Config:
    """Tile sizes (powers of two). Rows: ROW_BLOCK lines x ROW_STEPS along W per tile;
    columns: COL_STEPS along H x COL_BLOCK contiguous columns per tile."""

    row_block: int
    row_steps: int
    col_steps: int
    col_block: int
    num_warps: int = 4


def _pow2_at_most(n: int, cap: int) -> int:
    return min(cap, triton.next_power_of_2(max(1, n)))


def _pick_config(n_rows: int, h: int, w: int, *, backward: bool) -> _Config:
    # ~1024 elements per tile (8 per thread at 4 warps): enough bytes in flight per program
    # to cover DRAM latency with a few programs per SM, small enough to keep registers and
    # the scan cheap. The backward loads five tiles per step, so it uses half-height row
    # tiles to keep as many programs. Tiles shrink to the problem so that small inputs waste
    # no lanes (and the CPU interpreter stays fast).
    row_steps = _pow2_at_most(w, 64)
    row_budget = (512 if backward else 1024) // row_steps
    row_block = _pow2_at_most(n_rows, max(1, row_budget))
    col_block = _pow2_at_most(w, 32)
    col_steps = _pow2_at_most(h, max(1, 1024 // col_block))
    return _Config(row_block, row_steps, col_steps, col_block)


def _alloc(shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None):
    dtype = like.dtype if dtype is None else dtype
    if _POISON_OUTPUTS:
        return torch.full(shape, float("nan"), dtype=dtype, device=like.device)
    return torch.empty(shape, dtype=dtype, device=like.device)


def _check_sizes(x: torch.Tensor) -> tuple[int, int, int, int]:
    n, c, h, w = (int(s) for s in x.shape)
    if h * w >= 2**31:
        # Offsets inside one plane are 32-bit; whole-tensor offsets are 64-bit.
        raise ValueError(f"spatial_rnn triton: one plane of {h}x{w} is too large")
    return n, c, h, w


def _forward(x: torch.Tensor, w: torch.Tensor, config: _Config | None = None) -> torch.Tensor:
    """Launch the forward kernel: x (N,C,H,W), w (N,4C,H,W) -> out (N,4C,H,W)."""
    x, w = x.contiguous(), w.contiguous()
    n, c, h, wd = _check_sizes(x)
    out = _alloc((n, 4 * c, h, wd), x)
    if out.numel() == 0:
        return out
    n_rows = n * c * h
    cfg = config or _pick_config(n_rows, h, wd, backward=False)
    n_row_blocks = triton.cdiv(n_rows, cfg.row_block)
    n_col_blocks = n * c * triton.cdiv(wd, cfg.col_block)
    grid = (2 * n_row_blocks + 2 * n_col_blocks,)
    wrap_triton(_spatial_rnn_fwd_kernel)[grid](
        x, w, out, c, h, wd, n_rows, n_row_blocks,
        ROW_BLOCK=cfg.row_block, ROW_STEPS=cfg.row_steps,
        COL_STEPS=cfg.col_steps, COL_BLOCK=cfg.col_block,
        FP64=x.dtype == torch.float64, num_warps=cfg.num_warps,
    )
    return out


def _backward(
    grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, out: torch.Tensor,
    config: _Config | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the two backward kernels: -> (dL/dx (N,C,H,W), dL/dw (N,4C,H,W))."""
    grad_out, x, w, out = (t.contiguous() for t in (grad_out, x, w, out))
    n, c, h, wd = _check_sizes(x)
    dw = _alloc(tuple(w.shape), w)
    if dw.numel() == 0:
        return _alloc(tuple(x.shape), x), dw
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    dx_acc = _alloc(tuple(x.shape), x, acc_dtype)
    dx_in_acc = x.dtype == acc_dtype
    dx = dx_acc if dx_in_acc else _alloc(tuple(x.shape), x)
    n_rows = n * c * h
    cfg = config or _pick_config(n_rows, h, wd, backward=True)
    fp64 = x.dtype == torch.float64
    wrap_triton(_spatial_rnn_bwd_rows_kernel)[(triton.cdiv(n_rows, cfg.row_block),)](
        grad_out, x, w, out, dx_acc, dw, c, h, wd, n_rows,
        ROW_BLOCK=cfg.row_block, ROW_STEPS=cfg.row_steps, FP64=fp64,
        num_warps=cfg.num_warps,
    )
    wrap_triton(_spatial_rnn_bwd_cols_kernel)[(n * c * triton.cdiv(wd, cfg.col_block),)](
        grad_out, x, w, out, dx_acc, dx, dw, c, h, wd,
        COL_STEPS=cfg.col_steps, COL_BLOCK=cfg.col_block, FP64=fp64, DX_IN_ACC=dx_in_acc,
        num_warps=cfg.num_warps,
    )
    return dx, dw


# --------------------------------------------------------------------------------------------
# torch.library operators and autograd
# --------------------------------------------------------------------------------------------

_OP = "flowdeblur::spatial_rnn_triton"
_OP_BACKWARD = "flowdeblur::spatial_rnn_triton_backward"

# triton_op lets torch.compile see (and schedule) the kernels inside; it needs wrap_triton to
# trace them, which cannot trace interpreted kernels, so interpreter mode and torch versions
# without triton_op register an opaque custom_op with a fake implementation instead. Either
# way torch.compile traces the op without a graph break.
_USES_TRITON_OP = hasattr(torch.library, "triton_op") and not _INTERPRETED

if _USES_TRITON_OP:

    @torch.library.triton_op(_OP, mutates_args=())
    def _spatial_rnn_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return _forward(x, w)

    @torch.library.triton_op(_OP_BACKWARD, mutates_args=())
    def _spatial_rnn_backward_op(
        grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _backward(grad_out, x, w, out)

else:

    @torch.library.custom_op(_OP, mutates_args=())
    def _spatial_rnn_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return _forward(x, w)

    @_spatial_rnn_op.register_fake
    def _(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x.new_empty(w.shape)

    @torch.library.custom_op(_OP_BACKWARD, mutates_args=())
    def _spatial_rnn_backward_op(
        grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, out: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _backward(grad_out, x, w, out)

    @_spatial_rnn_backward_op.register_fake
    def _(grad_out, x, w, out):
        return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(
            w, memory_format=torch.contiguous_format
        )


def _setup_context(ctx, inputs, output) -> None:
    x, w = inputs
    # The forward output is h itself; the backward needs it for h[i-1].
    ctx.save_for_backward(x, w, output)


def _backward_formula(ctx, grad_out: torch.Tensor):
    x, w, out = ctx.saved_tensors
    dx, dw = _spatial_rnn_backward_op(grad_out, x, w, out)
    return dx, dw


_spatial_rnn_op.register_autograd(_backward_formula, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def is_available(device: torch.device | str) -> bool:
    """Whether the Triton backend can run on ``device``: CUDA with Triton, or any device
    when the kernels were built under ``TRITON_INTERPRET=1`` (the CPU interpreter)."""
    device = torch.device(device)
    if _INTERPRETED:
        return device.type in ("cpu", "cuda")
    return device.type == "cuda" and torch.cuda.is_available()


def spatial_rnn_triton(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Four-direction spatially variant linear RNN (paper Eq. 13), Triton kernels.

    For each direction k (0: left->right, 1: right->left, 2: top->bottom, 3: bottom->top) and
    its gates ``w_k = w[:, k*C:(k+1)*C]``, along that direction::

        h[i] = (1 - w_k[i]) * x[i] + w_k[i] * h[i-1],    h[-1] = 0

    Args:
        x: (N, C, H, W) features, float32 / bfloat16 / float16 (accumulated in float32) or
            float64 (computed in float64). On CUDA, or any device under TRITON_INTERPRET=1.
        w: (N, 4C, H, W) gates; cast to ``x.dtype`` if it differs.
    Returns:
        (N, 4C, H, W) in ``x.dtype``: the four directional outputs in the order above.
        Differentiable in ``x`` and ``w`` (first derivatives only) through a registered
        ``torch.library`` op, so ``torch.compile`` traces it without a graph break.
    """
    check_rnn_inputs(x, w)
    if x.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"spatial_rnn triton: unsupported dtype {x.dtype}")
    if not is_available(x.device):
        raise RuntimeError(
            f"spatial_rnn triton backend needs a CUDA device (or TRITON_INTERPRET=1), "
            f"got {x.device}"
        )
    if w.dtype != x.dtype:
        w = w.to(x.dtype)
    if (
        x.is_cuda
        and not torch.compiler.is_compiling()  # compiled code sets the device itself
        and x.device.index not in (None, torch.cuda.current_device())
    ):
        # Triton launches on the current device.
        with torch.cuda.device(x.device):
            return _spatial_rnn_op(x, w)
    return _spatial_rnn_op(x, w)


__all__ = ["is_available", "spatial_rnn_triton"]
