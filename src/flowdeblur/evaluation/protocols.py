"""Evaluating a model on a dataset under one of the :data:`PROTOCOLS`.

:func:`evaluate_model` runs a network over a dataset (any layout of
:mod:`flowdeblur.data.readers`) and scores its outputs with the scorer of
:mod:`flowdeblur.evaluation.scoring`, the one
:func:`flowdeblur.evaluation.folders.evaluate_folders` uses for images already written by any
method, so every method is measured the same way.

Protocols (the DVD test set has 10 videos of 100 frames, 720x1280, some portrait 1280x720):

``release``
    What the authors' MATLAB test scripts (``testall.m``, ``psnrall.m``) do: portrait frames
    (H > W) are transposed to landscape before the network and back after; frames are
    ZERO-padded at the bottom/right to a multiple of 64 (720 -> 768) instead of the model's own
    replicate padding, and cropped back; each video's last frame is skipped (it has no
    successor); outputs are quantised to 8 bits (the script writes PNGs) and PSNR is averaged
    over all frames. Forces 8-bit quantisation. (The release scores PSNR only; the SSIM here
    is :func:`flowdeblur.evaluation.metrics.ssim`, the paper does not say which SSIM code it used.)
``all``
    Every frame; frame t is paired with t+1 and the last frame with its predecessor t-1
    (:func:`flowdeblur.data.pairing.neighbours`). The model pads as it always does
    (replicate). Quantisation as asked.
``su30``
    Su et al.'s (CVPR 2017) 30 frames per test video: ``floor(linspace(2, 97, 30))``, read as
    0-BASED frame numbers, i.e. the files ``00002.jpg, 00005.jpg, ..., 00097.jpg``. Why 0-based:
    [2, 97] is exactly the set of frames whose 5-frame input stack (t-2 .. t+2, Su et al.'s
    network) lies inside a 100-frame clip numbered 00000..00099; read 1-based (files
    00001..00096) the first selected frame would need frame -1. Su et al. did not publish the
    selection script, so this is our reading. Needs at least 99 frames per video (the last
    selected frame is paired with its successor). Pairing and padding as in ``all``.

The network runs through :class:`flowdeblur.runtime.Runtime` resolved for reporting: fp32
unless a precision is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.pairing import neighbours
from ..data.readers import Sequence, find_sequences
from ..errors import OptionError, UserError
from ..inference.ensemble import check_ensemble, self_ensemble
from ..media import read_image, write_image
from ..runtime import Runtime
from .metrics import quantize_8bit
from .results import EvalResult
from .scoring import Scorer, check_crop, progress_bar

PROTOCOLS = ("release", "all", "su30")

#: Su et al.'s 30 test frames per video, as 0-based frame numbers (see the module docstring).
SU30_FRAMES: tuple[int, ...] = tuple(int(i) for i in np.floor(np.linspace(2, 97, 30)))

#: The authors' scripts pad to a multiple of this with zeros (720 -> 768).
RELEASE_PAD_MULTIPLE = 64


def protocol_frames(protocol: str, num_frames: int, sequence: str = "") -> list[int]:
    """0-based indices of the frames ``protocol`` scores in a sequence of ``num_frames``."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol == "all":
        return list(range(num_frames))
    if protocol == "release":
        return list(range(num_frames - 1))
    if num_frames <= SU30_FRAMES[-1] + 1:
        raise UserError(
            f"protocol su30 scores frames up to {SU30_FRAMES[-1]:05d} paired with their "
            f"successor, but sequence {sequence!r} has only {num_frames} frames"
        )
    return list(SU30_FRAMES)


#: One network call: (frame_t, frame_next, frame_prev), each (1, 3, H, W) -> (1, 3, H, W)
#: float32 in [0, 1].
Deblur = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _network(model: torch.nn.Module, runtime: Runtime, ensemble: int = 1) -> Deblur:
    """The model's forward through ``runtime``, given only the frames its variant reads
    (frame_next from 2 input frames on, frame_prev with 3), averaged over ``ensemble``
    flipped copies (:mod:`flowdeblur.inference.ensemble`)."""
    forward = self_ensemble(runtime.prepare(model), ensemble)
    in_frames = model.in_frames

    def deblur(frame_t, frame_next, frame_prev):
        out = forward(frame_t, frame_next if in_frames >= 2 else None,
                      frame_prev if in_frames == 3 else None)
        return out.image.float().clamp_(0.0, 1.0)

    return deblur


def _release_handling(deblur: Deblur) -> Deblur:
    """``deblur`` wrapped in the authors' test-time handling (see ``release`` above):
    portrait frames transposed to landscape and back, zero padding to multiples of
    :data:`RELEASE_PAD_MULTIPLE` at the bottom and right, cropped back."""

    def prepare(f: torch.Tensor, portrait: bool) -> torch.Tensor:
        if portrait:
            f = f.transpose(-1, -2)
        ph, pw = (-f.shape[-2]) % RELEASE_PAD_MULTIPLE, (-f.shape[-1]) % RELEASE_PAD_MULTIPLE
        return F.pad(f, (0, pw, 0, ph), mode="constant", value=0.0)

    def release(frame_t, frame_next, frame_prev):
        h, w = frame_t.shape[-2:]
        portrait = h > w
        out = deblur(*(prepare(f, portrait) for f in (frame_t, frame_next, frame_prev)))
        if portrait:
            return out[..., :w, :h].transpose(-1, -2)
        return out[..., :h, :w]

    return release


class _FrameCache:
    """Reads the frames of one sequence at most once while indices move forward, as
    (1, 3, H, W) tensors on ``device`` (so the network and the metrics run there)."""

    def __init__(self, paths: list[Path], device: torch.device) -> None:
        self.paths = paths
        self.device = device
        self.frames: dict[int, torch.Tensor] = {}

    def get(self, i: int) -> torch.Tensor:
        if i not in self.frames:
            self.frames[i] = read_image(self.paths[i]).unsqueeze(0).to(self.device)
        return self.frames[i]

    def forget_before(self, i: int) -> None:
        for k in [k for k in self.frames if k < i]:
            del self.frames[k]


@dataclass
class _Options:
    """What evaluate_model does with each output, besides deblurring it."""

    quantize: bool
    save_dir: Path | None


def _check_model_options(protocol: str, quantize: bool, crop_border: int,
                         max_frames: int | None) -> None:
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol == "release" and not quantize:
        raise UserError("protocol release always quantises outputs to 8 bits; it cannot "
                        "score unquantised ones")
    check_crop(crop_border)
    if max_frames is not None and max_frames < 1:
        raise OptionError("max_frames", f"{{option}} must be at least 1, got {max_frames}")


@dataclass
class _SequencePlan:
    """A sequence and the frame indices the protocol scores in it."""

    sequence: Sequence
    indices: list[int]


def _scored_frames(root: str | os.PathLike, layout: str, split: str, protocol: str,
                   max_frames: int | None) -> list[_SequencePlan]:
    """What evaluate_model scores, sequence by sequence; UserError for unusable data."""
    sequences = find_sequences(root, layout, split=split)
    if not sequences:
        raise UserError(f"no {split} sequences found in {root} (layout {layout})")
    plan = []
    for seq in sequences:
        if not seq.sharp:
            raise UserError(f"sequence {seq.name!r} in {root} has no sharp frames to score against")
        if len(seq.sharp) != len(seq.blur):
            raise UserError(
                f"sequence {seq.name!r} has {len(seq.blur)} blurry but {len(seq.sharp)} sharp "
                "frames"
            )
        indices = protocol_frames(protocol, len(seq.blur), seq.name)
        plan.append(_SequencePlan(seq, indices[:max_frames] if max_frames else indices))
    return plan


def _score_sequence(seq: Sequence, indices: list[int], deblur: Deblur, device: torch.device,
                    options: _Options, scorer: Scorer, bar: tqdm) -> None:
    """Deblur and score the frames ``indices`` of ``seq``, in order."""
    blur, sharp = _FrameCache(seq.blur, device), _FrameCache(seq.sharp, device)
    for t in indices:
        paired, other = neighbours(t, len(seq.blur))
        blur.forget_before(min(t, other))
        out = deblur(blur.get(t), blur.get(paired), blur.get(other))
        out = quantize_8bit(out) if options.quantize else out.clamp(0.0, 1.0)
        target = sharp.get(t)
        sharp.forget_before(t)
        stem = Path(seq.blur[t]).stem
        scorer.add(seq.name, stem, t, out, target)
        if options.save_dir is not None:
            path = options.save_dir / seq.name / (stem + ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_image(path, out[0].cpu(), bits=8)
        bar.update(1)


def evaluate_model(
    model: torch.nn.Module,
    root: str | os.PathLike,
    layout: str = "dvd",
    *,
    protocol: str = "all",
    split: str = "test",
    device: str | torch.device = "cpu",
    precision: str = "auto",
    crop_border: int = 0,
    y_channel: bool = False,
    quantize: bool = True,
    save_dir: str | os.PathLike | None = None,
    progress: bool = True,
    max_frames: int | None = None,
    ensemble: int = 1,
) -> EvalResult:
    """Deblur a dataset's blurry frames with ``model`` and score them against the sharp ones.

    Args:
        model: a :class:`flowdeblur.models.FlowDeblurNet` (any variant; the neighbour frames it
            needs are picked as described in :data:`PROTOCOLS`).
        root, layout, split: the dataset, as :func:`flowdeblur.data.readers.find_sequences`.
        protocol: one of :data:`PROTOCOLS` (module docstring).
        device, precision: where and how the network runs (:meth:`Runtime.resolve` for
            reporting: precision "auto" is fp32; "bf16" and "fp16" run under autocast).
        crop_border, y_channel: scoring options of :func:`flowdeblur.evaluation.metrics.psnr`.
        quantize: round outputs to 8 bits before scoring (always on under ``release``).
        save_dir: also write every scored output as an 8-bit PNG to
            ``save_dir/<sequence>/<blur file stem>.png`` (so :func:`evaluate_folders` can
            re-score them).
        max_frames: score only the first K frames the protocol selects in each sequence.
        ensemble: average the outputs of this many flipped/transposed copies of each frame
            (1, 2, 4 or 8; :mod:`flowdeblur.inference.ensemble`).
    Returns:
        An :class:`EvalResult`.
    """
    _check_model_options(protocol, quantize, crop_border, max_frames)
    check_ensemble(ensemble)
    runtime = Runtime.resolve(device, precision, purpose="report")
    plan = _scored_frames(root, layout, split, protocol, max_frames)
    deblur = _network(model, runtime, ensemble)
    if protocol == "release":
        deblur = _release_handling(deblur)
    options = _Options(quantize, Path(save_dir) if save_dir is not None else None)
    scorer = Scorer(crop_border, y_channel)
    with progress_bar(sum(len(p.indices) for p in plan), progress) as bar:
        for p in plan:
            _score_sequence(p.sequence, p.indices, deblur, runtime.device, options, scorer, bar)
    settings = {
        "mode": "model",
        "data": str(root),
        "layout": layout,
        "split": split,
        "device": str(runtime.device),
        "precision": runtime.precision,
        "crop_border": crop_border,
        "y_channel": y_channel,
        "quantize": quantize,
        "max_frames": max_frames,
        "ensemble": ensemble,
        "model": dict(getattr(model, "config", {})),
    }
    return scorer.result(protocol, settings)

