"""A long video deblurred in chunks of frames, each written as a finished piece, so that a
killed run continues from the last finished chunk and several workers can share one video.

    OUTPUT.mp4                      appears once whole (joined from the pieces)
    .OUTPUT.mp4.chunks/             hidden, beside it, while the video is being made
        000000000.mp4               frames 0 .. C-1, published whole (media.atomic)
        000000300.mp4               frames C .. 2C-1
        .000000600.mp4.PID-RAND.tmp.mp4   the chunk being written

A chunk ``[start, stop)`` reads one frame more on each side (frames ``start - 1`` and
``stop``), so that every frame is paired with the neighbours it has in the whole video, scene
cuts included (:func:`~.stream.frame_triples`); the chunk size is a multiple of ``--batch``, so
each network call holds the frames it holds when the video is deblurred in one go. A piece is a
video encoded as the output is (same encoder, settings and time base), stamped with the
source's timestamps, and records in its ``comment`` the output's provenance
(:mod:`.provenance`) and its chunk: a piece is reused only by a run that would write the same
output. When every chunk is there, :func:`~flowdeblur.media.video_join.join_videos` copies
their packets into one file with the source's audio and other streams, tags, chapters and
rotation, publishes it, and the folder is removed.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from ..errors import OptionError, UserError
from ..media import FrameSource
from ..media.atomic import remove_stale_temporaries
from ..media.ownership import read_provenance, record_text
from ..media.video_join import join_videos
from ..media.video_reader import count_video_packets
from ..models import FlowDeblurNet
from ..runtime import Runtime
from .output_frames import OutputFrame, deblurred_frames
from .outputs import check_free, display_rotation, open_output

__all__ = ["DEFAULT_CHUNK_FRAMES", "Chunk", "ChunkFolder", "ChunkRun", "Piece", "PieceJob",
           "check_chunk_frames", "deblur_piece", "join_pieces", "piece_jobs", "plan_chunks",
           "run_chunks"]

#: Frames per chunk unless told otherwise: at about a second per 720p frame on a small CPU,
#: a kill loses at most some minutes of work; a 30 fps video of 10 s or less is one chunk.
DEFAULT_CHUNK_FRAMES = 300

#: The suffix of the hidden folder of pieces beside an output.
FOLDER_SUFFIX = ".chunks"


@dataclass(frozen=True)
class Chunk:
    """Frames ``start`` .. ``stop - 1`` of a video (``stop`` None: to its end)."""

    index: int
    start: int
    stop: int | None

    @property
    def name(self) -> str:
        return f"{self.start:09d}"


def check_chunk_frames(chunk_frames: int) -> None:
    """OptionError unless ``chunk_frames`` is 0 (no chunks) or more."""
    if chunk_frames < 0:
        raise OptionError("chunk_frames", f"{{option}} must be 0 (no chunks) or more, got "
                          f"{chunk_frames}")


def plan_chunks(frames: int, size: int, batch: int = 1) -> list[Chunk]:
    """The chunks of a video of ``frames`` frames (as its container states them): ``size``
    frames each, rounded up to a multiple of ``batch``; the last one runs to the video's end,
    whatever its length turns out to be."""
    if size < 1:
        raise ValueError(f"a chunk holds at least one frame, got {size}")
    size = math.ceil(size / batch) * batch
    count = max(1, math.ceil(frames / size))
    return [Chunk(i, i * size, (i + 1) * size if i < count - 1 else None) for i in range(count)]


def pieces_folder(output: Path) -> Path:
    """The hidden folder beside ``output`` that holds its pieces."""
    return output.parent / f".{output.name}{FOLDER_SUFFIX}"


@dataclass(frozen=True)
class PieceJob:
    """What deblurring one chunk into its piece takes, besides the network: plain data, so
    that it can be sent to another process or machine.

    write: the keyword arguments of :func:`~.outputs.open_output` that shape the video
        (crf, chroma, lossless, fps, bits, side_by_side, video_codec).
    run: those of :func:`~.deblur.deblur_frames` (batch, tile, tile_overlap, scene_cuts,
        ensemble).
    """

    input: Path | tuple[Path, ...]
    output: Path
    chunk: Chunk
    provenance: dict
    write: dict
    run: dict

    @property
    def piece(self) -> Path:
        return pieces_folder(self.output) / (self.chunk.name + self.output.suffix)

    def record(self, first_time: Fraction | None = None) -> dict:
        """The provenance a finished piece carries: the output's, and its chunk."""
        chunk = {"start": self.chunk.start, "stop": self.chunk.stop}
        if first_time is not None:
            chunk["first_time"] = str(first_time)
        return dict(self.provenance, chunk=chunk)


def piece_jobs(inputs: list, output: Path, source: FrameSource, provenance: dict, *,
               write: dict, run: dict, chunk_frames: int) -> list[PieceJob]:
    """One :class:`PieceJob` per chunk of ``source`` (read from ``inputs``: a video, a folder
    or image files) into ``output``, by :func:`plan_chunks`."""
    given = Path(inputs[0]) if len(inputs) == 1 else tuple(Path(p) for p in inputs)
    return [PieceJob(given, output, chunk, provenance, write, run)
            for chunk in plan_chunks(len(source), chunk_frames, run.get("batch", 1))]


def _source(given: Path | tuple[Path, ...]) -> FrameSource:
    return FrameSource(list(given) if isinstance(given, tuple) else given)


def _fps(source: FrameSource, job: PieceJob) -> Fraction:
    """The nominal frame rate of the video written for ``source`` (as VideoWriter keeps it)."""
    fps = source.info.fps if source.info is not None else (job.write.get("fps") or 30)
    return Fraction(fps).limit_denominator(1_000_000)


@dataclass
class Piece:
    """What :func:`deblur_piece` wrote: frames, and the caveats of the encoding."""

    frames: int
    notes: list[str] = field(default_factory=list)


def deblur_piece(job: PieceJob, model: FlowDeblurNet, runtime: Runtime, *,
                 on_frame: Callable[[], None] | None = None) -> Piece:
    """Deblur ``job``'s chunk into its piece, published whole under its name (0 frames for a
    chunk past the video's end: no piece). ``on_frame`` is called after each frame."""
    source = _source(job.input)
    sink = open_output(job.piece, source, audio_from=None, **job.write)
    frames = deblurred_frames(
        source, model, side_by_side=job.write.get("side_by_side", False), want_flow=False,
        upright=sink.upright, start=job.chunk.start, stop=job.chunk.stop, runtime=runtime,
        **job.run)
    first = next(frames, None)
    if first is None:
        return Piece(0)
    fps = _fps(source, job)
    time_base = source.info.time_base if source.info is not None else 1 / fps
    step = max(1, round(1 / (fps * time_base)))

    def pts(frame: OutputFrame) -> int:  # frames without one are spaced one step apart
        return frame.pts if frame.pts is not None else frame.index * step

    sink.provenance = job.record(pts(first) * time_base)
    done = 0
    with sink:
        for frame in _chain(first, frames):
            sink.write(frame.index, frame.image, pts=pts(frame))
            done += 1
            if on_frame is not None:
                on_frame()
    return Piece(done, list(sink.notes))


def _chain(first: OutputFrame, rest: Iterator[OutputFrame]) -> Iterator[OutputFrame]:
    yield first
    yield from rest


# ----------------------------------------------------------------------------- the folder


@dataclass
class ChunkFolder:
    """The pieces of one output: which chunks are finished, which a killed run had started.

    ``jobs``: one :class:`PieceJob` per chunk of the plan, in order.
    """

    jobs: list[PieceJob]
    #: chunk index -> frames of its piece, for the chunks already finished
    finished: dict[int, int] = field(default_factory=dict)
    #: the chunks whose piece a run that is no longer running had begun to write
    interrupted: set[int] = field(default_factory=set)

    @property
    def path(self) -> Path:
        return pieces_folder(self.jobs[0].output)

    def open(self, *, resume: bool) -> None:
        """Create the folder; with ``resume`` keep the pieces that carry this run's record
        (and note which chunks a killed run had begun), else start from none."""
        folder = self.path
        if folder.exists() and not resume:
            pieces = [p for p in folder.iterdir() if not p.name.startswith(".")]
            if pieces:
                warnings.warn(f"{len(pieces)} finished chunks of an earlier run to "
                              f"{self.jobs[0].output} are discarded (pass --resume to continue "
                              "from them)", UserWarning, stacklevel=3)
            shutil.rmtree(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot write beside OUTPUT {self.jobs[0].output}: "
                            f"{e.strerror or e}") from None
        self.scan(clean=True)

    def scan(self, *, clean: bool = False) -> None:
        """Find the finished pieces; with ``clean``, also remove the pieces of other runs and
        the temporaries their killed writers left (and count those chunks as interrupted)."""
        wanted = {job.piece.name: job for job in self.jobs}
        if clean:
            for entry in self.path.iterdir():
                if not entry.name.startswith(".") and entry.name not in wanted:
                    _remove(entry)
        for job in self.jobs:
            if clean and remove_stale_temporaries(job.piece):
                self.interrupted.add(job.chunk.index)
            if job.chunk.index in self.finished or not job.piece.is_file():
                continue
            record = read_provenance(job.piece)
            if record is not None and record.get("chunk", {}).get("first_time") is not None \
                    and record == job.record(Fraction(record["chunk"]["first_time"])):
                self.finished[job.chunk.index] = count_video_packets(job.piece)
            elif clean:
                job.piece.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def join_pieces(folder: ChunkFolder, *, record: dict, overwrite: bool) -> int:
    """Join the finished pieces of ``folder`` into its output (checked as any output is on
    publishing: nothing there, or with ``overwrite`` a previous output of ours), then remove
    the folder. Returns the frames of the output."""
    jobs = [job for job in folder.jobs if folder.finished.get(job.chunk.index)]
    if not jobs:
        raise UserError(f"no frame could be read from {folder.jobs[0].input}")
    first = jobs[0]
    source = _source(first.input)
    starts = [Fraction(read_provenance(job.piece)["chunk"]["first_time"]) for job in jobs]
    side_by_side = first.write.get("side_by_side", False)
    check_free(first.output, overwrite, "OUTPUT", folder=False, meanwhile=True)
    frames = join_videos(
        [job.piece for job in jobs], first.output, fps=_fps(source, first), starts=starts,
        rotation=0 if side_by_side else display_rotation(source),
        streams_from=first.input if source.info is not None else None,
        record=record_text(record))
    folder.remove()
    return frames


# ----------------------------------------------------------------------------- one machine


@dataclass
class ChunkRun:
    """What :func:`run_chunks` did."""

    frames: int  #: frames of the output
    reused: int  #: frames taken from pieces an earlier run finished
    recomputed: int  #: frames of chunks an earlier (killed) run had begun and not finished
    seconds: float
    notes: list[str]


def run_chunks(folder: ChunkFolder, model: FlowDeblurNet, runtime: Runtime, *, resume: bool,
               overwrite: bool, total: int, progress: bool,
               on_progress: Callable[[int, int], None] | None = None) -> ChunkRun:
    """Deblur the chunks of ``folder`` that are not finished, one after another, then join
    them (:func:`join_pieces`). ``total``: the frames expected, for the progress bar."""
    start = time.perf_counter()
    folder.open(resume=resume)
    reused = sum(folder.finished.values())
    recomputed = 0
    done = reused
    notes: list[str] = []
    with tqdm(total=total, initial=reused, unit="frame", disable=not progress,
              dynamic_ncols=True, leave=None) as bar:
        def on_frame() -> None:
            nonlocal done
            done += 1
            bar.update(1)
            if on_progress is not None:
                on_progress(done, total)

        for job in folder.jobs:
            if job.chunk.index in folder.finished:
                continue
            piece = deblur_piece(job, model, runtime, on_frame=on_frame)
            written = piece.frames
            notes = notes or piece.notes
            folder.finished[job.chunk.index] = written
            if job.chunk.index in folder.interrupted:
                recomputed += written
            if written == 0 or job.chunk.stop is not None and written < (
                    job.chunk.stop - job.chunk.start):
                break  # the video ended sooner than its container said
    frames = join_pieces(folder, record=folder.jobs[0].provenance, overwrite=overwrite)
    return ChunkRun(frames, reused, recomputed, time.perf_counter() - start, notes)
