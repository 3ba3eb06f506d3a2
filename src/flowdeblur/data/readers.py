"""Readers for real blurry/sharp video datasets: DVD, GoPro, REDS, BSD and plain folders.

Folder layouts (``root`` may point at any of the levels marked *, see :func:`find_sequences`):

- ``dvd``: ``*<dir>/quantitative_datasets*/<video>*/{input,GT}/00000.jpg`` (Su et al. 2017).
  Split "test" = the 10 test videos of :data:`DVD_TEST_VIDEOS`, "train" = the other 61,
  "all" = every video.
- ``gopro`` / ``gopro_gamma``: ``*GOPRO_Large*/<split>*/<seq>*/{blur,blur_gamma,sharp}/*.png``
  (Nah et al. 2017); "gopro" reads ``blur``, "gopro_gamma" reads ``blur_gamma``.
  Splits: train, test.
- ``reds``: ``*root/<split>/<split>_blur/<seq>/*.png`` with ``<split>_sharp`` beside it
  (``root/<split>_blur`` also accepted). Splits: train, val; "test" reads val, because the
  public REDS test split has no sharp frames.
- ``bsd``: ``*root/<split>*/<seq>*/{Blur,Sharp}/RGB/*.png`` (Zhong et al. 2020).
  Splits: train, valid (alias val), test.
- ``folders``: ``*root/[<split>/]{blur,sharp}/<seq>/*.png|jpg``; the split level is optional,
  and images directly in ``blur/`` form one sequence named after ``root``.

Folder names match case-insensitively. Sharp frames are matched to blurry ones by file name
(then by stem, so ``0001.jpg`` may pair with ``0001.png``); frames sort in natural order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..media import list_images, natural_key, read_image
from .pairing import neighbours

LAYOUTS = ("dvd", "gopro", "gopro_gamma", "reds", "bsd", "folders")

#: The 10 DVD test videos (Su et al., CVPR 2017); the other 61 videos are for training.
DVD_TEST_VIDEOS = (
    "720p_240fps_2", "IMG_0003", "IMG_0021", "IMG_0030", "IMG_0031",
    "IMG_0032", "IMG_0033", "IMG_0037", "IMG_0039", "IMG_0049",
)

# Per-sequence layouts: where blur and sharp frames sit inside one sequence folder.
_PER_SEQUENCE = {
    "dvd": ("input", "GT"),
    "gopro": ("blur", "sharp"),
    "gopro_gamma": ("blur_gamma", "sharp"),
    "bsd": ("Blur/RGB", "Sharp/RGB"),
}

_SPLITS = {
    "dvd": ("train", "test", "all"),
    "gopro": ("train", "test"),
    "gopro_gamma": ("train", "test"),
    "reds": ("train", "val", "test"),
    "bsd": ("train", "valid", "val", "test"),
}


@dataclass
class Sequence:
    """One video of a dataset: blurry frames and their sharp frames, index by index."""

    name: str
    blur: list[Path]
    sharp: list[Path]

    def __len__(self) -> int:
        return len(self.blur)


def _child(folder: Path, relative: str) -> Path | None:
    """``folder/relative`` with each part matched case-insensitively; None if absent."""
    current = folder
    for part in relative.split("/"):
        exact = current / part
        if exact.is_dir():
            current = exact
            continue
        try:
            matches = [
                p for p in current.iterdir() if p.is_dir() and p.name.lower() == part.lower()
            ]
        except OSError:
            return None
        if not matches:
            return None
        current = sorted(matches)[0]
    return current


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )


def _pair(name: str, blur_dir: Path, sharp_dir: Path | None) -> Sequence | None:
    """Match the frames of one sequence; None if it has no blurry frames."""
    blur = list_images(blur_dir)
    if not blur:
        return None
    if sharp_dir is None:
        raise UserError(f"sequence {name}: no sharp folder beside {blur_dir}")
    sharp_files = list_images(sharp_dir)
    by_name = {p.name: p for p in sharp_files}
    by_stem: dict[str, Path] = {}
    for p in sharp_files:
        by_stem.setdefault(p.stem, p)
    sharp = []
    for b in blur:
        s = by_name.get(b.name) or by_stem.get(b.stem)
        if s is None:
            raise UserError(f"blurry frame {b} has no sharp frame {b.stem}.* in {sharp_dir}")
        sharp.append(s)
    return Sequence(name=name, blur=blur, sharp=sharp)


def _per_sequence(container: Path, blur_sub: str, sharp_sub: str) -> list[Sequence]:
    out = []
    for seq_dir in _subfolders(container):
        blur_dir = _child(seq_dir, blur_sub)
        if blur_dir is None:
            continue  # a stray folder, not a sequence
        seq = _pair(seq_dir.name, blur_dir, _child(seq_dir, sharp_sub))
        if seq is not None:
            out.append(seq)
    return out


def _is_sequence_dir(folder: Path, blur_sub: str, sharp_sub: str) -> bool:
    return _child(folder, blur_sub) is not None and _child(folder, sharp_sub) is not None


def _parallel(blur_root: Path, sharp_root: Path | None, name_if_flat: str) -> list[Sequence]:
    """``blur_root/<seq>/*`` with ``sharp_root/<seq>/*``; images directly in ``blur_root``
    form one sequence named ``name_if_flat``."""
    if sharp_root is None:
        raise UserError(f"no sharp folder beside {blur_root}")
    if list_images(blur_root):
        seq = _pair(name_if_flat, blur_root, sharp_root)
        return [seq] if seq is not None else []
    out = []
    for seq_dir in _subfolders(blur_root):
        sharp_dir = _child(sharp_root, seq_dir.name)
        if sharp_dir is None:
            raise UserError(
                f"sequence {seq_dir.name}: missing sharp folder {sharp_root / seq_dir.name}"
            )
        seq = _pair(seq_dir.name, seq_dir, sharp_dir)
        if seq is not None:
            out.append(seq)
    return out


def _containers(root: Path, layout: str, split: str) -> list[Path]:
    """Folders that may hold the sequences, most specific first."""
    if layout == "dvd":
        cands = [_child(root, "quantitative_datasets")]
        cands += [_child(sub, "quantitative_datasets") for sub in _subfolders(root)]
        return [c for c in cands if c is not None] + [root]
    split_dir = {"val": "valid"}.get(split, split) if layout == "bsd" else split
    cands = [_child(root, split_dir)]
    if layout in ("gopro", "gopro_gamma"):
        gopro = _child(root, "GOPRO_Large")
        cands.append(_child(gopro, split_dir) if gopro is not None else None)
    return [c for c in cands if c is not None] + [root]


def _find_per_sequence(root: Path, layout: str, split: str) -> list[Sequence]:
    blur_sub, sharp_sub = _PER_SEQUENCE[layout]
    if _is_sequence_dir(root, blur_sub, sharp_sub):  # root is one sequence
        seq = _pair(root.name, _child(root, blur_sub), _child(root, sharp_sub))
        return [seq] if seq is not None else []
    for container in _containers(root, layout, split):
        seqs = _per_sequence(container, blur_sub, sharp_sub)
        if seqs:
            break
    else:
        return []
    if layout == "dvd" and split != "all":
        test = {v.lower() for v in DVD_TEST_VIDEOS}
        seqs = [s for s in seqs if (s.name.lower() in test) == (split == "test")]
    return seqs


def _find_reds(root: Path, split: str) -> list[Sequence]:
    split = "val" if split == "test" else split
    for base in (_child(root, split), root):
        if base is None:
            continue
        blur_root = _child(base, f"{split}_blur")
        if blur_root is not None:
            return _parallel(blur_root, _child(base, f"{split}_sharp"), root.name)
    return []


def _find_folders(root: Path, split: str) -> list[Sequence]:
    for base in (_child(root, split), root):
        if base is None:
            continue
        blur_root = _child(base, "blur")
        if blur_root is not None:
            return _parallel(blur_root, _child(base, "sharp"), root.name)
    return []


_EXPECTED = {
    "dvd": "ROOT/quantitative_datasets/<video>/{input,GT}/*.jpg",
    "gopro": "ROOT/GOPRO_Large/<split>/<seq>/{blur,sharp}/*.png",
    "gopro_gamma": "ROOT/GOPRO_Large/<split>/<seq>/{blur_gamma,sharp}/*.png",
    "reds": "ROOT/<split>/<split>_blur/<seq>/*.png and <split>_sharp",
    "bsd": "ROOT/<split>/<seq>/{Blur,Sharp}/RGB/*.png",
    "folders": "ROOT/[<split>/]{blur,sharp}/<seq>/*.png",
}


def find_sequences(root: str | os.PathLike, layout: str, split: str = "test") -> list[Sequence]:
    """All sequences of a dataset split, each with its matched blurry and sharp frames.

    ``root`` may be the dataset's top folder, its parent, the split folder, or a single
    sequence folder (see the module docstring for each layout). Sequences without blurry
    frames are skipped; sequences come in natural order of their names.

    Raises:
        UserError: unknown layout or split, missing root, no sequence found, a blurry frame
            without its sharp frame (naming it), or a sequence without a sharp folder.
    """
    if layout not in LAYOUTS:
        raise UserError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout in _SPLITS and split not in _SPLITS[layout]:
        raise UserError(
            f"unknown split {split!r} for layout {layout}; choose one of "
            f"{', '.join(_SPLITS[layout])}"
        )
    root = Path(root)
    if not root.exists():
        raise UserError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"dataset root is not a folder: {root}")
    if layout in _PER_SEQUENCE:
        seqs = _find_per_sequence(root, layout, split)
    elif layout == "reds":
        seqs = _find_reds(root, split)
    else:
        seqs = _find_folders(root, split)
    if not seqs:
        raise UserError(
            f"no {split} sequences of layout {layout} under {root} (expected {_EXPECTED[layout]})"
        )
    return seqs


class PairedFrames(torch.utils.data.Dataset):
    """Frame pairs (t, t+1) of a real dataset, for training and evaluation.

    Every frame of every sequence appears once as frame t. Its partner ``frame_next`` is frame
    t+1, or t-1 for a sequence's last frame; a one-frame sequence pairs with itself. With
    ``frames=3``, ``frame_prev`` is frame t-1 (t+1 for the first frame). The network deblurs
    the first frame of the pair (:func:`flowdeblur.data.pairing.neighbours`; docs/DESIGN.md,
    "Frame pairing").

    Item ``i`` is a dict: ``frame_t``, ``frame_next``, ``sharp_t`` (3, H, W) float32 in [0, 1]
    [, ``frame_prev``], ``sequence`` (str), ``index`` (frame index t in its sequence),
    ``name`` (file name of the blurry frame t). Frames are read from disk on access.

    Args:
        root, layout, split: as :func:`find_sequences`.
        frames: 2 or 3 blurry frames per item.
        sequences: keep only these sequence names (UserError if one is unknown).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        layout: str,
        split: str = "train",
        *,
        frames: int = 2,
        sequences: list[str] | None = None,
    ):
        if frames not in (2, 3):
            raise UserError(f"frames must be 2 or 3, got {frames}")
        self.frames = frames
        seqs = find_sequences(root, layout, split)
        if sequences is not None:
            by_name = {s.name: s for s in seqs}
            unknown = [n for n in sequences if n not in by_name]
            if unknown:
                known = ", ".join(list(by_name)[:12]) + (" ..." if len(by_name) > 12 else "")
                raise UserError(f"unknown sequence(s) {', '.join(unknown)}; found: {known}")
            seqs = [by_name[n] for n in sequences]
        self.sequences = seqs
        self._items = [(si, t) for si, s in enumerate(seqs) for t in range(len(s))]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        si, t = self._items[i]
        seq = self.sequences[si]
        paired, other = neighbours(t, len(seq))
        paths = {
            "frame_t": seq.blur[t],
            "frame_next": seq.blur[paired],
            "sharp_t": seq.sharp[t],
        }
        if self.frames == 3:
            paths["frame_prev"] = seq.blur[other]
        item: dict = {key: read_image(path) for key, path in paths.items()}
        size = item["frame_t"].shape
        for key, img in item.items():
            if img.shape != size:
                raise UserError(
                    f"frame size mismatch in sequence {seq.name}: {paths[key]} is "
                    f"{img.shape[2]}x{img.shape[1]} but {paths['frame_t']} is {size[2]}x{size[1]}"
                )
        item.update(sequence=seq.name, index=t, name=seq.blur[t].name)
        return item
