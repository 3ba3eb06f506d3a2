"""The one scorer of dataset and folder evaluation, so every method is measured the same way.

Per frame: PSNR and SSIM (:mod:`flowdeblur.evaluation.metrics`; RGB or Y, optional border
crop). Per pair of consecutive scored frames: the temporal error
(:func:`flowdeblur.evaluation.metrics.temporal_error`, ``mean |(o_t - o_{t-1}) - (g_t -
g_{t-1})|``, a flow-free flicker measure in [0, 1] units).
Per sequence: the mean over its frames (pairs). Overall: the mean over ALL scored frames
(pairs), so long sequences weigh more, as the authors' ``psnrall.m`` averages its frame table.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..errors import OptionError, UserError
from .metrics import psnr, ssim, temporal_error
from .results import EvalResult


@dataclass
class _Scored:
    """The last frame the scorer saw, kept for the temporal error of the next one."""

    sequence: str
    index: int
    output: torch.Tensor
    target: torch.Tensor


class Scorer:
    """Accumulates per-frame scores; frames of a sequence must arrive in increasing order."""

    def __init__(self, crop_border: int, y_channel: bool) -> None:
        self.crop_border = crop_border
        self.y_channel = y_channel
        self.per_frame: list[dict[str, object]] = []
        self.temporal: dict[str, list[float]] = {}
        self.order: list[str] = []
        self._last: _Scored | None = None

    def add(
        self, sequence: str, frame: str, index: int, output: torch.Tensor, target: torch.Tensor
    ) -> None:
        """Score one (1, 3, H, W) output against its target; ``index`` is its frame number."""
        if tuple(output.shape) != tuple(target.shape):
            raise UserError(f"{sequence}/{frame}: output is {size_text(output)} but its target is "
                            f"{size_text(target)}")
        opts = {"crop_border": self.crop_border, "y_channel": self.y_channel}
        try:
            p = float(psnr(output, target, **opts)[0])
            s = float(ssim(output, target, **opts)[0])
        except ValueError as e:  # image too small for the crop or the SSIM window
            raise UserError(f"{sequence}/{frame}: {e}") from None
        if sequence not in self.temporal:
            self.temporal[sequence] = []
            self.order.append(sequence)
        self.per_frame.append({"sequence": sequence, "frame": frame, "psnr": p, "ssim": s})
        last = self._last
        if last is not None and last.sequence == sequence and last.index == index - 1:
            t = temporal_error(last.output, output, last.target, target, **opts)
            self.temporal[sequence].append(float(t[0]))
        self._last = _Scored(sequence, index, output, target)

    def result(self, protocol: str, settings: dict[str, object]) -> EvalResult:
        """The :class:`EvalResult` of every frame added so far, under ``protocol``."""
        per_sequence: dict[str, dict[str, float]] = {}
        for name in self.order:
            rows = [r for r in self.per_frame if r["sequence"] == name]
            per_sequence[name] = {
                "psnr": _mean(r["psnr"] for r in rows),
                "ssim": _mean(r["ssim"] for r in rows),
                "temporal_error": _mean(self.temporal[name]),
                "frames": len(rows),
            }
        mean = {
            "psnr": _mean(r["psnr"] for r in self.per_frame),
            "ssim": _mean(r["ssim"] for r in self.per_frame),
            "temporal_error": _mean(t for ts in self.temporal.values() for t in ts),
        }
        return EvalResult(
            per_sequence=per_sequence,
            mean=mean,
            protocol=protocol,
            frames=len(self.per_frame),
            settings=settings,
            per_frame=self.per_frame,
        )


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return math.fsum(values) / len(values) if values else float("nan")


def size_text(x: torch.Tensor) -> str:
    """'WxH' of an image tensor (..., H, W), as messages name sizes."""
    return f"{x.shape[-1]}x{x.shape[-2]}"


def progress_bar(total: int, enabled: bool) -> tqdm:
    """A progress bar over ``total`` scored frames on stderr (hidden unless ``enabled``)."""
    return tqdm(total=total, desc="eval", unit="frame", disable=not enabled, file=sys.stderr)


def check_crop(crop_border: int) -> None:
    """OptionError naming ``crop_border`` unless it is >= 0."""
    if crop_border < 0:
        raise OptionError("crop_border", f"{{option}} must be >= 0, got {crop_border}")
