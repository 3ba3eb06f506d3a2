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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from ..errors import OptionError, UserError
from ..media import FrameSource, is_image_path
from ..media.atomic import TargetLock, check_can_create, remove_stale_temporaries
from ..media.images import check_image_bits
from ..media.video_writer import DEFAULT_CHROMA
from ..models import FlowDeblurNet
from ..runtime import Runtime
from ..viz import flow_to_color
from ..weights import load_pretrained
from . import memory
from .chunks import (
    DEFAULT_CHUNK_FRAMES,
    ChunkFolder,
    PieceJob,
    check_chunk_frames,
    piece_jobs,
    run_chunks,
)
from .deblur import check_batch, check_flow_wanted
from .ensemble import check_ensemble
from .output_frames import OutputFrame, deblurred_frames
from .outputs import (
    FolderOutput,
    Output,
    check_destinations,
    open_output,
    output_kind,
)
from .provenance import is_current, make_provenance
from .tiling import check_tiling

__all__ = ["Adaptation", "DeblurResult", "deblur_video"]

#: Frame rates a video made from images may have (a time-lapse at one frame in 1000 s up to a
#: high-speed camera); beyond them the container's time base cannot represent the frames.
MIN_FPS, MAX_FPS = 0.001, 10_000


# ----------------------------------------------------------------------------- files


class Adaptation(Protocol):
    """What :func:`deblur_video` may run on its input before deblurring it (``adapt=``), e.g.
    :class:`flowdeblur.training.adapt.ClipAdaptation` (``deblur --adapt``)."""

    #: What the output's provenance records of it (so ``resume`` tells adapted outputs apart).
    record: dict

    def __call__(self, source: FrameSource, model: FlowDeblurNet,
                 runtime: Runtime) -> FlowDeblurNet:
        """The model to deblur ``source`` with: a copy of ``model`` adapted to it."""


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
    reused: int = 0  # frames taken from the chunks an earlier run finished (resume)
    recomputed: int = 0  # frames of chunks an earlier run had begun but not finished

    @property
    def deblurred(self) -> int:
        """Frames this call deblurred (none when skipped; not those of reused chunks)."""
        return 0 if self.skipped else self.num_frames - self.reused

    @property
    def frames_per_second(self) -> float:
        return self.deblurred / self.seconds if self.seconds > 0 else float("inf")


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
    on_progress: Callable[[int, int], None] | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    adapt: Adaptation | None = None,
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
        on_progress: called as ``on_progress(done, total)`` after each frame is written; an
            exception it raises stops the run, as Ctrl-C does (no output is left).
        scene_cuts, ensemble: see :func:`deblur_frames`.
        precision: as for :func:`deblur_frames`, except that ``"auto"`` runs a video deeper
            than 8 bits in fp32 (bf16 keeps about 8 bits of each value).
        video_codec: "h264" stores a 10/12-bit video as H.264 High 10 rather than HEVC.
        chroma: "444" (default) or "420" (plays everywhere), the chroma of 8-bit H.264.
        resume: leave an output that is complete and carries the provenance this run would
            record (:mod:`.provenance`) as it is (``skipped``); replace one of ours that
            differs, as ``overwrite`` does; continue a video from its finished chunks.
        chunk_frames: a longer video output is made in chunks of this many frames, kept as
            finished pieces until joined (:mod:`.chunks`); 0: in one go.
        adapt: run on the input and the model before deblurring (not when ``resume`` finds
            the output current); the model it returns deblurs, and its ``record`` is kept in
            the provenance as the option "adapt".
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
    check_chunk_frames(chunk_frames)
    check_ensemble(ensemble)
    if tile != 0:
        check_tiling(tile, tile_overlap)
    options = dict(batch=batch, tile=tile, tile_overlap=tile_overlap, crf=crf, chroma=chroma,
                   lossless=lossless, fps=fps, bits=bits, side_by_side=side_by_side,
                   scene_cuts=scene_cuts, ensemble=ensemble, video_codec=video_codec)
    runtime = Runtime.resolve(device, precision)
    with contextlib.ExitStack() as held:
        # Held from the checks to the publishing, so no other flowdeblur run writes there.
        for target, what in ((output, "OUTPUT"), (flow_dir, "--save-flow folder")):
            if target is not None:
                held.enter_context(TargetLock(target, what))
        overwrite = overwrite or resume  # resume redoes an output of ours that differs
        plan = plan_output(inputs, output, model=model, runtime=runtime, precision=precision,
                           flow_dir=flow_dir, overwrite=overwrite, resume=resume,
                           chunk_frames=chunk_frames, options=options, adapt=adapt)
        if plan.skipped:
            return DeblurResult(output=output, kind=plan.kind, num_frames=len(plan.source),
                                seconds=0.0, skipped=True)
        if plan.jobs is not None:
            return _in_chunks(plan, resume=resume, overwrite=overwrite, progress=progress,
                              on_progress=on_progress)
        return _in_one_go(plan, inputs[0], output, flow_dir, overwrite=overwrite,
                          progress=progress, on_progress=on_progress)


def _in_one_go(plan: OutputPlan, given: str | os.PathLike, output: Path, flow_dir: Path | None,
               *, overwrite: bool, progress: bool,
               on_progress: Callable[[int, int], None] | None) -> DeblurResult:
    """Deblur the frames of ``plan`` into its output (and flows), published at the end."""
    source, runtime = plan.source, plan.runtime
    sink = open_output(output, source, audio_from=given, overwrite=overwrite,
                       provenance=plan.record, **plan.write)
    flow_sink = _flow_output(flow_dir, sink.names, overwrite=overwrite, provenance=plan.record)
    check_flow_wanted(plan.model, flow_sink is not None)
    start = time.perf_counter()
    frames = deblurred_frames(
        source, plan.model, side_by_side=plan.write["side_by_side"],
        want_flow=flow_sink is not None, upright=sink.upright, runtime=runtime, **plan.run)
    done = _write_outputs(frames, sink, flow_sink, total=len(source), progress=progress,
                          on_progress=on_progress)
    return DeblurResult(output=output, kind=sink.kind, num_frames=done,
                        seconds=time.perf_counter() - start, notes=sink.notes,
                        runtime=runtime.describe())


def _in_chunks(plan: OutputPlan, *, resume: bool, overwrite: bool, progress: bool,
               on_progress: Callable[[int, int], None] | None) -> DeblurResult:
    """Make the video of ``plan`` from its chunks (:func:`~.chunks.run_chunks`)."""
    done = run_chunks(ChunkFolder(plan.jobs), plan.model, plan.runtime, resume=resume,
                      overwrite=overwrite, total=len(plan.source), progress=progress,
                      on_progress=on_progress)
    return DeblurResult(output=plan.jobs[0].output, kind=plan.kind, num_frames=done.frames,
                        seconds=done.seconds, notes=done.notes,
                        runtime=plan.runtime.describe(), reused=done.reused,
                        recomputed=done.recomputed)


@dataclass
class OutputPlan:
    """What :func:`plan_output` decided for one output."""

    source: FrameSource
    kind: str  # as DeblurResult.kind
    model: FlowDeblurNet
    runtime: Runtime  # fp32 for a video deeper than 8 bits when the precision was "auto"
    record: dict  # the provenance the output will carry
    write: dict  # keyword arguments of open_output
    run: dict  # keyword arguments of deblur_frames, the tile chosen
    skipped: bool = False  # resume: the output is complete and current
    jobs: list[PieceJob] | None = None  # a video made in chunks: one job per chunk


def plan_output(inputs: list, output: Path, *, model: FlowDeblurNet | None, runtime: Runtime,
                precision: str = "auto", flow_dir: Path | None = None, overwrite: bool,
                resume: bool, chunk_frames: int, options: dict,
                adapt: Adaptation | None = None) -> OutputPlan:
    """The checks on where the output goes (and the removal of what a killed run there left),
    then everything :func:`deblur_video` decides before its first frame: the source, the
    model (None: the shipped weights), the precision, the provenance record, whether
    ``resume`` skips the output, the tile, and for a video longer than ``chunk_frames`` its
    chunks. ``precision``: as asked (``runtime`` resolves it). ``options``: the
    output-shaping keyword arguments of :func:`deblur_video`. ``adapt``: run once the output
    is known not to be current; the model it returns is the plan's."""
    _prepare_destinations(output, flow_dir, inputs, overwrite=overwrite)
    source = FrameSource(inputs[0] if len(inputs) == 1 else inputs)
    if precision == "auto" and source.info is not None and source.info.bits > 8:
        runtime = Runtime.resolve(runtime.device, "fp32")
    model = model if model is not None else load_pretrained()
    kind = output_kind(output)
    o = options
    record = make_provenance(source, Path(inputs[0]), model, kind=kind, options=dict(
        crf=o["crf"], chroma=o["chroma"], lossless=o["lossless"], fps=o["fps"], bits=o["bits"],
        tile=o["tile"], tile_overlap=o["tile_overlap"], side_by_side=o["side_by_side"],
        scene_cuts=o["scene_cuts"], ensemble=o["ensemble"], video_codec=o["video_codec"],
        save_flow=flow_dir is not None, precision=runtime.precision,
        device=runtime.device.type, **({"adapt": adapt.record} if adapt is not None else {})))
    write = {k: o[k] for k in ("crf", "lossless", "fps", "bits", "side_by_side",
                               "video_codec", "chroma")}
    plan = OutputPlan(source, kind, model, runtime, record, write, run={})
    if resume and is_current(output, flow_dir, record):
        plan.skipped = True
        return plan
    if adapt is not None:
        plan.model = adapt(source, model, runtime)
    tile = _tile_for(source, o["tile"], batch=o["batch"], device=runtime.device)
    plan.runtime = runtime.for_frames(len(source), tiled=tile is not None)
    plan.run = dict(batch=o["batch"], tile=tile, tile_overlap=check_tiling(tile,
                    o["tile_overlap"]), scene_cuts=o["scene_cuts"], ensemble=o["ensemble"])
    if kind == "video" and flow_dir is None and 0 < chunk_frames < len(source):
        plan.jobs = piece_jobs(inputs, output, source, record, write=write, run=plan.run,
                               chunk_frames=chunk_frames)
    return plan


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


def _write_outputs(frames: Iterator[OutputFrame], sink: Output, flow_sink: Output | None, *,
                   total: int, progress: bool,
                   on_progress: Callable[[int, int], None] | None = None) -> int:
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
            if on_progress is not None:
                on_progress(done, total)
    return done
