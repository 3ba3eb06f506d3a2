"""Many inputs into one output folder, resumable and shardable: ``flowdeblur batch``.

Each INPUT is a video, an image, a folder or ``@LIST`` (a text file naming one input per line,
relative to the list's folder; blank lines and ``#`` comments ignored). A folder is searched
recursively for videos and for leaf folders of images (a folder holding images and no
subfolder is one frame sequence). Every input has a key, its path relative to the folder it
was found in (a video or image given by itself: its path relative to the list's folder, or its
name), and is written to ``OUTPUT_DIR/key``: a video or image under the same name and
extension, a frame sequence as a folder of PNGs.

Everything that can be refused is refused before any work (:func:`plan_batch`): two inputs
with one output, outputs that exist without ``resume`` or ``overwrite``, files there that
flowdeblur did not write. Then :func:`run_batch` deblurs each input with
:func:`~.deblur.deblur_video` (atomic outputs, a lock per output, the provenance record that
``resume`` compares): an input that fails is reported and the batch goes on, except on a full
disk, which stops it. ``shard`` ``(i, n)`` keeps the i-th of n disjoint parts, by the SHA-256
of the key, so that n independent processes (a job array) cover a batch without talking.
A long video is made in chunks that a killed run's ``resume`` continues from (:mod:`.chunks`);
:mod:`.ray_engine` runs the same plan as Ray tasks (:func:`deblur_batch` ``engine="ray"``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..errors import OptionError, UserError
from ..media import is_image_path, is_video_path
from ..media.atomic import atomic_write_text
from ..models import FlowDeblurNet
from .files import deblur_video
from .outputs import check_free, output_kind

__all__ = ["BatchItem", "BatchResult", "ItemResult", "deblur_batch", "find_items",
           "parse_shard", "plan_batch", "run_batch", "shard_of"]

PathLike = str | os.PathLike

#: Where a batch runs: this process, one input after another, or a Ray cluster.
ENGINES = ("local", "ray")

#: Statuses of an input in a :class:`BatchResult`.
STATUSES = ("done", "skipped", "failed", "not started")


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch and where its output goes."""

    input: Path  #: a video, an image, or a folder of frames
    key: str  #: its path relative to the folder it was found in (POSIX): names output, shard
    output: Path  #: ``OUTPUT_DIR / key``


@dataclass
class ItemResult:
    """What became of one input: ``status`` one of :data:`STATUSES`, ``reason`` one line."""

    input: str
    output: str
    status: str = "not started"
    reason: str = ""
    frames: int = 0  # frames deblurred (0 when skipped or failed)
    seconds: float = 0.0
    reused: int = 0  # frames taken from chunks an earlier run finished (resume)
    recomputed: int = 0  # frames of chunks an earlier run had begun and not finished
    workers: list[str] = field(default_factory=list)  # the Ray workers that deblurred it


@dataclass
class BatchResult:
    """The outcome of :func:`run_batch`, in the order of the inputs."""

    items: list[ItemResult]
    seconds: float = 0.0  #: wall time of the whole batch
    stopped: str = ""  #: why the batch stopped before its end (a full disk); "" if it did not

    def count(self, status: str) -> int:
        return sum(item.status == status for item in self.items)

    @property
    def frames(self) -> int:
        return sum(item.frames for item in self.items)

    @property
    def recomputed(self) -> int:
        return sum(item.recomputed for item in self.items)

    @property
    def reused(self) -> int:
        return sum(item.reused for item in self.items)

    @property
    def frames_per_second(self) -> float:
        """Frames deblurred over the batch's wall time (checks and skipped inputs included)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """0 when every input is done or skipped, else 1."""
        return 0 if all(item.status in ("done", "skipped") for item in self.items) else 1

    def to_json(self) -> str:
        summary = {status: self.count(status) for status in STATUSES}
        summary.update(frames=self.frames, reused=self.reused, recomputed=self.recomputed,
                       seconds=round(self.seconds, 3),
                       frames_per_second=round(self.frames_per_second, 3),
                       stopped=self.stopped)
        return json.dumps({"summary": summary, "items": [asdict(i) for i in self.items]},
                          indent=1) + "\n"


# ----------------------------------------------------------------------------- finding inputs


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (links resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def read_list(path: Path) -> list[Path]:
    """The inputs a list file names, relative to its folder; blank lines and lines starting
    with ``#`` ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the list {path}: {getattr(e, 'strerror', None) or e}") \
            from None
    entries = [line.strip() for line in lines]
    return [path.parent / entry for entry in entries if entry and not entry.startswith("#")]


def _search(folder: Path) -> list[tuple[Path, str]]:
    """(input, key relative to ``folder``) of the videos under ``folder`` and of its leaf
    folders of images; hidden entries (temporaries, markers) are passed over."""
    found = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(here)
        rel = here.relative_to(folder)
        files = sorted(f for f in files if not f.startswith("."))
        found += [(here / f, (rel / f).as_posix()) for f in files if is_video_path(f)]
        if not any(is_image_path(f) for f in files):
            continue
        if dirs:  # its outputs would hold those of its subfolders
            warnings.warn(f"{here} holds images and subfolders: its images are not a frame "
                          "sequence of the batch (only folders without subfolders are)",
                          UserWarning, stacklevel=3)
        else:
            found.append((here, rel.as_posix() if rel.parts else folder.name))
    return found


def _given(path: Path, base: Path | None, output_dir: Path) -> list[tuple[Path, str]]:
    """(input, key) pairs of one input path; ``base``: the list's folder it was named in."""
    if path.is_dir():
        if _within(output_dir, path):  # a rerun would find the outputs among the inputs
            raise UserError(f"OUTPUT_DIR {output_dir} is inside the input folder {path}; "
                            "choose an output folder outside it")
        return _search(path)
    if not path.exists():
        raise UserError(f"input not found: {path}")
    if not (is_video_path(path) or is_image_path(path)):
        raise UserError(f"{path} is not a video, an image or a folder")
    key = path.name
    if base is not None and base.resolve() in path.resolve().parents:
        key = path.resolve().relative_to(base.resolve()).as_posix()
    return [(path, key)]


def find_items(inputs: Sequence[PathLike], output_dir: PathLike) -> list[BatchItem]:
    """Every input of a batch (see the module docstring), in the order given, each folder's
    in sorted order; the same input reached twice under the same key counts once."""
    output_dir = Path(output_dir)
    pairs: list[tuple[Path, str]] = []
    for given in inputs:
        text = os.fspath(given)
        if text.startswith("@"):
            listed = Path(text[1:])
            for entry in read_list(listed):
                pairs += _given(entry, listed.parent, output_dir)
        else:
            pairs += _given(Path(text), None, output_dir)
    items, seen = [], set()
    for path, key in pairs:
        if (path.resolve(), key) not in seen:
            seen.add((path.resolve(), key))
            items.append(BatchItem(path, key, output_dir / key))
    return items


# ----------------------------------------------------------------------------- shards


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N), 1 <= I <= N; OptionError otherwise."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise OptionError("shard", f"{{option}} must be I/N with 1 <= I <= N (e.g. 2/8), got "
                          f"{text!r}")
    return i, n


def shard_of(key: str, count: int) -> int:
    """The shard (1 .. ``count``) an input with ``key`` belongs to: a stable hash, the same
    on every machine and in every run."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count + 1


# ----------------------------------------------------------------------------- checks


def _check_clashes(items: list[BatchItem]) -> None:
    """UserError naming two inputs whose outputs are one path, or one inside the other (also
    told apart only by letter case, as on case-insensitive file systems)."""
    owners: dict[str, BatchItem] = {}
    for item in items:
        name = item.key.casefold()
        if name in owners:
            raise UserError(f"{owners[name].input} and {item.input} would both be written to "
                            f"{item.output}; give them separately or rename one")
        owners[name] = item
    for item in items:
        parents = Path(item.key.casefold()).parents
        holder = next((owners[p.as_posix()] for p in parents if p.as_posix() in owners), None)
        if holder is not None:
            raise UserError(f"the output of {item.input} ({item.output}) would lie inside the "
                            f"output of {holder.input} ({holder.output}); rename one")


def _check_places(items: list[BatchItem], output_dir: Path, *, overwrite: bool,
                  resume: bool) -> None:
    """UserError unless every output may be written: OUTPUT_DIR outside every input, and an
    existing output only with ``resume`` or ``overwrite`` and only if it is ours."""
    for item in items:
        if _within(item.input, output_dir) or _within(output_dir, item.input):
            raise UserError(f"OUTPUT_DIR {output_dir} and the input {item.input} lie one "
                            "inside the other; choose an output folder outside the inputs")
    existing = [item for item in items
                if item.output.exists() or item.output.is_symlink()]
    if existing and not (overwrite or resume):
        shown = ", ".join(str(item.output) for item in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise UserError(f"outputs exist: {shown}{more}; pass --resume to skip those complete "
                        "and current, or --overwrite to redo them")
    problems = []
    for item in existing:
        try:
            check_free(item.output, True, "OUTPUT", folder=output_kind(item.output) == "images")
        except UserError as e:
            problems.append(str(e))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)


def plan_batch(inputs: Sequence[PathLike], output_dir: PathLike, *,
               shard: tuple[int, int] | None = None, overwrite: bool = False,
               resume: bool = False) -> list[BatchItem]:
    """The inputs of a batch (:func:`find_items`), those of ``shard`` only if given, checked
    (clashes, existing outputs, OUTPUT_DIR among the inputs): UserError before any work."""
    output_dir = Path(output_dir)
    if overwrite and resume:
        raise UserError("--overwrite redoes every output, --resume only those that changed: "
                        "give one")
    items = find_items(inputs, output_dir)
    if not items:
        raise UserError(f"no videos or folders of images found in {', '.join(map(str, inputs))}")
    _check_clashes(items)  # across the whole batch, so that every shard sees the same clash
    if shard is not None:
        items = [item for item in items if shard_of(item.key, shard[1]) == shard[0]]
    _check_places(items, output_dir, overwrite=overwrite, resume=resume)
    return items


# ----------------------------------------------------------------------------- running


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) says the disk or quota is full."""
    full = (errno.ENOSPC, errno.EDQUOT)
    texts = tuple(os.strerror(code) for code in full)
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in full:
            return True
        if any(text in str(error) for text in texts):
            return True
        error = error.__cause__ or error.__context__
    return False


def one_line(error: BaseException) -> str:
    """An error as the one line a report gives: its message (with its type unless it is a
    UserError)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, UserError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_batch(items: Sequence[BatchItem], *, model: FlowDeblurNet,
              report: PathLike | None = None, progress: bool = True,
              **options) -> BatchResult:
    """Deblur every item with :func:`~.deblur.deblur_video` (``options``: its keyword
    arguments), one after another; an item that fails is recorded with a one-line reason and
    the next one starts, unless the disk is full, which stops the batch. ``report``: a JSON
    file of the per-input statuses, rewritten whole (atomically) after each input.

    A progress bar counts the files; :func:`~.deblur.deblur_video` shows one for the frames
    of the current input beneath it.
    """
    result = BatchResult([ItemResult(str(item.input), str(item.output)) for item in items])
    start = time.perf_counter()
    with tqdm(total=len(items), unit="file", disable=not progress, dynamic_ncols=True) as bar:
        for item, entry in zip(items, result.items):
            bar.set_postfix_str(item.key, refresh=True)
            began = time.perf_counter()
            try:
                done = deblur_video(item.input, item.output, model=model, progress=progress,
                                    **options)
            except Exception as e:  # a bad input fails alone
                entry.status, entry.reason = "failed", one_line(e)
                bar.write(f"flowdeblur: failed: {item.input}: {entry.reason}")
                if is_disk_full(e):
                    result.stopped = f"the disk is full ({item.output}): batch stopped"
            else:
                entry.status = "skipped" if done.skipped else "done"
                entry.frames, entry.reused = done.deblurred, done.reused
                entry.recomputed = done.recomputed
            entry.seconds = round(time.perf_counter() - began, 3)
            bar.update(1)
            result.seconds = time.perf_counter() - start
            if report is not None:
                atomic_write_text(report, result.to_json())
            if result.stopped:
                break
    return result


def deblur_batch(inputs: Sequence[PathLike], output_dir: PathLike, *,
                 model: FlowDeblurNet | None = None, shard: tuple[int, int] | None = None,
                 overwrite: bool = False, resume: bool = False, report: PathLike | None = None,
                 progress: bool = True, engine: str = "local", ray_address: str | None = None,
                 **options) -> BatchResult:
    """Deblur many inputs into ``output_dir``: :func:`plan_batch`, then :func:`run_batch`
    (``engine`` "local") or :func:`~.ray_engine.run_batch_ray` ("ray", on the Ray cluster at
    ``ray_address``, or a local one; a ``model`` given here is sent to the workers).

    ``options``: keyword arguments of :func:`~.deblur.deblur_video` (crf, lossless, batch,
    ...). ``model`` None loads the shipped weights.
    """
    if engine not in ENGINES:
        raise OptionError("engine", f"{{option}} must be one of {', '.join(ENGINES)}, got "
                          f"{engine!r}")
    items = plan_batch(inputs, output_dir, shard=shard, overwrite=overwrite, resume=resume)
    given = model is not None
    if model is None:
        from ..weights import load_pretrained  # only once the plan holds: a mistake is cheap

        model = load_pretrained()
    if engine == "ray":
        from .ray_engine import run_batch_ray  # Ray is imported only when asked for

        return run_batch_ray(items, model=model, send_model=given, address=ray_address,
                             report=report, progress=progress, overwrite=overwrite,
                             resume=resume, **options)
    return run_batch(items, model=model, report=report, progress=progress,
                     overwrite=overwrite, resume=resume, **options)
