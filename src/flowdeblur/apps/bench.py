"""Speed of the network (paper Table III) measured here: timers, the benchmark runs, the report.

What is timed, for each device, precision and execution mode:

- **convolutions only**: the network with every spatial RNN replaced by the same-shape stand-in
  ``x.repeat(1, 4, 1, 1) * w`` (:func:`flowdeblur.runtime.fastpath.use_standin_rnn`);
- **full network**: the real RNNs, on the chosen backend;
- their ratio, from the same run, and frames per second;
- the three RNN layers alone at their shapes for the benchmark size (720p: x 1x24x384x640,
  1x48x192x320, 1x96x96x160; gates 4x the channels), forward;
- with ``train=True``: one training step (batch 20 of 256x256 by default: forward, Eq. 14 loss,
  backward, Adam) with the stand-in and with the real RNNs.

Modes: ``eager``; ``compile`` (``torch.compile``, default mode); ``cudagraphs``
(``torch.compile`` with CUDA graphs, mode ``max-autotune`` unless ``graph_mode`` says
``reduce-overhead``); ``graph`` (the eager forward captured in one CUDA graph, no compiler).
The last two need CUDA.

Every forward is the one ``flowdeblur deblur`` runs: :meth:`flowdeblur.runtime.Runtime.prepare`
with the runtime each row names (purpose "report": fp32 unless a precision is asked for).

Timing: on CUDA, ``torch.cuda.Event`` pairs around each call after a device sync (so each
figure is one frame's latency, launch overhead included), median of ``repeats`` after
``warmup`` calls; on CPU, ``time.perf_counter`` likewise. The first call's wall time (compile,
autotune, graph capture) is reported apart.

The report says what was measured. Set beside the paper's Table III per unit of hardware only
with a GPU's peak throughput (``--peak-tflops``): the data sheets of GPUs live with the
benchmark scripts (benchmarks/gpu_datasheets.py), not in the package.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from .. import __version__
from ..errors import UserError
from ..media.atomic import atomic_write_text
from ..models import PAD_MULTIPLE, VARIANTS, FlowDeblurNet, SpatialRNN, count_parameters
from ..ops import BACKENDS, backend_available, resolve_backend, spatial_rnn
from ..runtime import PRECISIONS, Runtime, resolve_device, use_standin_rnn
from ..runtime.fastpath import CUDAGRAPH_COMPILE_MODES
from ..training.config import OptimConfig
from ..training.losses import eq14_loss
from ..training.setup import build_optimizer

#: Benchmark modes -> the runtime mode they time. "cudagraphs" is ``torch.compile`` in a mode
#: that wraps the compiled graph in CUDA graphs (``graph_mode``).
MODES = ("eager", "compile", "cudagraphs", "graph")
RUNTIME_MODES = {"eager": "eager", "compile": "compile", "cudagraphs": "compile", "graph": "graph"}
CUDA_ONLY_MODES = ("cudagraphs", "graph")

#: The paper's figure (Table III): 0.20 s per 720x1280 frame on an NVIDIA Titan Xp.
PAPER_SECONDS_PER_FRAME = 0.20
PAPER_GPU = "NVIDIA TITAN Xp"
#: Titan Xp peak fp32: 3840 CUDA cores x 2 FLOP x 1.582 GHz boost = 12.1 TFLOP/s.
PAPER_GPU_FP32_TFLOPS = 12.1

#: (channels, downsampling factor) of the three RNN layers (d_rnn1..3, Table I).
RNN_LAYERS = ((24, 2), (48, 4), (96, 8))

DEFAULTS = {
    # device type -> defaults; CPU: a 720p frame takes seconds, and torch.compile is slow there.
    "cuda": {"precisions": ("fp32", "bf16"), "modes": ("eager", "compile", "cudagraphs"),
             "repeats": 50, "warmup": 10, "train_precision": "bf16", "train_repeats": 20,
             "train_warmup": 5},
    "cpu": {"precisions": ("fp32",), "modes": ("eager",), "repeats": 3, "warmup": 1,
            "train_precision": "fp32", "train_repeats": 2, "train_warmup": 1},
}

QUICK = {"size": (64, 128), "repeats": 2, "warmup": 1, "train_batch": 2, "train_size": (64, 64),
         "train_repeats": 1, "train_warmup": 1}


# ----------------------------------------------------------------------------- results


@dataclass
class Timing:
    """Seconds per call: median (the figure reported), min, max, and how it was taken."""

    median_s: float
    min_s: float
    max_s: float
    repeats: int
    warmup: int
    first_call_s: float | None = None

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


@dataclass
class InferenceResult:
    device: str
    precision: str
    mode: str
    convs: Timing | None = None
    full: Timing | None = None
    peak_memory_gib: float | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.convs is None or self.full is None:
            return None
        return self.full.median_s / self.convs.median_s


@dataclass
class RnnLayerResult:
    device: str
    precision: str
    backend: str
    shapes: list[tuple[int, ...]]
    timings: list[Timing]
    error: str | None = None
    #: False: forward under no_grad; True: forward + backward.
    backward: bool = False

    @property
    def total_s(self) -> float:
        return sum(t.median_s for t in self.timings)


@dataclass
class TrainResult:
    device: str
    precision: str
    mode: str
    batch: int
    size: tuple[int, int]
    standin: Timing | None = None
    full: Timing | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.standin is None or self.full is None:
            return None
        return self.full.median_s / self.standin.median_s


@dataclass
class BenchReport:
    command: str
    date: str
    machine: dict
    variant: str
    parameters: int
    size: tuple[int, int]
    padded_size: tuple[int, int]
    batch: int
    backends: dict[str, str]
    conv_gflop: float | None = None
    layouts: dict[str, str] = field(default_factory=dict)
    inference: list[InferenceResult] = field(default_factory=list)
    rnn_layers: list[RnnLayerResult] = field(default_factory=list)
    train: list[TrainResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """Plain JSON-able dict, derived figures (ratios, milliseconds) included."""
        data = asdict(self)
        for row, obj in zip(data["inference"], self.inference):
            row["ratio"] = obj.ratio
        for row, obj in zip(data["train"], self.train):
            row["ratio"] = obj.ratio
        for row, obj in zip(data["rnn_layers"], self.rnn_layers):
            row["total_s"] = obj.total_s
        return data


@dataclass
class BenchConfig:
    """What :func:`run_benchmark` measures. ``None`` fields take the per-device defaults."""

    devices: Sequence[str] = ("auto",)
    size: tuple[int, int] = (720, 1280)
    batch: int = 1
    precisions: Sequence[str] | None = None
    modes: Sequence[str] | None = None
    repeats: int | None = None
    warmup: int | None = None
    rnn_backend: str = "auto"
    variant: str = "full"
    channels_last: bool | None = None  # None: the runtime's default (on for CUDA, off for CPU)
    graph_mode: str = "max-autotune"
    freeze: bool = False
    inference: bool = True
    rnn_layers: bool = True
    train: bool = False
    train_modes: Sequence[str] | None = None
    train_batch: int = 20
    train_size: tuple[int, int] = (256, 256)
    train_precision: str | None = None
    train_repeats: int | None = None
    peak_tflops: float | None = None
    quick: bool = False
    command: str = "flowdeblur bench"


# ----------------------------------------------------------------------------- timers


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


# ----------------------------------------------------------------------------- measurements


def _reset_compiler() -> None:
    # Every configuration compiles the same inner function with new guards; without a reset
    # dynamo's recompile limit (8) would silently send later configurations back to eager.
    torch._dynamo.reset()


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")


def _compile_mode(mode: str, graph_mode: str) -> str:
    """The ``torch.compile`` mode a benchmark mode uses (where it compiles at all)."""
    return graph_mode if mode == "cudagraphs" else "default"


def _frames(batch: int, size: tuple[int, int], n: int, device: torch.device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch, 3, *size, generator=g).to(device) for _ in range(n)]


def _error_text(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"[:200]


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
    _check_mode(mode)
    _reset_compiler()
    runtime = Runtime.resolve(device, precision, RUNTIME_MODES[mode], purpose="report",
                              channels_last=channels_last)
    fast = runtime.prepare(model, compile_mode=_compile_mode(mode, graph_mode), freeze=freeze)
    frames = _frames(batch, size, max(1, model.in_frames), device)
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


def time_train_step(
    model: FlowDeblurNet,
    *,
    device: torch.device,
    precision: str,
    mode: str,
    batch: int,
    size: tuple[int, int],
    repeats: int,
    warmup: int,
    channels_last: bool | None = None,
    graph_mode: str = "max-autotune",
) -> Timing:
    """Time one training step: forward under autocast, Eq. 14 loss, backward, Adam.

    Works on a copy of ``model`` (train mode) with the trainer's Adam
    (:func:`flowdeblur.training.setup.build_optimizer`: the paper's betas 0.9/0.999 and weight
    decay 1e-6, the fused kernel on CPU and CUDA). ``compile``/``cudagraphs`` compile forward +
    loss (the backward comes from AOTAutograd); the optimizer step stays eager. ``graph`` is not
    supported here.
    """
    _check_mode(mode)
    if mode == "graph":
        raise UserError("mode 'graph' (manual CUDA graph capture) is for inference only")
    runtime = Runtime.resolve(device, precision, "eager", purpose="report",
                              channels_last=channels_last)
    _reset_compiler()
    net = copy.deepcopy(model).to(device).train()
    for m in net.modules():  # pin "auto" outside the (possibly compiled) step
        if isinstance(m, SpatialRNN) and m.backend == "auto":
            m.backend = resolve_backend("auto", device)
    if runtime.channels_last:
        net.to(memory_format=torch.channels_last)
    opt = build_optimizer(list(net.parameters()), OptimConfig(lr=1e-4), None)
    frame_t, frame_next, sharp = _frames(batch, size, 3, device)
    layout = torch.channels_last if runtime.channels_last else torch.contiguous_format

    def loss_fn(frame_t, frame_next, sharp):
        with runtime.autocast():
            out = net(frame_t.contiguous(memory_format=layout),
                      frame_next.contiguous(memory_format=layout))
            return eq14_loss(out, frame_t, frame_next, sharp).total

    compile_mode = _compile_mode(mode, graph_mode) if mode != "eager" else None
    graphs = compile_mode in CUDAGRAPH_COMPILE_MODES
    if compile_mode:
        loss_fn = torch.compile(loss_fn, mode=compile_mode, dynamic=False)

    def step():
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(frame_t, frame_next, sharp)
        loss.backward()
        opt.step()

    return time_callable(step, device=device, repeats=repeats, warmup=warmup)


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


# ----------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU model and cores, GPU names, library versions: what the report's header says."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _package_version("triton"),
        "numba": _package_version("numba"),
        "flowdeblur": __version__,
        "gpus": [],
        "cuda": torch.version.cuda,
        "cudnn": None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
    return info


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class DevicePlan:
    """What one device runs: :class:`BenchConfig` with that device's defaults filled in."""

    precisions: tuple[str, ...]
    modes: tuple[str, ...]
    train_modes: tuple[str, ...]
    repeats: int
    warmup: int
    train_precision: str
    train_repeats: int
    train_warmup: int
    train_batch: int
    train_size: tuple[int, int]


def _plan(config: BenchConfig, device: torch.device) -> DevicePlan:
    """The device's plan; UserError for a precision or mode it cannot run (before any timing)."""
    d = dict(DEFAULTS[device.type])
    if config.quick:
        d.update({k: v for k, v in QUICK.items() if k not in ("size",)})
    precisions = tuple(config.precisions) if config.precisions else d["precisions"]
    modes = tuple(config.modes) if config.modes else d["modes"]
    for p in precisions:
        Runtime.resolve(device, p, purpose="report")  # fp16 on CPU is a UserError
    train_modes = tuple(config.train_modes) if config.train_modes else tuple(
        m for m in modes if m != "graph")
    for m in modes + train_modes:
        _check_mode(m)
    return DevicePlan(
        precisions=precisions,
        modes=modes,
        train_modes=train_modes,
        repeats=config.repeats or d["repeats"],
        warmup=config.warmup if config.warmup is not None else d["warmup"],
        train_precision=config.train_precision or d["train_precision"],
        train_repeats=config.train_repeats or d["train_repeats"],
        train_warmup=d["train_warmup"],
        train_batch=QUICK["train_batch"] if config.quick else config.train_batch,
        train_size=tuple(QUICK["train_size"] if config.quick else config.train_size),
    )


def _standin_if(model: FlowDeblurNet, on: bool) -> contextlib.AbstractContextManager:
    return use_standin_rnn(model) if on else contextlib.nullcontext()


def _padded(size: tuple[int, int]) -> tuple[int, int]:
    return tuple(-(-s // PAD_MULTIPLE) * PAD_MULTIPLE for s in size)  # type: ignore[return-value]


def _check_config(config: BenchConfig) -> tuple[int, int]:
    """UserError for options no device can run; returns the frame size to time."""
    if config.variant not in VARIANTS:
        raise UserError(f"unknown variant {config.variant!r}; choose one of {sorted(VARIANTS)}")
    if config.rnn_backend not in BACKENDS:
        raise UserError(f"unknown RNN backend {config.rnn_backend!r}; use one of {BACKENDS}")
    if config.graph_mode not in CUDAGRAPH_COMPILE_MODES:
        raise UserError(f"graph mode must be one of {CUDAGRAPH_COMPILE_MODES}, "
                        f"got {config.graph_mode!r}")
    size = QUICK["size"] if config.quick else tuple(config.size)
    if min(size) < 1 or config.batch < 1:
        raise UserError(f"size and batch must be positive, got {size} and {config.batch}")
    return size


def _new_report(config: BenchConfig, model: FlowDeblurNet, size: tuple[int, int]) -> BenchReport:
    padded = _padded(size)
    report = BenchReport(
        command=config.command,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_info(),
        variant=config.variant,
        parameters=count_parameters(model),
        size=tuple(size),
        padded_size=padded,
        batch=config.batch,
        backends={},
        conv_gflop=count_conv_gflop(config.variant, padded, config.batch),
    )
    if config.quick:
        report.notes.append(f"--quick: {size[0]}x{size[1]} frames and 1-2 repeats; a smoke "
                            "test of the command, not a measurement.")
    return report


def _set_up_device(report: BenchReport, config: BenchConfig, model: FlowDeblurNet,
                   dev: torch.device, plan: DevicePlan) -> str:
    """Pin the model's RNN backend for ``dev`` and note the device's facts; returns the backend."""
    backend = resolve_backend(config.rnn_backend, dev)
    if not backend_available(backend, dev):
        raise UserError(f"spatial_rnn backend {backend!r} is not available on {dev.type}")
    report.backends[dev.type] = backend
    runtime = Runtime.resolve(dev, "fp32", purpose="report", channels_last=config.channels_last)
    report.layouts[dev.type] = "channels_last" if runtime.channels_last else "NCHW"
    model.set_rnn_backend(backend)
    if dev.type == "cpu":
        report.notes.append(
            f"CPU: median of {plan.repeats} run(s) after {max(plan.warmup, 1)} warm-up "
            f"(a frame takes seconds on few cores), {torch.get_num_threads()} torch threads;"
            " torch.compile is left out unless --modes asks for it (slow to compile here).")
    if dev.type == "cuda" and torch.backends.cudnn.allow_tf32:
        report.notes.append("CUDA fp32 rows: cuDNN may use TF32 tensor cores for "
                            "convolutions (torch.backends.cudnn.allow_tf32 = True, "
                            "PyTorch's default).")
    return backend


def _time_pair(row: InferenceResult | TrainResult, names: tuple[str, str], model: FlowDeblurNet,
               timer: Callable[[], Timing], log: Callable[[str], None]) -> None:
    """Time with the stand-in RNN (``names[0]``), then the real one (``names[1]``), into
    ``row``; a failure is recorded in ``row.error`` so the other configurations go on."""
    label = f"{row.device} {row.precision} {row.mode}" + (
        " train" if isinstance(row, TrainResult) else "")
    try:
        for which in names:
            with _standin_if(model, which == names[0]):
                t = timer()
            setattr(row, which, t)
            _free(torch.device(row.device))
            log(f"{label} {which}: {t.median_ms:.3f} ms (first call {t.first_call_s:.1f} s)")
    except UserError:
        raise
    except Exception as e:  # keep the other configurations' figures
        row.error = _error_text(e)
        log(f"{label}: FAILED {row.error}")
        traceback.print_exc(file=sys.stderr)
        _free(torch.device(row.device))


def _time_inference_rows(report: BenchReport, config: BenchConfig, model: FlowDeblurNet,
                         dev: torch.device, plan: DevicePlan, log: Callable[[str], None]) -> None:
    for precision in plan.precisions:
        for mode in plan.modes:
            row = InferenceResult(device=dev.type, precision=precision, mode=mode)
            report.inference.append(row)
            if mode in CUDA_ONLY_MODES and dev.type != "cuda":
                row.error = "needs CUDA"
                continue
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)

            def timer(precision=precision, mode=mode) -> Timing:
                return time_inference(
                    model, device=dev, precision=precision, mode=mode, size=report.size,
                    batch=config.batch, repeats=plan.repeats, warmup=plan.warmup,
                    channels_last=config.channels_last, graph_mode=config.graph_mode,
                    # Freezing is an inductor option: it applies where something is compiled.
                    freeze=config.freeze and RUNTIME_MODES[mode] == "compile")

            _time_pair(row, ("convs", "full"), model, timer, log)
            if dev.type == "cuda":
                row.peak_memory_gib = torch.cuda.max_memory_allocated(dev) / 2**30


def _time_rnn_row(report: BenchReport, *, dev: torch.device, precision: str, backend: str,
                  padded_size: tuple[int, int], batch: int, backward: bool, repeats: int,
                  warmup: int, log: Callable[[str], None]) -> None:
    try:
        shapes, timings = time_rnn_layers(
            device=dev, precision=precision, backend=backend, padded_size=padded_size,
            batch=batch, repeats=repeats, warmup=warmup, backward=backward)
        row = RnnLayerResult(dev.type, precision, backend, shapes, timings, backward=backward)
        log(f"{dev.type} {precision} rnn layers ({backend}"
            f"{', fwd+bwd' if backward else ''}): {row.total_s * 1e3:.3f} ms")
    except Exception as e:
        row = RnnLayerResult(dev.type, precision, backend, [], [], error=_error_text(e),
                             backward=backward)
        traceback.print_exc(file=sys.stderr)
    report.rnn_layers.append(row)
    _free(dev)


def _time_rnn_rows(report: BenchReport, config: BenchConfig, dev: torch.device,
                   plan: DevicePlan, backend: str, log: Callable[[str], None]) -> None:
    for precision in plan.precisions:
        _time_rnn_row(report, dev=dev, precision=precision, backend=backend,
                      padded_size=report.padded_size, batch=config.batch, backward=False,
                      repeats=plan.repeats, warmup=plan.warmup, log=log)
    if config.train:  # the same layers at training shapes, forward + backward
        _time_rnn_row(report, dev=dev, precision=plan.train_precision, backend=backend,
                      padded_size=_padded(plan.train_size), batch=plan.train_batch,
                      backward=True, repeats=plan.train_repeats, warmup=plan.train_warmup,
                      log=log)


def _time_train_rows(report: BenchReport, config: BenchConfig, model: FlowDeblurNet,
                     dev: torch.device, plan: DevicePlan, log: Callable[[str], None]) -> None:
    Runtime.resolve(dev, plan.train_precision, purpose="report")  # validates before timing
    for mode in plan.train_modes:
        row = TrainResult(dev.type, plan.train_precision, mode, plan.train_batch,
                          plan.train_size)
        report.train.append(row)
        if mode in CUDA_ONLY_MODES and dev.type != "cuda":
            row.error = "needs CUDA"
            continue
        if mode == "graph":
            row.error = "inference only"
            continue

        def timer(mode=mode) -> Timing:
            return time_train_step(
                model, device=dev, precision=plan.train_precision, mode=mode,
                batch=plan.train_batch, size=plan.train_size, repeats=plan.train_repeats,
                warmup=plan.train_warmup, channels_last=config.channels_last,
                graph_mode=config.graph_mode)

        _time_pair(row, ("standin", "full"), model, timer, log)


def run_benchmark(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchReport:
    """Run every measurement ``config`` asks for; failures of one configuration are recorded
    in its row (``error``) and the run goes on. ``log`` receives one line per measurement."""
    log = log or (lambda line: None)
    size = _check_config(config)
    devices = list(dict.fromkeys(resolve_device(name) for name in config.devices))
    plans = {dev: _plan(config, dev) for dev in devices}  # validate before timing

    torch.manual_seed(0)
    model = FlowDeblurNet(config.variant, rnn_backend=config.rnn_backend)
    report = _new_report(config, model, size)
    for dev in devices:
        plan = plans[dev]
        backend = _set_up_device(report, config, model, dev, plan)
        if config.inference:
            _time_inference_rows(report, config, model, dev, plan, log)
        if config.rnn_layers and VARIANTS[config.variant].rnn_mode == "rnn":
            _time_rnn_rows(report, config, dev, plan, backend, log)
        if config.train:
            _time_train_rows(report, config, model, dev, plan, log)
    return report


# ----------------------------------------------------------------------------- the report


def _ms_value(ms: float, digits: int = 2) -> str:
    return f"{ms:,.0f}" if abs(ms) >= 1000 else f"{ms:.{digits}f}"


def _ms(t: Timing | None, digits: int = 2) -> str:
    return "-" if t is None else _ms_value(t.median_s * 1e3, digits)


def _fps(fps: float) -> str:
    return f"{fps:,.1f}" if fps >= 10 else f"{fps:.2f}"


def _best_gpu_row(report: BenchReport, precision: str | None = None) -> InferenceResult | None:
    rows = [r for r in report.inference if r.device == "cuda" and r.full is not None
            and (precision is None or r.precision == precision)]
    return min(rows, key=lambda r: r.full.median_s, default=None)


def _hardware_lines(report: BenchReport, peak_tflops: float | None,
                    peak_part: str | None) -> list[str]:
    """The paper's Table III beside the fastest GPU rows, scaled by peak fp32 throughput."""
    gpus = report.machine.get("gpus") or []
    best = _best_gpu_row(report)
    if best is None or not gpus:
        return []
    gpu = gpus[0]
    if not peak_tflops:
        return [f"Paper (Table III): {PAPER_SECONDS_PER_FRAME:.2f} s per 720x1280 frame on a "
                f"{PAPER_GPU}. To compare per unit of hardware, pass --peak-tflops (this GPU's "
                "peak fp32 TFLOP/s without tensor cores, from its data sheet)."]
    part = peak_part or f"{gpu} (peak given on the command line)"
    hw = peak_tflops / PAPER_GPU_FP32_TFLOPS
    size_note = "" if tuple(report.size) == (720, 1280) else (
        f" (this run's frames are {report.size[0]}x{report.size[1]}, not 720x1280: "
        "the comparison is only indicative)")
    lines = [f"Paper (Table III): {PAPER_SECONDS_PER_FRAME:.2f} s per 720x1280 frame on a "
             f"{PAPER_GPU}.{size_note}"]
    candidates = [("fastest", best)]
    best_fp32 = _best_gpu_row(report, "fp32")
    if best_fp32 is not None and best_fp32 is not best:
        candidates.append(("fastest fp32", best_fp32))
    for label, row in candidates:
        speedup = PAPER_SECONDS_PER_FRAME / row.full.median_s
        lines.append(f"- {label} here: {row.full.median_ms:.2f} ms ({row.precision}, {row.mode})"
                     f" on {gpu}: {speedup:,.0f}x the paper's speed; {speedup / hw:,.1f}x per "
                     "unit of hardware.")
    lines.append(f"Hardware basis: peak fp32 without tensor cores: {PAPER_GPU} "
                 f"{PAPER_GPU_FP32_TFLOPS} TFLOP/s, {part} {peak_tflops} TFLOP/s, ratio "
                 f"{hw:.2f}. bf16 rows also use tensor cores, which the basis does not count, "
                 "so their per-hardware figure flatters them.")
    return lines


def _devices_text(report: BenchReport) -> str:
    names = []
    for dev in dict.fromkeys(r.device for r in report.inference):
        if dev == "cuda" and report.machine.get("gpus"):
            names.append(f"cuda = {report.machine['gpus'][0]}")
        elif dev == "cpu":
            names.append(f"cpu = {report.machine['cpu']} ({report.machine['usable_cores']} cores)")
        else:
            names.append(dev)
    return "; ".join(names)


def _header_lines(report: BenchReport) -> list[str]:
    m = report.machine
    gpus = ", ".join(m.get("gpus") or []) or "none"
    return [
        f"### flowdeblur bench, {report.date}",
        "",
        f"- command: `{report.command}`",
        f"- machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical "
        f"cores; GPU: {gpus}",
        f"- software: torch {m['torch']}, triton {m['triton'] or '-'}, numba {m['numba'] or '-'}"
        f", CUDA {m['cuda'] or '-'}, cuDNN {m['cudnn'] or '-'}, flowdeblur {m['flowdeblur']}",
        f"- model: `{report.variant}`, {report.parameters:,} parameters (biases included); "
        "RNN backend: " + ", ".join(f"{k} `{v}`" for k, v in report.backends.items())
        + "; layout: " + ", ".join(f"{k} {v}" for k, v in report.layouts.items()),
        f"- input: batch {report.batch}, {report.size[0]}x{report.size[1]} "
        f"(padded to {report.padded_size[0]}x{report.padded_size[1]})"
        + (f"; convolutions {report.conv_gflop:,.1f} GFLOP per forward"
           if report.conv_gflop else ""),
        "",
    ]


def _inference_row(report: BenchReport, r: InferenceResult) -> str:
    if r.error and r.full is None:
        return f"| {r.device} | {r.precision} | {r.mode} | {r.error} | | | | | | |"
    fps = _fps(report.batch / r.full.median_s) if r.full else "-"
    rnn = (_ms_value((r.full.median_s - r.convs.median_s) * 1e3)
           if r.full and r.convs else "-")
    ratio = f"{r.ratio:.2f}" if r.ratio else "-"
    firsts = [t.first_call_s for t in (r.convs, r.full) if t and t.first_call_s]
    first = f"{max(firsts):.1f}" if firsts else "-"
    mem = f"{r.peak_memory_gib:.2f}" if r.peak_memory_gib is not None else "-"
    return (f"| {r.device} | {r.precision} | {r.mode} | {_ms(r.convs)} | "
            f"{_ms(r.full)} | {ratio} | {rnn} | {fps} | {first} | {mem} |")


def _inference_lines(report: BenchReport) -> list[str]:
    if not report.inference:
        return []
    out = [
        f"Inference on {_devices_text(report)}, milliseconds per forward (median). "
        "Convs only: every spatial RNN replaced by `x.repeat(1, 4, 1, 1) * w`; "
        "RNN cost = full - convs only.",
        "",
        "| device | precision | mode | convs only (ms) | full network (ms) | full / convs "
        "| RNN cost (ms) | frames/s | first call (s) | peak mem (GiB) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    out += [_inference_row(report, r) for r in report.inference]
    rows = [r for r in report.inference if r.convs is not None]
    if report.conv_gflop and rows:
        fastest = min(rows, key=lambda r: r.convs.median_s)
        rate = report.conv_gflop / fastest.convs.median_s  # GFLOP/s
        rate_text = f"{rate / 1e3:,.1f} TFLOP/s" if rate >= 1e3 else f"{rate:,.1f} GFLOP/s"
        out += ["", f"Convolutions at their fastest ({fastest.device} {fastest.precision}"
                f" {fastest.mode}): {rate_text} achieved."]
    return out + [""]


def _rnn_lines(report: BenchReport) -> list[str]:
    out = []
    for backward in (False, True):
        rows = [r for r in report.rnn_layers if r.backward == backward]
        if not rows:
            continue
        shapes = next((r.shapes for r in rows if r.shapes), [])
        heads = [f"x {'x'.join(map(str, s))}" for s in shapes] or ["layers"]
        what = "forward + backward, training shapes" if backward else "forward"
        out += [
            f"The three RNN layers alone ({what}; contiguous inputs, gates 4x the channels), "
            "milliseconds (median):",
            "",
            "| device | precision | backend | " + " | ".join(heads) + " | together |",
            "|---|---|---|" + "--:|" * (len(heads) + 1),
        ]
        for r in rows:
            if r.error:
                out.append(f"| {r.device} | {r.precision} | {r.backend} | {r.error} |")
                continue
            cells = " | ".join(_ms(t, 3) for t in r.timings)
            out.append(f"| {r.device} | {r.precision} | {r.backend} | {cells} | "
                       f"{r.total_s * 1e3:.3f} |")
        out.append("")
    return out


def _train_lines(report: BenchReport) -> list[str]:
    if not report.train:
        return []
    t0 = report.train[0]
    out = [
        f"Training step (batch {t0.batch}, {t0.size[0]}x{t0.size[1]}, forward + Eq. 14 loss "
        "+ backward + Adam), milliseconds (median):",
        "",
        "| device | precision | mode | stand-in RNN (ms) | full network (ms) | full / "
        "stand-in |",
        "|---|---|---|--:|--:|--:|",
    ]
    for r in report.train:
        if r.error and r.full is None:
            out.append(f"| {r.device} | {r.precision} | {r.mode} | {r.error} | | |")
            continue
        ratio = f"{r.ratio:.2f}" if r.ratio else "-"
        out.append(f"| {r.device} | {r.precision} | {r.mode} | {_ms(r.standin)} | "
                   f"{_ms(r.full)} | {ratio} |")
    return out + [""]


def format_report(report: BenchReport, *, peak_tflops: float | None = None,
                  peak_part: str | None = None) -> str:
    """Markdown: header (command, machine, versions, date), then one table per measurement.

    ``peak_tflops``: the GPU's peak fp32 TFLOP/s without tensor cores; with it, the fastest
    GPU rows are set beside the paper's Table III per unit of hardware (``peak_part`` names
    the part the figure is for; default: the GPU's own name).
    """
    out = (_header_lines(report) + _inference_lines(report) + _rnn_lines(report)
           + _train_lines(report) + _hardware_lines(report, peak_tflops, peak_part))
    if report.notes:
        out += [""] + [f"Note: {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def write_json(report: BenchReport, path: str | os.PathLike) -> None:
    """Write ``report.to_json()`` to ``path``, whole or not at all."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    try:
        atomic_write_text(path, json.dumps(report.to_json(), indent=2) + "\n")
    except OSError as e:
        raise UserError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
