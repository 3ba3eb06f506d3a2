"""Deblurring files to files: :func:`deblur_video`, which the ``flowdeblur deblur`` command calls.

A frame travels one way::

    FrameSource --(frames)--> deblur_frames --(images [, flows])--> Output (video/folder/image)

OUTPUT by name: a video extension (.mp4, .mkv, .mov, .avi, ...) -> a video keeping a video
input's frame count, timestamps, rotation, depth, colour tags and other streams
(:func:`~flowdeblur.media.choose_encoding`: H.264 10-bit 4:4:4 for 8-bit, ``chroma`` "420"
for 4:2:0, which pads an odd size by one replicated pixel with a note; HEVC for 10/12-bit;
``lossless``: exact RGB, FFV1 in .mkv, else libx264rgb); an image extension -> one image
(one-frame inputs only); anything else -> a folder of PNGs named after the input frames
(000000.png... for a video). A rotated video's frames are stored as decoded in a plain video
output, with the rotation recorded for players; pictures (PNGs, flow pictures, a side-by-side
video) are turned the way a player shows them. Outputs appear under their names only once
complete (:mod:`.outputs`); OUTPUT may not be an input, lie inside an input folder, or
(unless ``overwrite``, which replaces a previous output of ours) exist. A place that cannot be
written is found before any frame is deblurred.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import OptionError, UserError
from ..media import FrameSource, is_image_path, rotate_flow_for_display, rotate_for_display
from ..media.atomic import TargetLock, check_can_create, remove_stale_temporaries
from ..media.images import check_image_bits
from ..media.video_writer import DEFAULT_CHROMA
from ..models import FlowDeblurNet
from ..runtime import Runtime
from ..viz import flow_to_color
from ..viz import side_by_side as beside
from ..weights import load_pretrained
from . import memory
from .deblur import check_batch, check_flow_wanted, deblur_frames
from .ensemble import check_ensemble
from .outputs import (
    FolderOutput,
    Output,
    check_destinations,
    display_rotation,
    open_output,
    output_kind,
)
from .provenance import is_current, make_provenance
from .tiling import check_tiling

__all__ = ["DeblurResult", "deblur_video"]

#: Frame rates a video made from images may have (a time-lapse at one frame in 1000 s up to a
#: high-speed camera); beyond them the container's time base cannot represent the frames.
MIN_FPS, MAX_FPS = 0.001, 10_000


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
    skipped: bool = False  # resume found the output complete and current: nothing was done

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


def _check_options(*, batch: int, bits: int, crf: int | None, fps: float | None,
                   output: Path) -> None:
    check_batch(batch)
    if bits not in (8, 16):
        raise OptionError("bits", f"{{option}} must be 8 or 16, got {bits}")
    if is_image_path(output):
        check_image_bits(output, bits)
    if crf is not None and not 0 <= crf <= 51:
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
    crf: int | None = None,
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
    resume: bool = False,
) -> DeblurResult:
    """Deblur a video file, a folder of frames or a list of image files, streaming, into
    OUTPUT (a video, one image or a folder of PNGs by its name: see the module docstring).

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
        save_flow: also write the estimated flow t -> neighbour, colour-coded
            (:func:`flowdeblur.viz.flow_to_color`), one upright PNG per frame, into this folder.
        progress: show a tqdm progress bar (frames/s) on stderr.
        scene_cuts, ensemble: see :func:`deblur_frames`.
        precision: as for :func:`deblur_frames`, except that ``"auto"`` runs a video deeper
            than 8 bits in fp32 (bf16 keeps about 8 bits of each value).
        video_codec: "h264" stores a 10/12-bit video as H.264 High 10 rather than HEVC.
        chroma: "444" (default) or "420" (plays everywhere), the chroma of 8-bit H.264.
        resume: leave an output that is complete and carries the provenance this run would
            record (:mod:`.provenance`: input, weights, options) as it is (``skipped`` in the
            result); replace one of ours that differs, as ``overwrite`` does.
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
        overwrite = overwrite or resume  # resume redoes an output of ours that differs
        _prepare_destinations(output, flow_dir, inputs, overwrite=overwrite)
        source = FrameSource(inputs[0] if len(inputs) == 1 else inputs)
        if precision == "auto" and source.info is not None and source.info.bits > 8:
            runtime = Runtime.resolve(device, "fp32")
        model = model if model is not None else load_pretrained()
        kind = output_kind(output)
        record = make_provenance(source, Path(inputs[0]), model, kind=kind, options=dict(
            crf=crf, chroma=chroma, lossless=lossless, fps=fps, bits=bits, tile=tile,
            tile_overlap=tile_overlap, side_by_side=side_by_side, scene_cuts=scene_cuts,
            ensemble=ensemble, video_codec=video_codec, save_flow=flow_dir is not None,
            precision=runtime.precision, device=runtime.device.type))
        if resume and is_current(output, flow_dir, record):
            return DeblurResult(output=output, kind=kind, num_frames=len(source),
                                seconds=0.0, skipped=True)
        tile = _tile_for(source, tile, batch=batch, device=runtime.device)
        sink = open_output(output, source, audio_from=inputs[0], crf=crf, lossless=lossless,
                           fps=fps, bits=bits, side_by_side=side_by_side, overwrite=overwrite,
                           video_codec=video_codec, chroma=chroma, provenance=record)
        flow_sink = _flow_output(flow_dir, sink.names, overwrite=overwrite, provenance=record)
        check_flow_wanted(model, flow_sink is not None)
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


def _flow_output(flow_dir: Path | None, names: list[str], *, overwrite: bool,
                 provenance: dict) -> FolderOutput | None:
    if flow_dir is None:
        return None
    flow_sink = FolderOutput(flow_dir, names)
    flow_sink.replace_ours, flow_sink.what = overwrite, "--save-flow folder"
    flow_sink.provenance = provenance
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
        # leave=None: kept when alone, cleared under a batch's bar (flowdeblur batch)
        tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True,
             leave=None) as bar,
    ):
        for frame in frames:
            sink.write(done, frame.image, pts=frame.pts)
            if flow_sink is not None:
                flow_sink.write(done, flow_to_color(frame.flow))
            done += 1
            bar.update(1)
    return done
