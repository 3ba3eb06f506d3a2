"""Timers: one forward of the network, the three RNN layers alone, and the convolutions' FLOP.

Every forward is the one ``flowdeblur deblur`` runs: :meth:`flowdeblur.runtime.Runtime.prepare`
with the runtime each row names (purpose "report": fp32 unless a precision is asked for).
Timing: on CUDA, ``torch.cuda.Event`` pairs around each call after a device sync (so each
figure is one frame's latency, launch overhead included), median of ``repeats`` after
``warmup`` calls; on CPU, ``time.perf_counter`` likewise. The first call's wall time (compile,
autotune, graph capture) is kept apart.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ...errors import UserError
from ...models import FlowDeblurNet
from ...ops import spatial_rnn
from ...runtime import PRECISIONS, Runtime
from .results import Timing
from .standin import use_standin_rnn

#: Benchmark modes -> the runtime mode they time. "cudagraphs" is ``torch.compile`` in a mode
#: that wraps the compiled graph in CUDA graphs (``graph_mode``).
MODES = ("eager", "compile", "cudagraphs", "graph")
RUNTIME_MODES = {"eager": "eager", "compile": "compile", "cudagraphs": "compile", "graph": "graph"}
CUDA_ONLY_MODES = ("cudagraphs", "graph")

#: (channels, downsampling factor) of the three RNN layers (d_rnn1..3, Table I).
RNN_LAYERS = ((24, 2), (48, 4), (96, 8))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(
    fn: Callable[[], object], *, device: torch.device | str, repeats: int, warmup: int
) -> Timing:
    """Median seconds per call of ``fn()`` on ``device`` after ``warmup`` calls.

    CUDA: each call sits between two ``torch.cuda.Event``s recorded after a device sync, so a
    figure is one call's latency (kernel-launch gaps included) rather than a pipelined rate.
    CPU: ``time.perf_counter`` around each call. The first warm-up call's wall time (compile,
    autotuning, graph capture) is kept as ``first_call_s``.
    """
    device = torch.device(device)
    if repeats < 1:
        raise UserError(f"repeats must be >= 1, got {repeats}")
    first = None
    for i in range(max(warmup, 1)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        if i == 0:
            first = time.perf_counter() - t0
    times: list[float] = []
    if device.type == "cuda":
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return Timing(
        median_s=statistics.median(times),
        min_s=min(times),
        max_s=max(times),
        repeats=repeats,
        warmup=max(warmup, 1),
        first_call_s=first,
    )


def reset_compiler() -> None:
    """Forget what ``torch.compile`` compiled so far (dynamo's caches and guards)."""
    # Every configuration compiles the same inner function with new guards; without a reset
    # dynamo's recompile limit (8) would silently send later configurations back to eager.
    torch._dynamo.reset()


def check_mode(mode: str) -> None:
    """UserError unless ``mode`` is one of :data:`MODES`."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")


def torch_compile_mode(mode: str, graph_mode: str) -> str:
    """The ``torch.compile`` mode a benchmark mode uses (where it compiles at all)."""
    return graph_mode if mode == "cudagraphs" else "default"


def random_frames(batch: int, size: tuple[int, int], n: int,
                  device: torch.device) -> list[torch.Tensor]:
    """``n`` uniform random (batch, 3, *size) frames on ``device``, the same for every call."""
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch, 3, *size, generator=g).to(device) for _ in range(n)]


def time_inference(
    model: FlowDeblurNet,
    *,
    device: torch.device,
    precision: str,
    mode: str,
    size: tuple[int, int],
    batch: int = 1,
    repeats: int,
    warmup: int,
    channels_last: bool | None = None,
    graph_mode: str = "max-autotune",
    freeze: bool = False,
) -> Timing:
    """Time one forward of ``model`` on (batch, 3, *size) frames through the runtime's fast
    path (:meth:`flowdeblur.runtime.Runtime.prepare`), as ``flowdeblur deblur`` runs it."""
    check_mode(mode)
    reset_compiler()
    runtime = Runtime.resolve(device, precision, RUNTIME_MODES[mode], purpose="report",
                              channels_last=channels_last)
    fast = runtime.prepare(model, compile_mode=torch_compile_mode(mode, graph_mode),
                           freeze=freeze)
    frames = random_frames(batch, size, max(1, model.in_frames), device)
    return time_callable(lambda: fast(*frames), device=device, repeats=repeats, warmup=warmup)


def time_rnn_layers(
    *,
    device: torch.device,
    precision: str,
    backend: str,
    padded_size: tuple[int, int],
    batch: int = 1,
    repeats: int,
    warmup: int,
    backward: bool = False,
) -> tuple[list[tuple[int, ...]], list[Timing]]:
    """Time ``spatial_rnn`` alone at the three layers' shapes for a padded frame size.

    For d_rnn1..3: x (batch, C, Hp/s, Wp/s) with (C, s) = (24, 2), (48, 4), (96, 8), gates
    (batch, 4C, ...) in (-1, 1), in the precision's dtype (fp32, bf16, fp16), contiguous.
    Forward only under ``no_grad``, or forward + backward with ``backward=True``.
    Returns the x shapes and one :class:`Timing` per layer.
    """
    dtype = PRECISIONS[precision]
    g = torch.Generator().manual_seed(0)
    shapes, timings = [], []
    for c, s in RNN_LAYERS:
        shape = (batch, c, padded_size[0] // s, padded_size[1] // s)
        x = torch.randn(*shape, generator=g).to(device, dtype)
        w = torch.tanh(torch.randn(batch, 4 * c, *shape[2:], generator=g)).to(device, dtype)
        if backward:
            x.requires_grad_(True)
            w.requires_grad_(True)
            grad = torch.ones(batch, 4 * c, *shape[2:], device=device, dtype=dtype)

            def step(x=x, w=w, grad=grad):
                spatial_rnn(x, w, backend=backend).backward(grad)
        else:

            def step(x=x, w=w):
                with torch.no_grad():
                    spatial_rnn(x, w, backend=backend)

        timings.append(time_callable(step, device=device, repeats=repeats, warmup=warmup))
        shapes.append(shape)
    return shapes, timings



def count_conv_gflop(variant: str, padded_size: tuple[int, int], batch: int = 1) -> float | None:
    """GFLOP of one forward with the stand-in RNN (convolutions, counted on the meta device)."""
    # Imported here: the flop counter pulls in triton and torch's decompositions (~0.1-0.4 s),
    # which every `flowdeblur` command would otherwise pay for this one figure.
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.device("meta"):
            net = FlowDeblurNet(variant, rnn_backend="torch")
            frames = [torch.empty(batch, 3, *padded_size) for _ in range(max(1, net.in_frames))]
        with use_standin_rnn(net), torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(*frames)
        return counter.get_total_flops() / 1e9
    except Exception:  # a convenience figure: never let it sink the benchmark
        return None
