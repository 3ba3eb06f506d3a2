"""Scoring deblurred videos: a model on a dataset, or two folders of images.

Two entry points, one scorer, so every method is measured the same way:

- :func:`evaluate_model` runs a network over a dataset (any layout of
  :mod:`flowdeblur.data.readers`) under one of the :data:`PROTOCOLS`;
- :func:`evaluate_folders` scores images already written by any method against their targets.

Per frame: PSNR and SSIM (:mod:`flowdeblur.evaluation.metrics`; RGB or Y, optional border
crop). Per pair of consecutive scored frames: the temporal error
(:func:`flowdeblur.evaluation.metrics.temporal_error`, ``mean |(o_t - o_{t-1}) - (g_t -
g_{t-1})|``, a flow-free flicker measure in [0, 1] units).
Per sequence: the mean over its frames (pairs). Overall: the mean over ALL scored frames
(pairs), so long sequences weigh more, as the authors' ``psnrall.m`` averages its frame table.

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

import csv
import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.pairing import neighbours
from ..data.readers import Sequence, find_sequences
from ..errors import UserError
from ..inference.ensemble import check_ensemble, self_ensemble
from ..media import IMAGE_EXTENSIONS, natural_key, read_image, write_image
from ..media.atomic import atomic_write_text, check_can_create
from ..runtime import Runtime
from .metrics import psnr, quantize_8bit, ssim, temporal_error

PROTOCOLS = ("release", "all", "su30")

#: Su et al.'s 30 test frames per video, as 0-based frame numbers (see the module docstring).
SU30_FRAMES: tuple[int, ...] = tuple(int(i) for i in np.floor(np.linspace(2, 97, 30)))

#: The authors' scripts pad to a multiple of this with zeros (720 -> 768).
RELEASE_PAD_MULTIPLE = 64

METRICS = ("psnr", "ssim", "temporal_error")


# ----------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """Scores of one evaluation.

    per_sequence: sequence name -> {"psnr", "ssim", "temporal_error", "frames"} (means over the
        sequence's scored frames; temporal_error over its pairs of consecutive scored frames,
        NaN when there are none, e.g. under ``su30``).
    mean: {"psnr", "ssim", "temporal_error"}: means over all scored frames (pairs).
    protocol: the protocol name ("folders" for :func:`evaluate_folders`).
    frames: number of scored frames.
    settings: how the scores were made (crop, Y, quantisation, data, ...), for the record.
    per_frame: one {"sequence", "frame", "psnr", "ssim"} per scored frame, in order.
    """

    per_sequence: dict[str, dict[str, float]]
    mean: dict[str, float]
    protocol: str
    frames: int
    settings: dict[str, object] = field(default_factory=dict)
    per_frame: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready data; NaN and infinite values become None."""
        return _finite(
            {
                "protocol": self.protocol,
                "frames": self.frames,
                "mean": self.mean,
                "per_sequence": self.per_sequence,
                "settings": self.settings,
                "per_frame": self.per_frame,
            }
        )

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON text; also written (atomically) to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        if path is not None:
            _write_text(path, text)
        return text

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """One row per sequence, then a ``mean`` row; also written to ``path`` if given."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["sequence", "frames", *METRICS])
        rows = [(name, s) for name, s in self.per_sequence.items()]
        rows.append(("mean", {**self.mean, "frames": self.frames}))
        for name, s in rows:
            writer.writerow([name, int(s["frames"]), *(_csv_number(s[m]) for m in METRICS)])
        text = buf.getvalue()
        if path is not None:
            _write_text(path, text)
        return text

    def format_table(self) -> str:
        """A human-readable table: a header line with the settings, then one row per sequence."""
        s = self.settings
        what = "Y (BT.601)" if s.get("y_channel") else "RGB"
        quant = "outputs quantised to 8 bits" if s.get("quantize") else "no quantisation"
        lines = [
            f"protocol {self.protocol}: {self.frames} frames, {len(self.per_sequence)} "
            f"sequences; PSNR/SSIM on {what}, border crop {s.get('crop_border', 0)}, {quant}",
        ]
        width = max([len("sequence"), *(len(n) for n in self.per_sequence)]) + 2
        lines.append(f"{'sequence':<{width}}{'frames':>7}{'PSNR':>9}{'SSIM':>9}{'temporal':>10}")
        rows = list(self.per_sequence.items()) + [("mean", {**self.mean, "frames": self.frames})]
        for name, r in rows:
            if name == "mean":
                lines.append("-" * (width + 35))
            lines.append(
                f"{name:<{width}}{int(r['frames']):>7}{_fmt(r['psnr'], 3):>9}"
                f"{_fmt(r['ssim'], 4):>9}{_fmt(r['temporal_error'], 5):>10}"
            )
        if s.get("unscored_targets"):
            lines.append(f"({s['unscored_targets']} target images had no output; not scored)")
        return "\n".join(lines)


def _fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def check_result_path(path: str | os.PathLike, what: str = "result") -> None:
    """UserError unless a result file (JSON, CSV) can be written at ``path``: not a folder,
    in a folder that exists and can be written (checked before a long evaluation, and again
    when writing)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    if not path.resolve().parent.is_dir():
        raise UserError(f"{what} {path}: folder {path.parent} does not exist")
    check_can_create(path, what)


def _write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all, into a folder that must exist."""
    check_result_path(path)
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


# ----------------------------------------------------------------------------- scoring


@dataclass
class _Scored:
    """The last frame the scorer saw, kept for the temporal error of the next one."""

    sequence: str
    index: int
    output: torch.Tensor
    target: torch.Tensor


class _Scorer:
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
            raise UserError(
                f"{sequence}/{frame}: output is {_size(output)} but its target is {_size(target)}"
            )
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


def _size(x: torch.Tensor) -> str:
    return f"{x.shape[-1]}x{x.shape[-2]}"


def _progress(total: int, enabled: bool) -> tqdm:
    return tqdm(total=total, desc="eval", unit="frame", disable=not enabled, file=sys.stderr)


# ----------------------------------------------------------------------------- protocols


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
        raise UserError("protocol release quantises outputs to 8 bits; drop --no-quantize")
    if crop_border < 0:
        raise UserError(f"--crop must be >= 0, got {crop_border}")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames must be at least 1, got {max_frames}")


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
                    options: _Options, scorer: _Scorer, bar: tqdm) -> None:
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
    scorer = _Scorer(crop_border, y_channel)
    with _progress(sum(len(p.indices) for p in plan), progress) as bar:
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


# ----------------------------------------------------------------------------- folders


@dataclass
class _Target:
    """A ground-truth image: its sequence, its place in it, its file."""

    sequence: str
    index: int
    path: Path


@dataclass
class _Job:
    """An output image matched to its target."""

    key: str  # relative path without suffix
    output: Path
    target: _Target


def _scan_images(folder: Path) -> dict[str, Path]:
    """Relative path without suffix (POSIX) -> file, for every image under ``folder``.

    Symbolically linked folders are followed (a results folder assembled from links to each
    sequence is common), each real folder once; hidden files and folders (e.g. half-written
    temporaries) are skipped.
    """
    found: dict[str, Path] = {}
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(top) / name
            hidden = name.startswith(".")
            if hidden or path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in found:
                raise UserError(
                    f"{found[key]} and {path} differ only in extension; cannot tell which to "
                    "score"
                )
            found[key] = path
    return dict(sorted(found.items()))


def _sequence_of(key: str) -> str:
    """'seq/sub/frame' -> 'seq'; a flat 'frame' -> '.'."""
    head, sep, _ = key.partition("/")
    return head if sep else "."


def _folder_targets(tgt_root: Path, layout: str | None, split: str) -> dict[str, _Target]:
    """Target key -> target: the images under ``tgt_root`` (indexed in natural order within
    their sequence), or with ``layout`` that dataset's sharp frames keyed
    ``<sequence>/<frame stem>``."""
    targets: dict[str, _Target] = {}
    if layout is not None:
        for seq in find_sequences(tgt_root, layout, split=split):
            for i, path in enumerate(seq.sharp):
                targets[f"{seq.name}/{Path(path).stem}"] = _Target(seq.name, i, Path(path))
        return targets
    by_seq: dict[str, list[str]] = {}
    found = _scan_images(tgt_root)
    for key in found:
        by_seq.setdefault(_sequence_of(key), []).append(key)
    for seq, keys in by_seq.items():
        for i, key in enumerate(sorted(keys, key=natural_key)):
            targets[key] = _Target(seq, i, found[key])
    return targets


def evaluate_folders(
    output_dir: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    quantize: bool = False,
    layout: str | None = None,
    split: str = "test",
    progress: bool = False,
) -> EvalResult:
    """Score every image under ``output_dir`` against its counterpart under ``target_dir``.

    Matching is by relative path WITHOUT the extension (``seq/00001.png`` matches
    ``seq/00001.jpg``), so outputs written as PNG score against JPEG ground truth. The sequence
    of an image is its first-level subfolder ('.' for images directly in the folder). With
    ``layout`` (e.g. "dvd"), the targets are instead that dataset's sharp frames
    (``find_sequences(target_dir, layout, split)``), keyed ``<sequence>/<frame stem>``: the
    layout :func:`evaluate_model`'s ``save_dir`` writes.

    Every output needs a target (UserError naming the first one without); targets without an
    output are skipped and counted in ``settings["unscored_targets"]``. The temporal error
    pairs outputs whose targets are consecutive in their sequence (natural sort order).
    ``quantize`` rounds the outputs to 8 bits first (use it for 16-bit or float files).
    """
    out_root, tgt_root = Path(output_dir), Path(target_dir)
    for what, folder in (("outputs", out_root), ("targets", tgt_root)):
        if not folder.is_dir():
            raise UserError(f"{what} folder not found: {folder}")
    if crop_border < 0:
        raise UserError(f"--crop must be >= 0, got {crop_border}")
    outputs = _scan_images(out_root)
    if not outputs:
        raise UserError(f"no images found under {out_root}")
    targets = _folder_targets(tgt_root, layout, split)

    jobs = []
    for key, path in outputs.items():
        if key not in targets:
            where = f"{tgt_root} (layout {layout})" if layout else str(tgt_root)
            raise UserError(f"output {path} has no target {key}.* in {where}")
        jobs.append(_Job(key, path, targets[key]))
    # Sequences in natural order, frames in target order: the scorer needs increasing indices.
    jobs.sort(key=lambda j: (natural_key(j.target.sequence), j.target.index))

    scorer = _Scorer(crop_border, y_channel)
    with _progress(len(jobs), progress) as bar:
        for job in jobs:
            out = read_image(job.output).unsqueeze(0)
            out = quantize_8bit(out) if quantize else out
            target = read_image(job.target.path).unsqueeze(0)
            if tuple(out.shape) != tuple(target.shape):
                raise UserError(f"{job.output} is {_size(out)} but its target "
                                f"{job.target.path} is {_size(target)}")
            seq = job.target.sequence
            frame = job.key[len(seq) + 1 :] if job.key.startswith(seq + "/") else job.key
            scorer.add(seq, frame, job.target.index, out, target)
            bar.update(1)
    settings = {
        "mode": "folders",
        "outputs": str(out_root),
        "targets": str(tgt_root),
        "layout": layout,
        "crop_border": crop_border,
        "y_channel": y_channel,
        "quantize": quantize,
        "unscored_targets": len(targets) - len(jobs),
    }
    return scorer.result("folders", settings)
