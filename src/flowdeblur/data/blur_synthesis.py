"""Blurry/sharp training pairs from sharp high-frame-rate footage, by frame averaging.

A camera's exposure integrates light over time; averaging N consecutive frames of a fast,
sharp recording approximates one exposure N times longer (the recipe of the GoPro dataset,
Nah et al. 2017, and DVD, Su et al. 2017). Light adds linearly, so the frames are decoded from
sRGB to linear intensity, averaged, and encoded back:

- ``curve="srgb"`` (default): the exact IEC 61966-2-1 sRGB transfer curve;
- ``curve="gamma"``: a pure power 2.2 (GoPro's ``blur_gamma`` folder);
- ``curve="none"``: average the sRGB values as they are (GoPro's ``blur`` folder).

The sharp target of a group is its middle frame, ``start + (N - 1) // 2``: the exact middle
for odd N, the earlier of the two middle frames for even N.

Output (readable by ``find_sequences(out_dir, "gopro")``, any split, and by
:class:`flowdeblur.data.readers.PairedFrames`)::

    OUT_DIR/<seq>/blur/000000.png     # group k -> 0000k.png
    OUT_DIR/<seq>/sharp/000000.png
    OUT_DIR/<seq>/synth.json          # the settings, for the record
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import OptionError, UserError
from ..media import FrameSource, write_image
from ..media.atomic import replace_path, temp_dir_beside

CURVES = ("srgb", "gamma", "none")


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] -> linear intensity (IEC 61966-2-1), any shape."""
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(y: torch.Tensor) -> torch.Tensor:
    """Linear intensity in [0, 1] -> sRGB-encoded values, any shape (inverse of the above)."""
    return torch.where(y <= 0.0031308, y * 12.92, 1.055 * y.clamp(min=0.0) ** (1 / 2.4) - 0.055)


def to_linear(x: torch.Tensor, curve: str = "srgb") -> torch.Tensor:
    """Decode display values to linear light with one of :data:`CURVES`."""
    if curve == "srgb":
        return srgb_to_linear(x)
    if curve == "gamma":
        return x.clamp(min=0.0) ** 2.2
    if curve == "none":
        return x
    raise UserError(f"unknown curve {curve!r}; choose one of {', '.join(CURVES)}")


def from_linear(y: torch.Tensor, curve: str = "srgb") -> torch.Tensor:
    """Encode linear light back to display values (inverse of :func:`to_linear`)."""
    if curve == "srgb":
        return linear_to_srgb(y)
    if curve == "gamma":
        return y.clamp(min=0.0) ** (1 / 2.2)
    if curve == "none":
        return y
    raise UserError(f"unknown curve {curve!r}; choose one of {', '.join(CURVES)}")


def average_frames(
    frames: torch.Tensor | Sequence[torch.Tensor], curve: str = "srgb"
) -> torch.Tensor:
    """Synthetic long exposure: mean of N frames in linear light.

    Args:
        frames: (N, 3, H, W) tensor or a sequence of N (3, H, W) tensors, sRGB in [0, 1].
        curve: one of :data:`CURVES`.
    Returns:
        (3, H, W) float32 in [0, 1].
    """
    items = list(frames.unbind(0)) if isinstance(frames, torch.Tensor) else list(frames)
    if not items or items[0].dim() != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else len(items)
        raise ValueError(f"expected N >= 1 frames of shape (3, H, W), got {shape}")
    # Accumulate in float64, one frame at a time: memory stays at one extra frame, and the
    # result does not depend on N or the summation order beyond float64 rounding.
    total = torch.zeros(items[0].shape, dtype=torch.float64, device=items[0].device)
    for frame in items:
        total += to_linear(frame.to(torch.float64), curve)
    return from_linear(total / len(items), curve).clamp_(0.0, 1.0).to(torch.float32)


def sharp_index(average: int) -> int:
    """Offset of a group's sharp target inside the group of ``average`` frames."""
    return (average - 1) // 2


def frame_groups(
    frames: Iterable[torch.Tensor], average: int, stride: int
) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """Group a stream of frames: yields (start index, [frame start .. start + average - 1])
    for start = 0, stride, 2 * stride, ... while a full group exists. Holds at most
    ``average`` frames in memory; frames between groups (stride > average) are skipped."""
    window: deque[torch.Tensor] = deque(maxlen=average)
    for i, frame in enumerate(frames):
        window.append(frame)
        start = i - average + 1
        if start >= 0 and start % stride == 0:
            yield start, list(window)


@dataclass
class SynthResult:
    """What :func:`synthesize_blur` wrote."""

    sequence_dir: Path
    num_pairs: int
    frames_used: int  # input frames up to the end of the last group


def _num_groups(num_frames: int, average: int, stride: int) -> int:
    return 0 if num_frames < average else (num_frames - average) // stride + 1


def _check_args(average: int, stride: int | None, curve: str, bits: int) -> int:
    if average < 1:
        raise OptionError("average", f"{{option}} must be at least 1, got {average}")
    stride = average if stride is None else stride
    if stride < 1:
        raise OptionError("stride", f"{{option}} must be at least 1, got {stride}")
    if curve not in CURVES:
        raise UserError(f"unknown curve {curve!r}; choose one of {', '.join(CURVES)}")
    if bits not in (8, 16):
        raise UserError(f"bits must be 8 or 16, got {bits}")
    return stride


def _check_output(out_dir: Path, seq_dir: Path, inputs: list[Path], overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output {out_dir} exists and is not a folder")
    if (seq_dir.exists() or seq_dir.is_symlink()) and not overwrite:
        # Other sequences of the dataset are left alone: synth adds one sequence at a time.
        raise UserError(
            f"sequence {seq_dir.name} already exists in {out_dir} (pass --overwrite to "
            "replace it)"
        )
    resolved_seq = seq_dir.resolve()
    for p in inputs:
        r = p.resolve()
        if r == out_dir.resolve() or r == resolved_seq or resolved_seq in r.parents:
            raise UserError(f"output {seq_dir} would overwrite the input {p}")


def synthesize_blur(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    average: int,
    stride: int | None = None,
    seq_name: str | None = None,
    curve: str = "srgb",
    bits: int = 8,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthResult:
    """Average groups of ``average`` sharp frames into a GoPro-style blurry/sharp dataset.

    Streams the input (at most ``average`` frames in memory) and writes
    ``out_dir/<seq>/{blur,sharp}/NNNNNN.png`` (module docstring). The sequence is first
    written to a hidden folder in ``out_dir`` and renamed into place when complete, so an
    interrupted run leaves nothing; the input is only read.

    Args:
        inputs: a video, a folder of frames, or a list of frame files (:class:`FrameSource`).
        out_dir: dataset folder; must be empty or absent unless ``overwrite``, which replaces
            ``out_dir/<seq>`` (only that folder) and so also lets several sequences share one
            ``out_dir``.
        average: N, the number of sharp frames per blurry frame (1 copies frames).
        stride: frames between group starts; default N (non-overlapping groups).
        seq_name: name of the sequence folder; default the input's file or folder name.
        curve: linearisation, one of :data:`CURVES`.
        bits: 8- or 16-bit PNGs.
        progress: show a tqdm bar on stderr.
    Raises:
        UserError: missing or unreadable input, bad option, fewer than N frames, non-empty
            ``out_dir`` without ``overwrite``, or an output that would overwrite the input.
    """
    stride = _check_args(average, stride, curve, bits)
    source = FrameSource(inputs)
    if isinstance(inputs, (str, os.PathLike)):
        input_paths = [Path(inputs)]
    else:
        input_paths = [Path(p) for p in inputs]
    seq_name = _sequence_name(seq_name, input_paths)
    total = len(source)
    if total < average:
        raise OptionError("average", f"{{option}} {average} needs at least {average} frames, input "
                          f"has {total}")

    out_dir = Path(out_dir)
    seq_dir = out_dir / seq_name
    _check_output(out_dir, seq_dir, input_paths, overwrite)
    made_out_dir = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {out_dir}: {e.strerror or e}") from e
    tmp = None
    try:
        tmp = temp_dir_beside(seq_dir)
        with tqdm(total=_num_groups(total, average, stride), unit="pair", desc=seq_name,
                  disable=not progress) as bar:
            result = _write_pairs(source, tmp, average, stride, curve, bits, bar.update)
        settings = {
            "source": [str(p) for p in input_paths],
            "average": average, "stride": stride, "curve": curve, "bits": bits,
            "sharp_offset": sharp_index(average), "pairs": result.num_pairs,
            "source_fps": str(source.fps) if source.fps is not None else None,
        }
        (tmp / "synth.json").write_text(json.dumps(settings, indent=2) + "\n")
        replace_path(tmp, seq_dir)  # an older sequence is removed only afterwards
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if made_out_dir:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    return SynthResult(sequence_dir=seq_dir, num_pairs=result.num_pairs,
                       frames_used=result.frames_used)


def _sequence_name(seq_name: str | None, input_paths: list[Path]) -> str:
    """``seq_name``, or the input's file or folder name; checked to be a plain folder name."""
    if seq_name is None:
        first = input_paths[0]
        seq_name = first.parent.name if len(input_paths) > 1 else (first.stem or first.name)
    if not seq_name or seq_name in (".", "..") or "/" in seq_name or os.sep in seq_name:
        raise OptionError("seq_name", f"{{option}} must be a plain folder name, got {seq_name!r}")
    return seq_name


def _write_pairs(source: FrameSource, folder: Path, average: int, stride: int, curve: str,
                 bits: int, advance) -> SynthResult:
    """Write ``folder/{blur,sharp}/NNNNNN.png`` for every full group of the stream; calls
    ``advance(1)`` after each pair. UserError if there was no full group."""
    (folder / "blur").mkdir()
    (folder / "sharp").mkdir()
    offset = sharp_index(average)
    count = used = 0
    frames = (frame for _, _, frame in source)
    for start, group in frame_groups(frames, average, stride):
        name = f"{count:06d}.png"
        write_image(folder / "blur" / name, average_frames(group, curve), bits=bits)
        write_image(folder / "sharp" / name, group[offset], bits=bits)
        count += 1
        used = start + average
        advance(1)
    if count == 0:  # the container's frame count was optimistic
        raise OptionError("average", f"{{option}} {average} needs at least {average} frames in "
                          "the input")
    return SynthResult(sequence_dir=folder, num_pairs=count, frames_used=used)
