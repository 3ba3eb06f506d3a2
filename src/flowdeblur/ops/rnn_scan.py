"""The spatial RNN as a chunked linear scan in standard tensor operations (for ONNX export).

Every operation here is a slice, an elementwise multiply-add, a pad, a reshape, a transpose,
a concatenation or a flip, so the function exports to plain ONNX operators and runs in ONNX
Runtime and OpenVINO with no custom operator library; autograd differentiates it like any
other torch code. No loop runs over the scan length, so one graph serves every frame size.

The recurrence along a line of length L is ``h[i] = a[i] + w[i] h[i-1]`` with
``a = (1 - w) x`` and ``h[-1] = 0``. The line is cut into chunks of :data:`CHUNK` positions.
Within a chunk, :data:`CHUNK` unrolled steps compute the chunk's own scan started from zero,
``u[j] = a[j] + w[j] u[j-1]``, and the running product of its gates, ``p[j] = w[j] p[j-1]``
(plain products: gates are tanh outputs in (-1, 1), so negative and zero gates are as valid as
positive ones and no logarithm is taken). The true values are ``h[j] = u[j] + p[j] s``, with
``s`` the state carried in from the end of the previous chunk. Those states obey the same
recurrence over the L / CHUNK chunk ends, ``s_c = u_c[last] + p_c[last] s_{c-1}``, solved by
recursive doubling: after the step of offset d, each end holds its recurrence composed with
the d ends before it; :data:`DOUBLINGS` steps reach back over :data:`MAX_LENGTH` positions.

Every RNN input of the network is a multiple of 8 long (frames are padded to multiples of 64
and the RNNs run at 1/2, 1/4 and 1/8 of that), so in the exported graph the chunks need no
padding; other lengths are zero-padded to whole chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .rnn_torch import _directional_stacks, _merge_outputs

#: Positions per chunk: the steps unrolled within each chunk.
CHUNK = 8
#: Doubling steps over the chunk ends (offsets 1, 2, 4, ...). They run whatever the length, so
#: that one graph serves every size; each pads the ends by its offset, so they are no more
#: than the longest line needs.
DOUBLINGS = 10
#: The longest line the scan handles (the first RNN layer of a 16384-pixel-wide frame).
MAX_LENGTH = CHUNK * 2**DOUBLINGS


def _shifted(t: torch.Tensor, d: int) -> torch.Tensor:
    """``t`` moved ``d`` places towards higher indices along the last dim, zeros shifted in."""
    return F.pad(t, (d, 0))[..., : t.shape[-1]]


def _scan_doubling(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``s[i] = a[i] + w[i] s[i-1]``, ``s[-1] = 0``, along the last dim by recursive doubling
    (lines of up to ``2 ** DOUBLINGS``)."""
    for step in range(DOUBLINGS):
        d = 2**step
        # Before: s[i] = a[i] + w[i] s[i-d]. Substituting s[i-d] = a[i-d] + w[i-d] s[i-2d]
        # gives the same form with offset 2d; positions before the line's start hold zeros.
        a = a + w * _shifted(a, d)
        w = w * _shifted(w, d)
    return a


def _chunks(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(..., L) -> CHUNK tensors (..., L / CHUNK): position j of every chunk, zero-padded at
    the end to whole chunks (the padding only follows the real positions, so it changes
    none of them)."""
    padded = F.pad(t, (0, (-t.shape[-1]) % CHUNK))
    return padded.unflatten(-1, (-1, CHUNK)).unbind(-1)


def _scan(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``h[i] = a[i] + w[i] h[i-1]``, ``h[-1] = 0``, along the last dim, in chunks."""
    length = a.shape[-1]
    a_j, w_j = _chunks(a), _chunks(w)
    u, p = [a_j[0]], [w_j[0]]
    for j in range(1, CHUNK):
        u.append(a_j[j] + w_j[j] * u[-1])
        p.append(w_j[j] * p[-1])
    ends = _scan_doubling(u[-1], p[-1])  # the true state at the end of each chunk
    carried = _shifted(ends, 1)  # ... carried into the next chunk
    h = torch.stack([uj + pj * carried for uj, pj in zip(u, p)], dim=-1).flatten(-2)
    return h[..., :length]


def scan_chunked(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """One directional recurrence ``h[i] = (1 - w[i]) x[i] + w[i] h[i-1]`` along the last dim,
    increasing index, computed in float32 at least. x, w: same shape (..., L), L up to
    :data:`MAX_LENGTH` (ValueError beyond, where the length is known as a number)."""
    length = x.shape[-1]
    if isinstance(length, int) and length > MAX_LENGTH:
        raise ValueError(f"the chunked scan handles lines of up to {MAX_LENGTH} positions, "
                         f"got {length}")
    acc = torch.promote_types(x.dtype, torch.float32)
    xs, ws = x.to(acc), w.to(acc)
    return _scan((1 - ws) * xs, ws).to(x.dtype)


def spatial_rnn_scan(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Four-direction spatial RNN as chunked scans. Same contract as ``spatial_rnn``."""
    n = x.shape[0]
    xh, wh, xv, wv = _directional_stacks(x, w)
    return _merge_outputs(scan_chunked(xh, wh), scan_chunked(xv, wv), n)
