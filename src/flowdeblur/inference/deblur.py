"""Deblurring with a trained network: pairing frames, tiling, streaming, precision, files.

A frame travels one way::

    FrameSource --(frames)--> deblur_frames --(images [, flows])--> VideoWriter / PNG folder

- :func:`deblur_image_pair` deblurs one frame given its neighbour.
- :func:`deblur_tiled` does the same tile by tile, blending overlaps with a raised-cosine
  window, for frames that do not fit in memory.
- :func:`deblur_frames` streams a sequence: frame t is paired with t+1, the last frame with
  t-1 (the paper's release skips it instead), a single frame with itself (flow guidance is
  then off, paper Fig. 6). Only a sliding window of frames is held, however long the video.
- :func:`deblur_video` drives files to files; the ``flowdeblur deblur`` command calls it.

Precision: ``"bf16"`` and ``"fp16"`` run the network under ``torch.autocast`` and return float32.
bf16 works on CPU too, though it is rarely faster there; fp16 on CPU raises :class:`UserError`
(CPU half-precision kernels are slow and lose accuracy, and bf16 is the better choice there).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models import FlowDeblurNet, pad_to_multiple

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Smallest tile: the network downsamples six times, so anything smaller is padded to 64 anyway.
MIN_TILE = 64

#: Largest default overlap between tiles, in pixels (see :func:`default_tile_overlap`).
MAX_DEFAULT_TILE_OVERLAP = 128

#: Tile size :func:`deblur_tiled` uses when given none (a multiple of 64: no padding waste).
DEFAULT_TILE = 256

SINGLE_FRAME_WARNING = (
    "the input has a single frame: it is paired with itself, so there is no motion to see "
    "and the flow guidance is off (paper Fig. 6); expect a weaker result than on video"
)


# ----------------------------------------------------------------------------- devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; checks that an explicit device exists."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise UserError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {str(dev)!r} asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"device {str(dev)!r} asked for, but only {torch.cuda.device_count()} CUDA "
                "device(s) exist"
            )
    return dev


def precision_context(
    precision: str, device: torch.device | str
) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op for ``"fp32"``)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise UserError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


# ----------------------------------------------------------------------------- one pair


def _needs(model: FlowDeblurNet) -> tuple[bool, bool]:
    """(needs frame_next, needs frame_prev) for the model's variant."""
    return model.in_frames >= 2, model.in_frames == 3


def _full_res_flow(flow_quarter: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """flow2 (N, F, Hp/4, Wp/4), pixels of 1/4 scale -> (N, 2, H, W) pixels, t -> neighbour."""
    flow = flow_quarter[:, :2].float()
    flow = F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False) * 4
    return flow[:, :, : size[0], : size[1]]


def _forward(
    model: FlowDeblurNet,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None,
    frame_prev: torch.Tensor | None,
    want_flow: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One network call on (N, 3, h, w) crops -> float32 image (and full-res flow)."""
    with torch.no_grad():
        out = model(frame_t, frame_next, frame_prev)
    image = out.image.float().clamp_(0, 1)
    flow = None
    if want_flow:
        if not out.flows:
            raise UserError(f"variant {model.variant!r} has no flow network, so no flow to save")
        flow = _full_res_flow(out.flows[0], tuple(frame_t.shape[-2:]))
    return image, flow


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering [0, size) with >= ``overlap`` shared."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    starts.append(size - tile)
    return starts


def _ramp_window(length: int, start: int, size: int, overlap: int) -> torch.Tensor:
    """1-D blending weights of one tile: a raised cosine over ``overlap`` pixels on each side
    that meets another tile, flat 1 elsewhere. Two facing ramps sum to 1 (cos^2 + sin^2),
    and every weight is > 0, so normalising by the summed weights is always defined."""
    w = torch.ones(length, dtype=torch.float32)
    ramp_len = min(overlap, length // 2)
    if ramp_len <= 0:
        return w
    i = torch.arange(ramp_len, dtype=torch.float32)
    ramp = 0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / ramp_len)
    if start > 0:
        w[:ramp_len] = ramp
    if start + length < size:
        w[length - ramp_len :] = torch.minimum(w[length - ramp_len :], ramp.flip(0))
    return w


def default_tile_overlap(tile: int) -> int:
    """Overlap used when none is given: a quarter of the tile, at most 128 pixels.

    The spatial RNNs propagate across the whole tile (a global receptive field) and the
    U-Net's 1/8-scale 5x5 convolutions see about +-70 pixels, so a tile's border pixels differ
    from an untiled run; the raised-cosine window hides them only under a generous overlap.
    A quarter of the tile costs about 1.8x the untiled work.
    """
    return min(MAX_DEFAULT_TILE_OVERLAP, tile // 4)


def check_tiling(tile: int | None, overlap: int | None) -> int | None:
    """Validate tiling options and return the overlap to use (None when not tiling).

    UserError unless ``tile`` is None or >= 64 and 0 <= ``overlap`` <= tile / 2;
    ``overlap=None`` picks :func:`default_tile_overlap`.
    """
    if tile is None:
        return None
    if tile < MIN_TILE:
        raise UserError(f"--tile {tile} is too small: tiles must be at least {MIN_TILE} pixels")
    if overlap is None:
        return default_tile_overlap(tile)
    if overlap < 0 or 2 * overlap > tile:
        raise UserError(
            f"--tile-overlap {overlap} must be between 0 and half the tile size ({tile // 2})"
        )
    return overlap


def deblur_tiled(
    model: FlowDeblurNet,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    *,
    frame_prev: torch.Tensor | None = None,
    batch: int = 1,
    return_flow: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Deblur ``frame_t`` tile by tile and blend the tiles with a raised-cosine window.

    The same tile of every input frame goes to the network, so the flow network compares
    like with like. Tiles are ``tile`` x ``tile`` (clipped to the frame), spaced so that
    neighbours share at least ``overlap`` pixels; the last row/column of tiles is shifted to
    end on the frame's border. Multiples of 64 waste nothing on padding. Runs on the tensors'
    device under the caller's autocast/no-grad context; ``batch`` tiles go through at once.

    Args:
        frame_t, frame_next, frame_prev: (N, 3, H, W) or (3, H, W) in [0, 1]
            (``frame_next`` unused by 'single_frame'; ``frame_prev`` only for 'bidirectional').
    Returns:
        (N, 3, H, W) or (3, H, W) float32 (and, with ``return_flow``, the blended flow
        t -> neighbour (N, 2, H, W) or (2, H, W) in pixels).
    """
    overlap = check_tiling(tile, overlap)
    single = frame_t.dim() == 3
    # Pad the whole frame as the untiled network would (replicate to a multiple of 64), so
    # the tiles on the bottom/right border see the same padding as an untiled run; without
    # this, those borders disagree by ~0.1 on a random-init network.
    size = tuple(frame_t.shape[-2:])

    def prep(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        return pad_to_multiple(x.unsqueeze(0) if single else x)

    frame_t, frame_next, frame_prev = prep(frame_t), prep(frame_next), prep(frame_prev)
    n, _, h, w = frame_t.shape
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    out = torch.zeros(n, 3, h, w, device=frame_t.device)
    flow_sum = torch.zeros(n, 2, h, w, device=frame_t.device) if return_flow else None
    weight_sum = torch.zeros(1, 1, h, w, device=frame_t.device)
    positions = [(y, x) for y in ys for x in xs]
    for first in range(0, len(positions), max(1, batch)):
        group = positions[first : first + max(1, batch)]

        def crops(frames: torch.Tensor | None, group=group) -> torch.Tensor | None:
            if frames is None:
                return None
            return torch.cat([frames[:, :, y : y + th, x : x + tw] for y, x in group])

        images, flows = _forward(
            model, crops(frame_t), crops(frame_next), crops(frame_prev), return_flow
        )
        for j, (y, x) in enumerate(group):
            win = (_ramp_window(th, y, h, overlap)[:, None] * _ramp_window(tw, x, w, overlap))
            win = win.to(out.device)
            out[:, :, y : y + th, x : x + tw] += images[j * n : (j + 1) * n] * win
            if flow_sum is not None:
                flow_sum[:, :, y : y + th, x : x + tw] += flows[j * n : (j + 1) * n] * win
            weight_sum[:, :, y : y + th, x : x + tw] += win
    out = (out / weight_sum)[:, :, : size[0], : size[1]]
    if flow_sum is not None:
        flow_sum = (flow_sum / weight_sum)[:, :, : size[0], : size[1]]
    if single:
        out = out[0]
        flow_sum = flow_sum[0] if flow_sum is not None else None
    return (out, flow_sum) if return_flow else out


def deblur_image_pair(
    model: FlowDeblurNet,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None = None,
    *,
    frame_prev: torch.Tensor | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    tile: int | None = None,
    tile_overlap: int | None = None,
    return_flow: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Deblur ``frame_t`` given its neighbour ``frame_next`` (t+1, or t-1 for a last frame).

    ``frame_next`` may be omitted: the frame is then paired with itself (no flow guidance).
    Moves ``model`` to ``device`` and puts it in eval mode.

    Args:
        frame_t, frame_next, frame_prev: (3, H, W) or (N, 3, H, W) floats in [0, 1], any H, W.
        tile: deblur in tiles of this size (see :func:`deblur_tiled`); None: whole frame.
    Returns:
        (3, H, W) or (N, 3, H, W) float32 in [0, 1] on ``frame_t``'s device (and with
        ``return_flow``, the flow t -> neighbour (2, H, W) or (N, 2, H, W) in pixels).
    """
    dev = resolve_device(device)
    tile_overlap = check_tiling(tile, tile_overlap)
    ctx = precision_context(precision, dev)
    model.to(dev).eval()
    need_next, need_prev = _needs(model)
    if need_next and frame_next is None:
        frame_next = frame_t
    if need_prev and frame_prev is None:
        frame_prev = frame_next
    single = frame_t.dim() == 3

    def prep(x: torch.Tensor | None, keep: bool) -> torch.Tensor | None:
        if x is None or not keep:
            return None
        if not x.is_floating_point():  # a uint8 frame would silently read as 0..255
            raise ValueError(f"frames must be float tensors in [0, 1], got dtype {x.dtype}")
        x = x.unsqueeze(0) if x.dim() == 3 else x
        return x.to(dev, torch.float32)

    ft, fn, fp = prep(frame_t, True), prep(frame_next, need_next), prep(frame_prev, need_prev)
    with ctx:
        if tile is None:
            image, flow = _forward(model, ft, fn, fp, return_flow)
        else:
            result = deblur_tiled(
                model, ft, fn, tile, tile_overlap, frame_prev=fp, return_flow=return_flow
            )
            image, flow = result if return_flow else (result, None)
    image = image.to(frame_t.device)
    flow = flow.to(frame_t.device) if flow is not None else None
    if single:
        image = image[0]
        flow = flow[0] if flow is not None else None
    return (image, flow) if return_flow else image


# ----------------------------------------------------------------------------- streams


def _check_stream_frame(index: int, frame: torch.Tensor, size: tuple[int, int] | None) -> None:
    if not isinstance(frame, torch.Tensor) or frame.dim() != 3 or frame.shape[0] != 3:
        shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
        raise ValueError(f"frame {index} must be a (3, H, W) tensor, got {shape}")
    if not frame.is_floating_point():  # a uint8 frame would silently read as 0..255
        raise ValueError(f"frame {index} must be a float tensor in [0, 1], got {frame.dtype}")
    if size is not None and tuple(frame.shape[-2:]) != size:
        raise UserError(
            f"frame {index} is {frame.shape[-1]}x{frame.shape[-2]} but the first frame is "
            f"{size[1]}x{size[0]} (width x height); all frames must have the same size"
        )


def _triples(
    frames: Iterable[torch.Tensor],
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(frame t, its pairing neighbour, the other neighbour) with a window of three frames.

    Neighbour = t+1, or t-1 for the last frame, or t itself for a one-frame input; the other
    neighbour (used by 'bidirectional' as t-1) mirrors at the ends the same way.
    """
    it = iter(frames)
    size = None
    index = 0

    def pull() -> torch.Tensor | None:
        nonlocal size, index
        frame = next(it, None)
        if frame is None:
            return None
        _check_stream_frame(index, frame, size)
        size = tuple(frame.shape[-2:])
        index += 1
        return frame

    prev, cur = None, pull()
    if cur is None:
        return
    nxt = pull()
    if nxt is None:
        warnings.warn(SINGLE_FRAME_WARNING, UserWarning, stacklevel=3)
    while cur is not None:
        after = nxt if nxt is not None else (prev if prev is not None else cur)
        before = prev if prev is not None else after
        yield cur, after, before
        prev, cur, nxt = cur, nxt, (pull() if nxt is not None else None)


def deblur_frames(
    model: FlowDeblurNet,
    frames: Iterable[torch.Tensor],
    *,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    batch: int = 1,
    tile: int | None = None,
    tile_overlap: int | None = None,
    return_flow: bool = False,
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Deblur every frame of a sequence, lazily: a generator over the deblurred frames.

    Frame t is paired with t+1; the last frame with t-1; a one-frame input with itself (with a
    warning: the flow guidance is then off). 'bidirectional' models also get t-1 (mirrored at
    the ends); 'single_frame' ones see frame t only. Holds at most ``batch + 2`` input frames,
    so memory stays bounded however long the input is. Moves ``model`` to ``device``.

    Args:
        frames: iterable of (3, H, W) float tensors in [0, 1], all the same size.
        batch: pairs (or, with ``tile``, tiles) per network call.
        tile, tile_overlap: see :func:`deblur_tiled`; None deblurs whole frames.
        return_flow: also yield the estimated flow t -> neighbour, (2, H, W) in pixels.
    Yields:
        (3, H, W) float32 in [0, 1] on the input frame's device, one per input frame, in
        order (or ``(image, flow)`` tuples with ``return_flow``).
    """
    if batch < 1:
        raise UserError(f"--batch must be at least 1, got {batch}")
    tile_overlap = check_tiling(tile, tile_overlap)
    dev = resolve_device(device)
    ctx = precision_context(precision, dev)
    model.to(dev).eval()
    need_next, need_prev = _needs(model)
    if return_flow and model.flownet is None:
        raise UserError(f"variant {model.variant!r} has no flow network, so no flow to save")

    def run(group: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
        home = group[0][0].device

        def stack(k: int, keep: bool = True) -> torch.Tensor | None:
            if not keep:
                return None
            return torch.stack([g[k] for g in group]).to(dev, torch.float32)

        ft, fn, fp = stack(0), stack(1, need_next), stack(2, need_prev)
        with ctx:
            if tile is None:
                images, flows = _forward(model, ft, fn, fp, return_flow)
            else:
                result = deblur_tiled(
                    model, ft, fn, tile, tile_overlap, frame_prev=fp, batch=batch,
                    return_flow=return_flow,
                )
                images, flows = result if return_flow else (result, None)
        images = images.to(home)
        flows = flows.to(home) if flows is not None else None
        for i in range(len(group)):
            yield (images[i], flows[i]) if return_flow else images[i]

    def generate():
        # With tiles, ``batch`` counts tiles of one frame, so frames go one at a time.
        per_call = 1 if tile is not None else batch
        group: list = []
        for triple in _triples(frames):
            group.append(triple)
            if len(group) == per_call:
                yield from run(group)
                group = []
        if group:
            yield from run(group)

    return generate()


# ----------------------------------------------------------------------------- files


@dataclass
class DeblurResult:
    """What :func:`deblur_video` did: where, how many frames, how fast, and any caveats."""

    output: Path
    kind: str  # "video", "images" (a folder of PNGs) or "image" (one file)
    num_frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else float("inf")


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_path(
    output: str | os.PathLike, inputs: Sequence[str | os.PathLike], what: str = "OUTPUT"
) -> None:
    """UserError if writing ``output`` could touch an input: the same path, a path inside an
    input folder, or a folder that holds input frames (the PNGs could replace them)."""
    out = _resolved(output)
    for given in inputs:
        src = _resolved(given)
        if out == src:
            raise UserError(f"{what} {output} is the input {given}; choose another name")
        if src.is_dir() and _is_within(out, src):
            raise UserError(
                f"{what} {output} is inside the input folder {given}; choose a path outside it"
            )
        if src.is_file() and out == src.parent:
            raise UserError(
                f"{what} {output} is the folder that holds the input {given}; its frames could "
                "be overwritten: choose another folder"
            )


def _check_free(path: Path, overwrite: bool, what: str) -> None:
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return  # an empty folder is as good as none
    if not overwrite:
        raise UserError(f"{what} {path} already exists; pass --overwrite to replace it")


def _temp_dir_beside(path: Path) -> Path:
    """A new hidden folder next to ``path`` (same file system, so a rename publishes it).
    Made with mkdir rather than mkdtemp so that it gets the user's usual permissions."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                tmp.mkdir()
                return tmp
            except FileExistsError:
                continue
    except OSError as e:
        raise UserError(f"cannot write beside {path}: {e.strerror or e}") from None
    raise UserError(f"cannot create a temporary folder beside {path}")


def _publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder to ``final``: one rename when ``final`` is absent or
    empty, else file by file into it (each file replaced whole, never half-written)."""
    if final.exists() and not final.is_dir():
        if final.is_file():
            final.unlink()
        else:
            raise UserError(f"cannot replace {final}: not a file or folder")
    if not final.exists() or not any(final.iterdir()):
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
        return
    for item in sorted(tmp.iterdir()):
        os.replace(item, final / item.name)
    tmp.rmdir()


def _output_names(source, count: int) -> list[str]:
    """PNG names for the outputs: the input's stem for image frames, a number for video."""
    if source.names is None:
        return [f"{i:06d}.png" for i in range(count)]
    stems = [Path(n).stem for n in source.names]
    if len(set(stems)) == len(stems):
        return [s + ".png" for s in stems]
    # 'a.jpg' and 'a.png' side by side: keep the full name so outputs do not collide.
    return [n + ".png" for n in source.names]


def _load_default_model() -> FlowDeblurNet:
    from ..weights import load_pretrained

    return load_pretrained()


def deblur_video(
    input: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    model: FlowDeblurNet | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    batch: int = 1,
    tile: int | None = None,
    tile_overlap: int | None = None,
    crf: int = 18,
    lossless: bool = False,
    fps: float | None = None,
    bits: int = 8,
    side_by_side: bool = False,
    save_flow: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> DeblurResult:
    """Deblur a video file, a folder of frames or a list of image files, streaming.

    Output by name: a video extension (.mp4, .mkv, .mov, .avi, ...) writes a video; an image
    extension writes one image (single-frame inputs only); anything else a folder of PNGs, one
    per input frame (named after the input frames, or 000000.png... for a video).

    Video output keeps the frame count, the timestamps (pts and time base, so also the fps),
    the rotation metadata and the audio (copied) of a video input. It is H.264 (``crf``:
    0 best .. 51 worst, 18 visually lossless); yuv420p needs even sizes, so an odd height or
    width is padded by one replicated pixel (a note says so); ``lossless=True`` stores exact
    RGB at the exact size instead (FFV1 for .mkv, else libx264rgb at crf 0).

    Nothing is written under the real names until everything succeeded (temporary names,
    then renames); on any failure the temporaries are removed. OUTPUT may not be an input,
    lie inside an input folder, or (unless ``overwrite``) exist already.

    Args:
        input: a path, or a list of image paths.
        model: the network; None loads the shipped weights
            (:func:`flowdeblur.weights.load_pretrained`).
        device, precision, batch, tile, tile_overlap: see :func:`deblur_frames`.
        fps: frame rate of a video made from images (default 30); ignored for video inputs.
        bits: 8 or 16, bit depth of PNG outputs.
        side_by_side: write input | output (twice as wide).
        save_flow: also write the estimated flow t -> neighbour, colour-coded with
            :func:`flowdeblur.viz.flow_to_color`, one PNG per frame into this folder.
        progress: show a tqdm progress bar (frames/s) on stderr.
    Returns:
        A :class:`DeblurResult`.
    """
    from ..media.video import FrameSource, VideoWriter, is_image_path, is_video_path, write_image
    from ..viz import flow_to_color
    from ..viz import side_by_side as beside

    inputs = [input] if isinstance(input, (str, os.PathLike)) else list(input)
    if not inputs:
        raise UserError("no input given")
    output = Path(output)
    flow_dir = Path(save_flow) if save_flow is not None else None
    # Cheap checks first, so a mistake costs nothing and writes nothing.
    if batch < 1:
        raise UserError(f"--batch must be at least 1, got {batch}")
    if bits not in (8, 16):
        raise UserError(f"--bits must be 8 or 16, got {bits}")
    if not 0 <= crf <= 51:
        raise UserError(f"--crf must be between 0 and 51, got {crf}")
    if fps is not None and not fps > 0:
        raise UserError(f"--fps must be positive, got {fps}")
    tile_overlap = check_tiling(tile, tile_overlap)
    dev = resolve_device(device)
    precision_context(precision, dev)
    check_output_path(output, inputs)
    if flow_dir is not None:
        check_output_path(flow_dir, inputs, what="--save-flow folder")
        if _resolved(flow_dir) == _resolved(output):
            raise UserError(f"--save-flow folder {flow_dir} is OUTPUT; choose another folder")
    kind = "video" if is_video_path(output) else "image" if is_image_path(output) else "images"
    _check_free(output, overwrite, "OUTPUT")
    if flow_dir is not None:
        _check_free(flow_dir, overwrite, "--save-flow folder")

    source = FrameSource(inputs[0] if len(inputs) == 1 else inputs)
    count = len(source)
    if kind == "image" and count != 1:
        raise UserError(
            f"OUTPUT {output} names one image but the input has {count} frames; give a folder "
            "or a video name (.mp4, .mkv, ...)"
        )
    if model is None:
        model = _load_default_model()
    if flow_dir is not None and model.flownet is None:
        raise UserError(f"variant {model.variant!r} has no flow network, so no flow to save")

    notes: list[str] = []
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        temps: list[Path] = []

        def cleanup() -> None:
            for t in temps:
                shutil.rmtree(t, ignore_errors=True)

        stack.callback(cleanup)  # on success the temporaries are renamed away first
        writer = None
        png_dir = None
        if kind == "video":
            width = source.width * (2 if side_by_side else 1)
            info = source.info
            codec_options = {}
            if lossless:
                codec = "ffv1" if output.suffix.lower() == ".mkv" else "libx264rgb"
                codec_options = {"codec": codec, "crf": 0}
            else:
                codec_options = {"codec": "libx264", "crf": crf}
            writer = stack.enter_context(
                VideoWriter(
                    output,
                    fps=info.fps if info is not None else (fps or 30),
                    width=width,
                    height=source.height,
                    rotation=info.rotation if info is not None else 0,
                    audio_from=inputs[0] if info is not None and info.has_audio else None,
                    time_base=info.time_base if info is not None else None,
                    **codec_options,
                )
            )
            if writer.padded:
                notes.append(
                    f"padded {width}x{source.height} to {writer.output_width}x"
                    f"{writer.output_height} by one replicated pixel (H.264 yuv420p needs even "
                    "sizes); use --lossless to keep the exact size"
                )
                warnings.warn(notes[-1], UserWarning, stacklevel=2)
        elif kind == "images":
            png_dir = _temp_dir_beside(output)
            temps.append(png_dir)
        else:  # one image file: written inside a temporary folder, then moved
            png_dir = _temp_dir_beside(output)
            temps.append(png_dir)
        flow_tmp = None
        if flow_dir is not None:
            flow_tmp = _temp_dir_beside(flow_dir)
            temps.append(flow_tmp)
        names = [output.name] if kind == "image" else _output_names(source, count)

        # Per-frame facts waiting for the frame's output: bounded by the window of
        # deblur_frames (batch + 2 frames), never the whole video.
        pending_pts: deque[int | None] = deque()
        pending_inputs: deque[torch.Tensor] = deque()

        def frames() -> Iterator[torch.Tensor]:
            for _, _, frame, pts in source.iterate_with_pts():
                pending_pts.append(pts)
                if side_by_side:
                    pending_inputs.append(frame)
                yield frame

        stream = deblur_frames(
            model, frames(), device=dev, precision=precision, batch=batch, tile=tile,
            tile_overlap=tile_overlap, return_flow=flow_tmp is not None,
        )
        from tqdm import tqdm

        bar = stack.enter_context(
            tqdm(total=count, unit="frame", disable=not progress, dynamic_ncols=True)
        )
        last_pts: int | None = None
        keep_pts = True
        done = 0
        for i, item in enumerate(stream):
            image, flow = item if flow_tmp is not None else (item, None)
            pts = pending_pts.popleft()
            if side_by_side:
                image = beside(pending_inputs.popleft(), image)
            name = names[i] if i < len(names) else f"{i:06d}.png"
            if writer is not None:
                # Keep the source's timestamps; if one is missing or out of order, let the
                # writer space the remaining frames by the nominal frame duration.
                keep_pts = keep_pts and pts is not None and (last_pts is None or pts > last_pts)
                writer.write(image, pts=pts if keep_pts else None)
                last_pts = pts
            else:
                write_image(png_dir / name, image, bits=bits)
            if flow is not None:
                write_image(flow_tmp / name, flow_to_color(flow))
            done += 1
            bar.update(1)
        bar.close()
        # Everything is complete: put the outputs in place (the video first, since its
        # close() can still fail while flushing the encoder).
        if writer is not None:
            writer.close()
        elif kind == "images":
            _publish_dir(png_dir, output)
        else:
            if output.is_dir():
                raise UserError(f"OUTPUT {output} is a folder, not an image file")
            os.replace(png_dir / output.name, output)
        if flow_tmp is not None:
            _publish_dir(flow_tmp, flow_dir)
    return DeblurResult(
        output=output, kind=kind, num_frames=done, seconds=time.perf_counter() - start,
        notes=notes,
    )
