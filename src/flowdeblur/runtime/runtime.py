""":class:`Runtime`: device, precision, layout and execution mode, resolved once per command.

``flowdeblur deblur``, ``demo``, ``eval`` and ``bench`` each resolve one runtime from their
options and run the network through :meth:`Runtime.prepare`, so the path ``bench`` times is the
path ``deblur`` runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UserError
from .device import (
    auto_mode,
    autocast_dtype,
    default_channels_last,
    resolve_device,
    resolve_precision,
)
from .fastpath import FastForward, prepare_for_inference

#: How the forward runs. "eager": op by op. "compile": ``torch.compile`` for the fixed frame
#: shape. "graph": the eager forward captured in one CUDA graph per frame shape (CUDA only).
MODES = ("eager", "compile", "graph")


@dataclass(frozen=True)
class Runtime:
    """Where and how the network runs; make one with :meth:`resolve`.

    device: a concrete ``torch.device`` (cpu or cuda[:N]).
    precision: "fp32", "bf16" or "fp16" (the last two under autocast, outputs float32), or
        "int8" (CPU: quantized convolutions, compiled; :mod:`flowdeblur.runtime.int8`).
    channels_last: weights and inputs in NHWC (tensor-core convolutions) instead of NCHW.
    mode: one of :data:`MODES`.
    mode_asked: the mode as given to :meth:`resolve` (:meth:`for_frames` redoes an "auto").
    freeze: a compiled forward folds the weights in as constants (on the CPU this lets
        inductor hand oneDNN prepacked weights); set by :meth:`resolve` for CPU compiles.
    """

    device: torch.device
    precision: str
    channels_last: bool
    mode: str
    freeze: bool = False
    mode_asked: str = field(default="auto", compare=False)  # not how it runs: not compared

    @classmethod
    def resolve(
        cls,
        device: str | torch.device = "auto",
        precision: str = "auto",
        mode: str = "auto",
        *,
        purpose: str = "deblur",
        channels_last: bool | None = None,
        frames: int | None = None,
    ) -> Runtime:
        """Resolve every ``"auto"`` and check the combination; UserError if impossible.

        device "auto": CUDA when available, else CPU. precision "auto": for ``purpose``
        "deblur", bf16 on CUDA and on CPUs with native bf16 (avx512_bf16 or amx_bf16 flags),
        else fp32; for "report" (evaluation, demo, benchmarks, golden outputs), fp32. mode
        "auto": :func:`~.device.auto_mode` (graph on CUDA for "deblur"; on a CPU with native
        bf16, compile for a "deblur" of ``frames`` >= 100 frames; else eager). channels_last
        None: on for CUDA, off for CPU.
        """
        dev = resolve_device(device)
        precision = resolve_precision(precision, dev, purpose)
        asked = mode
        if mode == "auto":
            mode = auto_mode(dev, precision, purpose, frames)
        if precision == "int8" and mode != "compile":
            raise UserError(f"precision int8 runs compiled; mode {mode!r} does not apply")
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; use auto or one of {', '.join(MODES)}")
        if mode == "graph" and dev.type != "cuda":
            raise UserError(f"mode 'graph' uses CUDA graphs, which need a CUDA device, not "
                            f"{dev.type}")
        if channels_last is None:
            channels_last = default_channels_last(dev)
        return cls(device=dev, precision=precision, channels_last=channels_last, mode=mode,
                   freeze=mode == "compile" and dev.type == "cpu", mode_asked=asked)

    def for_frames(self, frames: int, *, tiled: bool = False) -> Runtime:
        """This runtime for an input of ``frames`` frames: a mode asked as "auto" is chosen
        again knowing the length (and eager for a tiled run, whose tiles differ in shape)."""
        if self.mode_asked != "auto":
            return self
        mode = "eager" if tiled and self.precision != "int8" else \
            auto_mode(self.device, self.precision, "deblur", frames)
        return dataclasses.replace(self, mode=mode,
                                   freeze=mode == "compile" and self.device.type == "cpu")

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype; None for fp32."""
        return autocast_dtype(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for this precision on this device (a no-op for fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare(
        self,
        model: nn.Module,
        *,
        compile_mode: str = "default",
        freeze: bool | None = None,
        example_size: Sequence[int] | None = None,
    ) -> FastForward:
        """The fast path for ``model``: ``fast(frame_t, frame_next=None, frame_prev=None)``.

        (N, 3, H, W) float frames in [0, 1], any device -> a
        :class:`~flowdeblur.models.FlowDeblurOutput` on :attr:`device` with float32 ``image``
        (unclamped) and ``flows`` (gates left out), computed without gradients.

        In eager NCHW mode nothing about the weights changes, so ``model`` itself runs
        (moved to the device, eval mode; autocast casts its weights per call; cuDNN's global
        autotuning switch is left as it is). Otherwise a
        private copy runs, weights cast to the precision and laid out, compiled
        (``compile_mode``: a ``torch.compile`` mode; ``freeze``, default :attr:`freeze`,
        folds the weights in) or
        captured as a CUDA graph for each new frame shape.
        ``example_size`` (H, W) compiles or captures now rather than on the first call.
        """
        private = self.mode != "eager" or self.channels_last
        compile_arg: bool | str = compile_mode if self.mode == "compile" else False
        return prepare_for_inference(
            model, device=self.device, precision=self.precision,
            channels_last=self.channels_last, compile=compile_arg,
            cuda_graph=self.mode == "graph", freeze=self.freeze if freeze is None else freeze,
            example_size=example_size,
            # cuDNN's autotuning is a process-wide switch: set it for the fixed-shape fast
            # paths only, and leave it alone for a model run as it is.
            cudnn_benchmark=private, private_copy=private, full_output=True,
        )

    def describe(self) -> str:
        """One line, e.g. ``cuda:0 bf16 channels_last graph``."""
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"{self.device} {self.precision} {layout} {self.mode}"
