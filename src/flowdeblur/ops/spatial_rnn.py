"""Public entry point of the spatially variant RNN (paper Eq. 13) and its backend dispatch.

Backends, all computing the same function:

========== =============================================================================
reference  Python loop under autograd (``rnn_reference``). Slow; the ground truth.
torch      vectorised PyTorch loop with a hand-written backward (``rnn_torch``); any device.
cpu        compiled CPU kernel, forward and backward (``rnn_cpu``, numba).
scan       chunked linear scan in standard operations under autograd (``rnn_scan``): what
           an ONNX export of the network runs; any device.
triton     Triton GPU kernels, forward and backward (``rnn_triton``).
auto       triton on CUDA, cpu on CPU; falls back to torch with a one-time warning.
========== =============================================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from . import rnn_cpu
from .rnn_contract import check_rnn_inputs
from .rnn_cpu import spatial_rnn_cpu
from .rnn_reference import spatial_rnn_reference
from .rnn_scan import spatial_rnn_scan
from .rnn_torch import spatial_rnn_torch

BACKENDS = ("auto", "reference", "torch", "cpu", "triton", "scan")

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _load(backend: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if backend == "reference":
        return spatial_rnn_reference
    if backend == "torch":
        return spatial_rnn_torch
    if backend == "cpu":
        return spatial_rnn_cpu
    if backend == "scan":
        return spatial_rnn_scan
    if backend == "triton":
        return _triton().spatial_rnn_triton
    raise ValueError(f"unknown spatial_rnn backend {backend!r}; choose one of {BACKENDS}")


def _triton():
    """The Triton backend module; imported on first use because triton is optional."""
    from . import rnn_triton

    return rnn_triton


def backend_available(backend: str, device: torch.device | str = "cpu") -> bool:
    """Whether ``backend`` can run on ``device`` in this environment."""
    device = torch.device(device)
    if backend in ("reference", "torch", "scan"):
        return True
    if backend == "cpu":
        return device.type == "cpu" and rnn_cpu.is_available()
    if backend == "triton":
        try:
            triton_backend = _triton()
        except ImportError:  # triton is an optional dependency
            return False
        return triton_backend.is_available(device)
    return False


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """Turn ``"auto"`` into a concrete backend name for ``device`` (warning once on fallback)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown spatial_rnn backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    device = torch.device(device)
    preferred = "triton" if device.type == "cuda" else "cpu"
    if backend_available(preferred, device):
        return preferred
    _warn_once(
        f"fallback-{device.type}",
        f"spatial_rnn: the {preferred!r} backend is unavailable on {device.type}; "
        "using the slower vectorised 'torch' backend",
    )
    return "torch"


def spatial_rnn(x: torch.Tensor, w: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Four-direction spatially variant linear RNN (paper Eq. 13).

    For each direction k (0: left->right, 1: right->left, 2: top->bottom, 3: bottom->top) and
    the gates ``w_k = w[:, k*C:(k+1)*C]``, along that direction::

        h[i] = (1 - w_k[i]) * x[i] + w_k[i] * h[i-1],    h[-1] = 0

    Args:
        x: (N, C, H, W) features.
        w: (N, 4C, H, W) gates, expected in (-1, 1) (the network makes them with tanh).
        backend: one of ``"auto"``, ``"reference"``, ``"torch"``, ``"cpu"``, ``"triton"``,
            ``"scan"``.
    Returns:
        (N, 4C, H, W): the four directional outputs concatenated in the order above.
        Differentiable in ``x`` and ``w``.
    """
    check_rnn_inputs(x, w)
    if x.dtype != w.dtype:
        w = w.to(x.dtype)
    name = resolve_backend(backend, x.device)
    return _load(name)(x, w)
