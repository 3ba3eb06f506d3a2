"""Scoring images already written by any method against their targets (``eval --outputs``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..data.readers import find_sequences
from ..errors import UserError
from ..media import IMAGE_EXTENSIONS, natural_key, read_image
from .metrics import quantize_8bit
from .results import EvalResult
from .scoring import Scorer, check_crop, progress_bar, size_text


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
    check_crop(crop_border)
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

    scorer = Scorer(crop_border, y_channel)
    with progress_bar(len(jobs), progress) as bar:
        for job in jobs:
            out = read_image(job.output).unsqueeze(0)
            out = quantize_8bit(out) if quantize else out
            target = read_image(job.target.path).unsqueeze(0)
            if tuple(out.shape) != tuple(target.shape):
                raise UserError(f"{job.output} is {size_text(out)} but its target "
                                f"{job.target.path} is {size_text(target)}")
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
