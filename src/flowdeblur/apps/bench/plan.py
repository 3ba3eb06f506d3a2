"""What a benchmark run measures: its options, the per-device defaults, each device's plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...errors import UserError
from ...models import PAD_MULTIPLE, VARIANTS
from ...ops import BACKENDS
from ...runtime import Runtime
from ...runtime.fastpath import CUDAGRAPH_COMPILE_MODES
from .timing import check_mode

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


def plan_device(config: BenchConfig, device: torch.device) -> DevicePlan:
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
        check_mode(m)
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


def padded_frame_size(size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) rounded up to multiples of ``PAD_MULTIPLE``: the size the network runs at."""
    return tuple(-(-s // PAD_MULTIPLE) * PAD_MULTIPLE for s in size)  # type: ignore[return-value]


def check_config(config: BenchConfig) -> tuple[int, int]:
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
