"""Deblurring with a trained network: one pair, a stream of frames, files to files.

A frame travels one way::

    FrameSource --(frames)--> deblur_frames --(images [, flows])--> Output (video/folder/image)

- :func:`deblur_image_pair` deblurs one frame given its neighbour.
- :func:`deblur_frames` streams a sequence (pairing in :mod:`.stream`: frame t with t+1, the
  last frame with t-1, a single frame with itself). Only a sliding window of frames is held,
  however long the video.
- :func:`deblur_video` drives files to files; the ``flowdeblur deblur`` command calls it.

Device, precision and the fast path come from one :class:`~flowdeblur.runtime.Runtime`
(``"auto"``: bf16 on CUDA and on CPUs with native bf16, else fp32; on CUDA a stream's fixed
frame shape is captured once as a CUDA graph). Outputs are float32 whatever the precision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import OptionError, UserError
from ..media import FrameSource, is_image_path, rotate_flow_for_display, rotate_for_display
from ..media.atomic import TargetLock, check_can_create, remove_stale_temporaries
from ..media.images import check_image_bits
from ..media.video_writer import DEFAULT_CHROMA, DEFAULT_CRF
from ..models import FlowDeblurNet
from ..runtime import Runtime
from ..viz import flow_to_color
from ..viz import side_by_side as beside
from ..weights import load_pretrained
from . import memory
from .ensemble import check_ensemble, self_ensemble
from .forward import Deblurred, Forward, run_network
from .outputs import FolderOutput, Output, check_destinations, display_rotation, open_output
from .scene_cuts import is_scene_cut
from .stream import FrameTriple, as_frame, as_given, flow_as_given, frame_triples
from .tiling import check_tiling, deblur_tiles

__all__ = ["DeblurResult", "deblur_frames", "deblur_image_pair", "deblur_video"]

#: Frame rates a video made from images may have (a time-lapse at one frame in 1000 s up to a
#: high-speed camera); beyond them the container's time base cannot represent the frames.
MIN_FPS, MAX_FPS = 0.001, 10_000

# ----------------------------------------------------------------------------- shared steps


def _runtime(runtime: Runtime | None, device: str | torch.device, precision: str) -> Runtime:
    """``runtime`` if given (then ``device`` and ``precision`` must be left at "auto")."""
    if runtime is None:
        return Runtime.resolve(device, precision)
    if (device, precision) != ("auto", "auto"):
        raise ValueError("pass either runtime or device/precision, not both")
    return runtime


def _check_flow_wanted(model: FlowDeblurNet, want_flow: bool) -> None:
    if want_flow and model.flownet is None:
        raise UserError(f"variant {model.variant!r} has no flow network, so no flow to save")


def _deblur_batch(
    forward: Forward,
    frame_t: torch.Tensor,
    frame_next: torch.Tensor | None,
    frame_prev: torch.Tensor | None,
    *,
    tile: int | None,
    overlap: int | None,
    batch: int,
    want_flow: bool,
) -> Deblurred:
    """(N, 3, H, W) frames on the runtime's device -> :class:`Deblurred`, whole or in tiles."""
    if tile is None:
        return run_network(forward, frame_t, frame_next, frame_prev, want_flow=want_flow)
    return deblur_tiles(forward, frame_t, frame_next, frame_prev, tile=tile, overlap=overlap,
                        batch=batch, want_flow=want_flow)


# ----------------------------------------------------------------------------- one pair


def deblur_image_pair(
    model: FlowDeblurNet,
    frame_t: torch.Tensor | np.ndarray,
    frame_next: torch.Tensor | np.ndarray | None = None,
    *,
    frame_prev: torch.Tensor | np.ndarray | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    tile: int | None = None,
    tile_overlap: int | None = None,
    return_flow: bool = False,
    runtime: Runtime | None = None,
    ensemble: int = 1,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Deblur ``frame_t`` given its neighbour ``frame_next`` (t+1, or t-1 for a last frame).

    ``frame_next`` may be omitted: the frame is then paired with itself (no flow guidance).
    Moves ``model`` to the device and puts it in eval mode; runs without gradients. A single
    call runs eager and in NCHW whatever the runtime says: one pair amortises no weight copy
    or graph capture. The result has the form of ``frame_t``: tensors give tensors, an
    (H, W, 3) NumPy frame gives an (H, W, 3) array of its dtype (and an (H, W, 2) float32 flow).

    Args:
        frame_t, frame_next, frame_prev: (3, H, W) or (N, 3, H, W) floats in [0, 1], any H, W;
            or (H, W, 3) NumPy arrays (uint8, uint16, or float in [0, 1]).
        device, precision: see :meth:`flowdeblur.runtime.Runtime.resolve`; or pass a resolved
            ``runtime`` instead.
        tile: deblur in tiles of this size (see :func:`~.tiling.deblur_tiled`); None: whole.
        ensemble: average the outputs of this many flipped/transposed copies (1, 2, 4 or 8;
            :mod:`.ensemble`), each costing one forward.
    Returns:
        (3, H, W) or (N, 3, H, W) float32 in [0, 1] on ``frame_t``'s device (and with
        ``return_flow``, the flow t -> neighbour (2, H, W) or (N, 2, H, W) in pixels); NumPy
        as said above for NumPy frames.
    """
    if isinstance(frame_t, np.ndarray):
        given = frame_t
        frames = [as_frame(0, f) if isinstance(f, np.ndarray) else f
                  for f in (frame_t, frame_next, frame_prev)]
        result = deblur_image_pair(
            model, *frames[:2], frame_prev=frames[2], device=device, precision=precision,
            tile=tile, tile_overlap=tile_overlap, return_flow=return_flow, runtime=runtime,
            ensemble=ensemble)
        if return_flow:
            return as_given(result[0], given), flow_as_given(result[1], given)
        return as_given(result, given)
    tile_overlap = check_tiling(tile, tile_overlap)
    check_ensemble(ensemble)
    runtime = _runtime(runtime, device, precision)
    runtime = dataclasses.replace(runtime, mode="eager", channels_last=False)
    _check_flow_wanted(model, return_flow)
    if model.in_frames >= 2 and frame_next is None:
        frame_next = frame_t
    if model.in_frames == 3 and frame_prev is None:
        frame_prev = frame_next
    single = frame_t.dim() == 3

    def prep(x: torch.Tensor | None, keep: bool) -> torch.Tensor | None:
        if x is None or not keep:
            return None
        if not x.is_floating_point():  # a uint8 frame would silently read as 0..255
            raise ValueError(f"frames must be float tensors in [0, 1], got dtype {x.dtype}")
        x = x.unsqueeze(0) if x.dim() == 3 else x
        return x.to(runtime.device, torch.float32)

    frames = (prep(frame_t, True), prep(frame_next, model.in_frames >= 2),
              prep(frame_prev, model.in_frames == 3))
    forward = self_ensemble(runtime.prepare(model), ensemble)
    out = _deblur_batch(forward, *frames, tile=tile, overlap=tile_overlap,
                        batch=1, want_flow=return_flow)
    image = out.image.to(frame_t.device)
    flow = out.flow.to(frame_t.device) if out.flow is not None else None
    if single:
        image = image[0]
        flow = flow[0] if flow is not None else None
    return (image, flow) if return_flow else image


# ----------------------------------------------------------------------------- streams


def deblur_frames(
    model: FlowDeblurNet,
    frames: Iterable[torch.Tensor | np.ndarray],
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    batch: int = 1,
    tile: int | None = None,
    tile_overlap: int | None = None,
    return_flow: bool = False,
    runtime: Runtime | None = None,
    scene_cuts: bool = True,
    ensemble: int = 1,
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Deblur every frame of a sequence, lazily: a generator over the deblurred frames.

    Frame t is paired with t+1; the last frame with t-1; a one-frame input with itself (with a
    warning: the flow guidance is then off). 'bidirectional' models also get t-1 (mirrored at
    the ends); 'single_frame' ones see frame t only. Holds at most ``batch + 2`` input frames,
    so memory stays bounded however long the input is. Runs through ``runtime.prepare(model)``
    (resolved from ``device`` and ``precision`` unless given), without gradients. The outputs
    have the form of the inputs: tensors give tensors, NumPy frames give NumPy frames.

    Args:
        frames: iterable of (3, H, W) float tensors in [0, 1] or (H, W, 3) NumPy arrays
            (uint8, uint16, or float in [0, 1]; see ``stream.ACCEPTED_FRAMES``), one size.
        batch: pairs (or, with ``tile``, tiles) per network call.
        tile, tile_overlap: see :func:`~.tiling.deblur_tiled`; None deblurs whole frames.
        return_flow: also yield the estimated flow t -> neighbour, (2, H, W) in pixels.
        scene_cuts: re-pair a frame whose neighbour is from another shot (docs/DESIGN.md,
            "Frame pairing"; whole frames of two-frame variants, not tiles).
        ensemble: average the outputs of this many flipped/transposed copies of each frame
            (1, 2, 4 or 8; :mod:`.ensemble`): sharper, and that many times slower.
    Yields:
        (3, H, W) float32 in [0, 1] on the input frame's device, one per input frame, in
        order (or ``(image, flow)`` tuples with ``return_flow``); for NumPy frames, (H, W, 3)
        arrays of the input's dtype (integers over their full range, floats in [0, 1]) and
        (H, W, 2) float32 flows.
    """
    _check_batch(batch)
    tile_overlap = check_tiling(tile, tile_overlap)
    check_ensemble(ensemble)
    runtime = _runtime(runtime, device, precision)
    _check_flow_wanted(model, return_flow)
    forward = self_ensemble(runtime.prepare(model), ensemble)

    def deblur(given: Iterable[torch.Tensor | np.ndarray]) -> Iterator:
        return _deblur_stream(
            forward, frame_triples(given), device=runtime.device, in_frames=model.in_frames,
            batch=batch, tile=tile, overlap=tile_overlap, want_flow=return_flow,
            scene_cuts=scene_cuts)

    return _returned_as_given(frames, deblur)


def _returned_as_given(frames: Iterable[torch.Tensor | np.ndarray],
                       deblur: Callable[[Iterable], Iterator]) -> Iterator:
    """``deblur(frames)``'s outputs in the form the frames were given (:func:`.stream.as_given`),
    judged by the first frame; lazy, like ``deblur`` itself."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return
    for item in deblur(itertools.chain([first], frames)):
        if isinstance(item, tuple):
            yield as_given(item[0], first), flow_as_given(item[1], first)
        else:
            yield as_given(item, first)


def _groups(triples: Iterator[FrameTriple], size: int) -> Iterator[list[FrameTriple]]:
    group: list[FrameTriple] = []
    for triple in triples:
        group.append(triple)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _deblur_stream(
    forward: Forward,
    triples: Iterator[FrameTriple],
    *,
    device: torch.device,
    in_frames: int,
    batch: int,
    tile: int | None,
    overlap: int | None,
    want_flow: bool,
    scene_cuts: bool,
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    # With tiles, ``batch`` counts tiles of one frame, so frames go one at a time.
    for group in _groups(triples, 1 if tile is not None else batch):
        home = group[0].frame_t.device

        def stack(frames: list[torch.Tensor], keep: bool = True) -> torch.Tensor | None:
            return torch.stack(frames).to(device, torch.float32) if keep else None

        frame_t = stack([g.frame_t for g in group])
        out = _deblur_batch(
            forward, frame_t,
            stack([g.frame_next for g in group], in_frames >= 2),
            stack([g.frame_prev for g in group], in_frames == 3),
            tile=tile, overlap=overlap, batch=batch, want_flow=want_flow,
        )
        if scene_cuts and in_frames == 2 and tile is None:
            out = _repair_scene_cuts(forward, group, frame_t, out, device, want_flow)
        images = out.image.to(home)
        flows = out.flow.to(home) if out.flow is not None else None
        for i in range(len(group)):
            yield (images[i], flows[i]) if want_flow else images[i]


def _repair_scene_cuts(forward: Forward, group: list[FrameTriple], frame_t: torch.Tensor,
                       out: Deblurred, device: torch.device, want_flow: bool) -> Deblurred:
    """Deblur again the frames of ``group`` whose paired neighbour is from another shot
    (:func:`~.scene_cuts.is_scene_cut` on the flow the network just estimated): with the other
    neighbour when that one is of the same shot, else with the frame itself.

    frame_t: (N, 3, H, W) on ``device``, the group's frames as the network saw them.
    """
    cut = is_scene_cut(frame_t, torch.stack([g.frame_next for g in group]).to(frame_t),
                       out.flow_quarter).tolist()
    for i, g in enumerate(group):
        if not cut[i]:
            continue
        one = frame_t[i:i + 1]
        redo = None
        if g.frame_prev is not g.frame_next:  # the other neighbour exists: try it
            other = g.frame_prev[None].to(device, torch.float32)
            redo = run_network(forward, one, other, None, want_flow=want_flow)
            if bool(is_scene_cut(one, other, redo.flow_quarter)[0]):
                redo = None
        if redo is None:  # a shot of one frame, or both neighbours across cuts
            redo = run_network(forward, one, one, None, want_flow=want_flow)
        out.image[i] = redo.image[0]
        if want_flow:
            out.flow[i] = redo.flow[0]
    return out


# ----------------------------------------------------------------------------- files


@dataclass
class DeblurResult:
    """What :func:`deblur_video` did: where, how many frames, how fast, and any caveats."""

    output: Path
    kind: str  # "video", "images" (a folder of PNGs) or "image" (one file)
    num_frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    runtime: str = ""  # how the network ran (Runtime.describe())

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class _OutputFrame:
    """One deblurred frame ready to write, with its source's timestamp."""

    image: torch.Tensor  # (3, H, W), or (3, H, 2W) input | output
    flow: torch.Tensor | None  # (2, H, W) pixels
    pts: int | None


@dataclass
class _InputFacts:
    """What a frame's output needs from its input: its pts, the input itself for
    side-by-side pictures."""

    pts: int | None
    frame: torch.Tensor | None


def _check_batch(batch: int) -> None:
    if batch < 1:
        raise OptionError("batch", f"{{option}} must be at least 1, got {batch}")


def _check_options(*, batch: int, bits: int, crf: int, fps: float | None,
                   output: Path) -> None:
    _check_batch(batch)
    if bits not in (8, 16):
        raise OptionError("bits", f"{{option}} must be 8 or 16, got {bits}")
    if is_image_path(output):
        check_image_bits(output, bits)
    if not 0 <= crf <= 51:
        raise OptionError("crf", f"{{option}} must be between 0 and 51, got {crf}")
    if fps is not None and not MIN_FPS <= fps <= MAX_FPS:  # also refuses nan and inf
        raise OptionError("fps", f"{{option}} must be a frame rate from {MIN_FPS} to {MAX_FPS:,} "
                          "frames per "
                        f"second, got {fps}")


def _tile_for(source: FrameSource, tile: int | None, *, batch: int,
              device: torch.device) -> int | None:
    """The tile size to run with: ``tile`` as asked (0: whole frames), or for None whole
    frames unless their estimated peak memory would not fit in what is available, then the
    largest tile that does (:mod:`.memory`), with a warning naming it."""
    if tile is not None:
        return tile or None
    available = memory.available_bytes(device)
    chosen = memory.choose_tile(source.height, source.width, batch=batch, available=available)
    if chosen is not None:
        need = memory.frame_peak_bytes(source.height, source.width, batch=batch)
        warnings.warn(
            f"a {source.width}x{source.height} frame needs about {need / 2**30:.1f} GiB whole "
            f"and {available / 2**30:.1f} GiB is available: deblurring in {chosen}x{chosen} "
            "tiles (--tile 0 forces whole frames)", UserWarning, stacklevel=3)
    return chosen


def _deblurred_frames(
    source: FrameSource, model: FlowDeblurNet, *, side_by_side: bool, want_flow: bool,
    upright: bool, **options
) -> Iterator[_OutputFrame]:
    """``source``'s frames deblurred by :func:`deblur_frames` (``options``), in order; with
    ``upright``, the pictures (and always the flows) turned for display as a player turns a
    rotated video's frames, so that side-by-side and flow pictures read the right way up."""
    # Per-frame facts waiting for the frame's output: bounded by the window of
    # deblur_frames (batch + 2 frames), never the whole video.
    pending: deque[_InputFacts] = deque()
    rotation = display_rotation(source)

    def turn(picture: torch.Tensor) -> torch.Tensor:
        return rotate_for_display(picture, rotation) if upright and rotation else picture

    def frames() -> Iterator[torch.Tensor]:
        for item in source.iterate_with_pts():
            pending.append(_InputFacts(item.pts, item.image if side_by_side else None))
            yield item.image

    for item in deblur_frames(model, frames(), return_flow=want_flow, **options):
        image, flow = item if want_flow else (item, None)
        src = pending.popleft()
        image = turn(image)
        if side_by_side:
            image = beside(turn(src.frame), image)
        if flow is not None and rotation:
            flow = rotate_flow_for_display(flow, rotation)
        yield _OutputFrame(image, flow, src.pts)


def deblur_video(
    input: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    model: FlowDeblurNet | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    batch: int = 1,
    tile: int | None = None,
    tile_overlap: int | None = None,
    crf: int = DEFAULT_CRF,
    chroma: str = DEFAULT_CHROMA,
    lossless: bool = False,
    fps: float | None = None,
    bits: int = 8,
    side_by_side: bool = False,
    save_flow: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    scene_cuts: bool = True,
    ensemble: int = 1,
    video_codec: str | None = None,
) -> DeblurResult:
    """Deblur a video file, a folder of frames or a list of image files, streaming.

    OUTPUT by name: a video extension (.mp4, .mkv, .mov, .avi, ...) -> a video keeping a video
    input's frame count, timestamps, rotation and audio, in H.264 (``crf`` 0 best .. 51
    worst; yuv420p pads an odd size by one replicated pixel, with a note) or, ``lossless``,
    exact RGB (FFV1 in .mkv, else libx264rgb); an image extension -> one image (one-frame
    inputs only); anything else -> a folder of PNGs named after the input frames (000000.png...
    for a video). A rotated video's frames are stored as decoded in a plain video output, with
    the rotation recorded for players; pictures (PNGs, flow pictures, a side-by-side video)
    are turned the way a player shows them. Outputs appear under their names only once
    complete (:mod:`.outputs`); OUTPUT may not be an input, lie inside an input folder, or
    (unless ``overwrite``, which replaces a previous output of the same kind) exist. A place
    that cannot be written is found before any frame is deblurred.

    Args:
        input: a path, or a list of image paths.
        model: the network; None loads the shipped weights
            (:func:`flowdeblur.weights.load_pretrained`).
        device, precision, batch, tile_overlap: see :func:`deblur_frames`.
        tile: None (default): whole frames unless a frame's estimated peak memory would not
            fit in the memory available, then the largest tile that does (with a warning;
            :mod:`.memory`); 0: whole frames always; N: N x N tiles.
        fps: frame rate of a video made from images (default 30); ignored for video inputs.
        bits: 8 or 16, bit depth of PNG outputs.
        side_by_side: write input | output (twice as wide as displayed, upright).
        save_flow: also write the estimated flow t -> neighbour, colour-coded with
            :func:`flowdeblur.viz.flow_to_color`, one PNG per frame into this folder
            (upright, the vectors turned with the picture).
        progress: show a tqdm progress bar (frames/s) on stderr.
        scene_cuts, ensemble: see :func:`deblur_frames`.
        precision: as for :func:`deblur_frames`, except that ``"auto"`` runs a video deeper
            than 8 bits in fp32 (bf16 keeps about 8 bits of each value).
        video_codec: "h264" stores a 10/12-bit video as H.264 High 10 rather than HEVC.
        chroma: "444" (default) or "420", the chroma of an 8-bit H.264 output: 4:2:0 plays
            everywhere but loses about a third of the gain at crf 6 (docs/BENCHMARKS.md).
    Returns:
        A :class:`DeblurResult`.
    """
    inputs = [input] if isinstance(input, (str, os.PathLike)) else list(input)
    if not inputs:
        raise UserError("no input given")
    output = Path(output)
    flow_dir = Path(save_flow) if save_flow is not None else None
    # Cheap checks first, so a mistake costs nothing and writes nothing.
    _check_options(batch=batch, bits=bits, crf=crf, fps=fps, output=output)
    check_ensemble(ensemble)
    if tile != 0:
        check_tiling(tile, tile_overlap)
    runtime = Runtime.resolve(device, precision)
    with contextlib.ExitStack() as held:
        # Held from the checks to the publishing, so no other flowdeblur run writes there.
        for target, what in ((output, "OUTPUT"), (flow_dir, "--save-flow folder")):
            if target is not None:
                held.enter_context(TargetLock(target, what))
        _prepare_destinations(output, flow_dir, inputs, overwrite=overwrite)
        source = FrameSource(inputs[0] if len(inputs) == 1 else inputs)
        if precision == "auto" and source.info is not None and source.info.bits > 8:
            runtime = Runtime.resolve(device, "fp32")
        tile = _tile_for(source, tile, batch=batch, device=runtime.device)
        sink = open_output(output, source, audio_from=inputs[0], crf=crf, lossless=lossless,
                           fps=fps, bits=bits, side_by_side=side_by_side, overwrite=overwrite,
                           video_codec=video_codec, chroma=chroma)
        flow_sink = _flow_output(flow_dir, sink.names, overwrite=overwrite)
        model = model if model is not None else load_pretrained()
        _check_flow_wanted(model, flow_sink is not None)
        start = time.perf_counter()
        frames = _deblurred_frames(
            source, model, side_by_side=side_by_side, want_flow=flow_sink is not None,
            upright=sink.upright, runtime=runtime, batch=batch, tile=tile,
            tile_overlap=check_tiling(tile, tile_overlap), scene_cuts=scene_cuts,
            ensemble=ensemble,
        )
        done = _write_outputs(frames, sink, flow_sink, total=len(source), progress=progress)
    return DeblurResult(output=output, kind=sink.kind, num_frames=done,
                        seconds=time.perf_counter() - start, notes=sink.notes,
                        runtime=runtime.describe())


def _prepare_destinations(output: Path, flow_dir: Path | None, inputs: list, *,
                          overwrite: bool) -> None:
    """The checks on where the outputs go (:func:`~.outputs.check_destinations`, writable),
    then the removal of what a killed run to the same places left."""
    check_destinations(output, flow_dir, inputs, overwrite=overwrite)
    for target, what in ((output, "OUTPUT"), (flow_dir, "--save-flow folder")):
        if target is not None:
            check_can_create(target, what)  # a read-only place fails now, not after the work
            remove_stale_temporaries(target)  # what a killed run to the same place left


def _flow_output(flow_dir: Path | None, names: list[str], *,
                 overwrite: bool) -> FolderOutput | None:
    if flow_dir is None:
        return None
    flow_sink = FolderOutput(flow_dir, names)
    flow_sink.replace_ours, flow_sink.what = overwrite, "--save-flow folder"
    return flow_sink


def _write_outputs(frames: Iterator[_OutputFrame], sink: Output, flow_sink: Output | None, *,
                   total: int, progress: bool) -> int:
    """Write every frame to ``sink`` (and its flow to ``flow_sink``); returns the count.
    Leaving the block publishes the outputs, the video first (its close() can still fail
    while flushing the encoder), or removes them all if anything failed."""
    done = 0
    with (
        flow_sink if flow_sink is not None else contextlib.nullcontext(),
        sink,
        tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar,
    ):
        for frame in frames:
            sink.write(done, frame.image, pts=frame.pts)
            if flow_sink is not None:
                flow_sink.write(done, flow_to_color(frame.flow))
            done += 1
            bar.update(1)
    return done
