"""``flowdeblur batch --engine ray``: a batch run as Ray tasks (the ``[cluster]`` extra).

Ray places and retries the work; this module only says what the work is:

- one *start* task per input (:func:`_start_task`), on a worker: it plans the output
  (:func:`~.files.plan_output`: the checks, the provenance, ``--resume``), and deblurs an input
  that is not a long video there and then (:func:`~.files.deblur_video`); for a long video it
  returns the video's chunks (:mod:`.chunks`);
- one *piece* task per unfinished chunk (:func:`_piece_task`), on any worker: it writes the
  chunk's piece (:func:`~.chunks.deblur_piece`), published whole in the hidden folder beside
  the output;
- the driver (this process) holds the lock of each chunked output, reuses the pieces a killed
  run finished, joins the pieces into the output once all are there
  (:func:`~.chunks.join_pieces`), and writes the report, with the worker ids of each input.

A worker loads the network once (a cache per worker process) and checks that its flowdeblur
version and the weights' digest equal the driver's; it runs torch with as many threads as
Ray gave it CPUs. A task whose worker died is run again (``max_retries``); an error of the
input itself is not retried and fails that input alone.

Assumptions, for a cluster: every node sees the inputs and OUTPUT_DIR at the same paths (a
shared file system) and has the same flowdeblur installed. Without an address a local Ray is
started, bound to 127.0.0.1, without a dashboard; Ray's usage statistics are off.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..errors import UserError
from ..media.atomic import TargetLock, atomic_write_text
from ..models import FlowDeblurNet
from ..runtime import Runtime
from ..weights import load_pretrained, load_weights
from .batch import BatchItem, BatchResult, ItemResult, is_disk_full, one_line
from .chunks import DEFAULT_CHUNK_FRAMES, ChunkFolder, PieceJob, deblur_piece, join_pieces
from .files import deblur_video, plan_output
from .provenance import flowdeblur_version, weights_sha256

__all__ = ["ModelSpec", "run_batch_ray"]

#: How many times Ray runs a task again after its worker died.
TASK_RETRIES = 3

#: The options of deblur_video that shape an output (given to plan_output).
_SHAPING = ("batch", "tile", "tile_overlap", "crf", "chroma", "lossless", "fps", "bits",
            "side_by_side", "scene_cuts", "ensemble", "video_codec")


def import_ray():
    """Ray, with its usage statistics off; UserError naming the extra when it is missing."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray: pip install 'flowdeblur[cluster]'") from None
    return ray


@dataclass(frozen=True)
class ModelSpec:
    """How a worker gets the driver's network: from ``weights`` (a file at the same path on
    every node; None: the shipped weights), or from ``sent`` (a one-element list holding the
    Ray object of the network itself, for a network that came from no file)."""

    weights: str | None
    sent: list | None
    digest: str
    version: str
    int8: bool = False  # --precision int8: a network loaded from a file gets its int8 scales


#: The network of this worker process: loaded once, used by every task of the batch.
_LOADED: dict[str, FlowDeblurNet] = {}


def _worker_model(spec: ModelSpec) -> FlowDeblurNet:
    # A network sent by the driver is known by its object, one loaded from a file by digest.
    key = spec.sent[0].hex() if spec.sent is not None else spec.digest
    if key in _LOADED:
        return _LOADED[key]
    ray = import_ray()
    here = flowdeblur_version()
    if here != spec.version:
        raise UserError(f"flowdeblur {here} is installed on a Ray worker and {spec.version} on "
                        "the driver; install the same version on every node")
    if spec.sent is not None:
        model = ray.get(spec.sent[0])
    else:
        model = load_weights(spec.weights) if spec.weights else load_pretrained()
        if spec.int8:
            from ..weights import PRETRAINED
            from ..weights.int8 import attach_scales

            attach_scales(model, spec.weights or PRETRAINED)
    if weights_sha256(model) != spec.digest:
        raise UserError("the weights a Ray worker loaded differ from the driver's "
                        f"({spec.weights or 'the shipped weights'}); every node must see the "
                        "same file")
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    _LOADED.clear()
    _LOADED[key] = model
    return model


def _worker_id() -> str:
    import ray

    return ray.get_runtime_context().get_worker_id()


def _start_task(spec: ModelSpec, input: str, output: str, options: dict) -> dict:
    """On a worker: plan one output; deblur it unless it is a video made in chunks, whose
    jobs are returned instead."""
    model = _worker_model(spec)
    runtime = Runtime.resolve(options["device"], options["precision"])
    resume, overwrite = options["resume"], options["overwrite"] or options["resume"]
    plan = plan_output([input], Path(output), model=model, runtime=runtime,
                       precision=options["precision"], overwrite=overwrite, resume=resume,
                       chunk_frames=options["chunk_frames"],
                       options={k: options[k] for k in _SHAPING})
    if plan.skipped:
        return {"status": "skipped", "worker": _worker_id()}
    if plan.jobs is not None:
        return {"status": "chunks", "jobs": plan.jobs, "worker": _worker_id(),
                "device": plan.runtime.device.type, "precision": plan.runtime.precision}
    done = deblur_video(input, output, model=model, progress=False, **options)
    return {"status": "done", "frames": done.deblurred, "worker": _worker_id()}


def _piece_task(spec: ModelSpec, job: PieceJob, device: str, precision: str) -> dict:
    """On a worker: deblur one chunk into its piece."""
    model = _worker_model(spec)
    piece = deblur_piece(job, model, Runtime.resolve(device, precision))
    return {"frames": piece.frames, "worker": _worker_id()}


def _connect(ray, address: str | None) -> bool:
    """Join the Ray at ``address``, or start a local one; False when this process was
    already connected (then it is left connected)."""
    if ray.is_initialized():
        return False
    quiet = dict(logging_level="WARNING", log_to_driver=False)
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)
    return True


@dataclass
class _Video:
    """A chunked output in progress on the driver."""

    folder: ChunkFolder
    lock: TargetLock
    device: str
    precision: str
    remaining: set[int]


def run_batch_ray(items: Sequence[BatchItem], *, model: FlowDeblurNet,
                  weights: str | os.PathLike | None = None, send_model: bool = False,
                  address: str | None = None, worker_cpus: float = 1,
                  worker_gpus: float | None = None,
                  report: str | os.PathLike | None = None, progress: bool = True,
                  resume: bool = False, overwrite: bool = False,
                  chunk_frames: int = DEFAULT_CHUNK_FRAMES, **options) -> BatchResult:
    """Deblur every item on Ray (see the module docstring); a failed input is reported with a
    one-line reason and the others go on, a full disk stops the batch.

    Args:
        model: the driver's network; workers load ``weights`` (None: the shipped weights) and
            check that they hold the same, or with ``send_model`` receive ``model`` itself.
        address: the Ray cluster to join (``ray://`` or ``HOST:PORT``); None starts a local
            one (or uses the one this process is connected to).
        worker_cpus, worker_gpus: the resources of one task (one worker); ``worker_gpus``
            None: one GPU when the cluster has GPUs and ``device`` is not "cpu", else none.
        options: keyword arguments of :func:`~.files.deblur_video`.
    """
    ray = import_ray()
    options = dict(options, resume=resume, overwrite=overwrite, chunk_frames=chunk_frames)
    options.setdefault("device", "auto")
    options.setdefault("precision", "auto")
    options.update({k: options.get(k, default) for k, default in (
        ("batch", 1), ("tile", None), ("tile_overlap", None), ("crf", None), ("chroma", "444"),
        ("lossless", False), ("fps", None), ("bits", 8), ("side_by_side", False),
        ("scene_cuts", True), ("ensemble", 1), ("video_codec", None))})
    started = _connect(ray, address)
    try:
        if worker_gpus is None:
            has_gpus = ray.cluster_resources().get("GPU", 0) >= 1
            worker_gpus = 1 if has_gpus and str(options["device"]) != "cpu" else 0
        spec = ModelSpec(None if weights is None else str(Path(weights).resolve()),
                         [ray.put(model)] if send_model else None, weights_sha256(model),
                         flowdeblur_version(), int8=options["precision"] == "int8")
        return _Driver(ray, spec, items, options, report=report, progress=progress,
                       resources=dict(num_cpus=worker_cpus, num_gpus=worker_gpus)).run()
    finally:
        if started:
            ray.shutdown()


class _Driver:
    """The loop of :func:`run_batch_ray`: submit, wait for any task, act on its result."""

    def __init__(self, ray, spec: ModelSpec, items: Sequence[BatchItem], options: dict, *,
                 report, progress: bool, resources: dict) -> None:
        self.ray, self.spec, self.items, self.options = ray, spec, list(items), options
        self.report, self.progress = report, progress
        self.start = ray.remote(_start_task).options(max_retries=TASK_RETRIES, **resources)
        self.piece = ray.remote(_piece_task).options(max_retries=TASK_RETRIES, **resources)
        self.result = BatchResult([ItemResult(str(i.input), str(i.output)) for i in items])
        self.pending: dict = {}  # object ref -> (item index, chunk job or None)
        self.videos: dict[int, _Video] = {}
        self.began: dict[int, float] = {}

    def run(self) -> BatchResult:
        clock = time.perf_counter()
        for i, item in enumerate(self.items):
            self.began[i] = time.perf_counter()
            ref = self.start.remote(self.spec, str(item.input), str(item.output), self.options)
            self.pending[ref] = (i, None)
        with contextlib.ExitStack() as held, tqdm(
                total=len(self.items), unit="file", disable=not self.progress,
                dynamic_ncols=True) as bar:
            held.callback(self._release_all)
            while self.pending and not self.result.stopped:
                ready, _ = self.ray.wait(list(self.pending), num_returns=1)
                i, job = self.pending.pop(ready[0])
                finished = self._settle(i, job, ready[0])
                self.result.seconds = time.perf_counter() - clock
                if finished:
                    bar.update(1)
                    if self.report is not None:
                        atomic_write_text(self.report, self.result.to_json())
            for ref in self.pending:  # a full disk stopped the batch
                self.ray.cancel(ref)
        self.result.seconds = time.perf_counter() - clock
        if self.report is not None:
            atomic_write_text(self.report, self.result.to_json())
        return self.result

    def _settle(self, i: int, job: PieceJob | None, ref) -> bool:
        """Act on the result of a task of item ``i``; True when the item is finished."""
        entry = self.result.items[i]
        if entry.status == "failed":  # an earlier chunk of it failed: nothing more to do
            return False
        try:
            value = self.ray.get(ref)
            if job is None:
                return self._started(i, value)
            return self._pieced(i, job, value)
        except Exception as e:  # a bad input fails alone
            self._fail(i, e)
            return True

    def _started(self, i: int, value: dict) -> bool:
        entry = self.result.items[i]
        entry.workers.append(value["worker"])
        if value["status"] != "chunks":
            entry.status = value["status"]
            entry.frames = value.get("frames", 0)
            entry.seconds = round(time.perf_counter() - self.began[i], 3)
            return True
        jobs = value["jobs"]
        lock = TargetLock(jobs[0].output)
        lock.__enter__()  # held until the pieces are joined
        folder = ChunkFolder(jobs)
        video = _Video(folder, lock, value["device"], value["precision"], set())
        self.videos[i] = video
        folder.open(resume=self.options["resume"])
        entry.reused = sum(folder.finished.values())
        for job in jobs:
            if job.chunk.index not in folder.finished:
                video.remaining.add(job.chunk.index)
                ref = self.piece.remote(self.spec, job, video.device, video.precision)
                self.pending[ref] = (i, job)
        return self._join_if_complete(i)

    def _pieced(self, i: int, job: PieceJob, value: dict) -> bool:
        entry, video = self.result.items[i], self.videos[i]
        video.folder.finished[job.chunk.index] = value["frames"]
        video.remaining.discard(job.chunk.index)
        entry.frames += value["frames"]
        if job.chunk.index in video.folder.interrupted:
            entry.recomputed += value["frames"]
        if value["worker"] not in entry.workers:
            entry.workers.append(value["worker"])
        return self._join_if_complete(i)

    def _join_if_complete(self, i: int) -> bool:
        video = self.videos[i]
        if video.remaining:
            return False
        overwrite = self.options["overwrite"] or self.options["resume"]
        join_pieces(video.folder, record=video.folder.jobs[0].provenance, overwrite=overwrite)
        self._release(i)
        entry = self.result.items[i]
        entry.status = "done"
        entry.seconds = round(time.perf_counter() - self.began[i], 3)
        return True

    def _fail(self, i: int, error: Exception) -> None:
        cause = getattr(error, "cause", None)
        reason = error if not isinstance(cause, BaseException) else cause
        entry = self.result.items[i]
        entry.status, entry.reason = "failed", one_line(reason)
        entry.seconds = round(time.perf_counter() - self.began[i], 3)
        tqdm.write(f"flowdeblur: failed: {entry.input}: {entry.reason}")
        for ref, (owner, _) in list(self.pending.items()):
            if owner == i:
                self.ray.cancel(ref)
                del self.pending[ref]
        self._release(i)
        if is_disk_full(reason):
            self.result.stopped = f"the disk is full ({entry.output}): batch stopped"

    def _release(self, i: int) -> None:
        video = self.videos.pop(i, None)
        if video is not None:
            video.lock.__exit__(None, None, None)

    def _release_all(self) -> None:
        for i in list(self.videos):
            self._release(i)
