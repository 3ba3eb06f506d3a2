"""Jobs of the page, run one at a time by the one worker thread that holds the model.

A job deblurs a session's upload with :func:`flowdeblur.inference.deblur_video` (the keyword
arguments ``flowdeblur deblur`` passes for the page's choices) into the session's folder,
then makes what the page shows (:func:`.results.finish`). Jobs of every tab wait in one
queue, first come first served. A job stops when cancelled (the Cancel button, or its tab
closing): at the next network call, through a forward pre-hook on the model, or at the next
frame written, whichever comes first; nothing of it is kept.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...errors import UserError
from ...inference import deblur_image_pair, deblur_video
from ...weights import PRETRAINED
from ...weights.int8 import attach_scales
from .options import JobOptions
from .results import finish, zip_folder
from .sessions import Session

#: How long the worker measures one forward for the first time estimate, (height, width).
CALIBRATION_SIZE = (128, 192)


class Cancelled(Exception):
    """The job was cancelled: its tab closed, or the user pressed Cancel."""


# ----------------------------------------------------------------------------- warnings

_route = threading.local()


@contextlib.contextmanager
def routed_warnings() -> Iterator[None]:
    """While the server runs: a warning raised inside a job goes to that job's list (and so
    to its page); any other is printed as one line on stderr."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sink = getattr(_route, "sink", None)
        if sink is not None:
            sink.append(str(message))
        else:
            print(f"flowdeblur: warning: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        # flowdeblur's own warnings every time: each job's page should see its own.
        warnings.filterwarnings("always", category=UserWarning, module=r"flowdeblur\.")
        warnings.showwarning = show
        yield


def _checkpoint(module, args) -> None:
    """Forward pre-hook on the model: a network call of a cancelled job raises
    :class:`Cancelled`. A plain function reading the worker thread's state, so that a private
    copy of the model (``copy.deepcopy`` in the runtime's fast paths) carries it as it is."""
    cancel = getattr(_route, "cancel", None)
    if cancel is not None and cancel.is_set():
        raise Cancelled


@contextlib.contextmanager
def collect_warnings(sink: list[str]) -> Iterator[None]:
    _route.sink = sink
    try:
        yield
    finally:
        _route.sink = None


# ----------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One deblur of one session's upload, and what the page is told about it."""

    session: Session
    number: int
    folder: Path
    inputs: list[Path]
    stem: str
    input_suffix: str | None  # the video's extension; None for image frames
    options: JobOptions
    clip: dict  # results.display_facts of the input
    sharp: list[Path] | None = None
    estimate: float | None = None  # seconds, before it starts
    state: str = "queued"  # queued, running, finishing, done, error, cancelled
    done: int = 0
    total: int = 0
    phase_started: float | None = None
    started: float | None = None
    ended: float | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    result: dict | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running", "finishing")

    def progress(self, done: int, total: int) -> None:
        """Progress hook: the count so far; raises :class:`Cancelled` once cancelled."""
        if self.cancel.is_set():
            raise Cancelled
        self.done, self.total = done, total

    def seconds_left(self, now: float) -> float | None:
        if self.state == "queued":
            return self.estimate
        if self.state != "running" or self.phase_started is None:
            return None
        if self.done == 0:
            return None if self.estimate is None else max(0.0, self.estimate -
                                                          (now - self.phase_started))
        rate = (now - self.phase_started) / self.done
        return rate * (self.total - self.done)

    def status(self, ahead: int) -> dict:
        now = time.monotonic()
        elapsed = None if self.started is None else (self.ended or now) - self.started
        return {"number": self.number, "state": self.state, "ahead": ahead, "done": self.done,
                "total": self.total or self.clip["frames"], "elapsed": elapsed,
                "seconds_left": self.seconds_left(now), "estimate": self.estimate,
                "message": self.message, "warnings": list(self.warnings),
                "result": self.result}


# ----------------------------------------------------------------------------- the worker


class Worker:
    """The thread that runs every job, one at a time, with the server's model (loaded from
    ``weights``, None: the shipped ones; its int8 scales are attached at the first int8 job)."""

    def __init__(self, model: torch.nn.Module, *, device: str,
                 weights: str | None = None) -> None:
        self.model = model
        self.device = device
        self.weights = weights
        self.seconds_per_pixel: float | None = None  # per pixel, frame and ensemble copy
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._current: Job | None = None
        self._stopping = False
        model.register_forward_pre_hook(_checkpoint)
        self._thread = threading.Thread(target=self._loop, name="flowdeblur-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def estimate(self, clip: dict, ensemble: int) -> float | None:
        """Seconds a clip (:func:`.results.display_facts`) should take, from the last
        measured speed; None before the first measurement."""
        if self.seconds_per_pixel is None:
            return None
        pixels = clip["frames"] * clip["width"] * clip["height"] * ensemble
        return pixels * self.seconds_per_pixel

    def load(self) -> dict:
        """Whether a job runs, and how many wait."""
        with self._cv:
            return {"running": self._current is not None, "waiting": len(self._queue)}

    def submit(self, job: Job) -> None:
        with self._cv:
            self._queue.append(job)
            self._cv.notify()

    def ahead(self, job: Job) -> int:
        """How many jobs run or wait before ``job`` (0 once it runs)."""
        with self._cv:
            if job not in self._queue:
                return 0
            return self._queue.index(job) + (self._current is not None)

    def cancel(self, job: Job) -> None:
        """Stop ``job``: a waiting one leaves the queue, a running one stops at its next
        network call or frame."""
        job.cancel.set()
        with self._cv:
            if job in self._queue:
                self._queue.remove(job)
                self._end(job, "cancelled", "cancelled")

    def end_session(self, session: Session) -> None:
        """The session's tab has gone: cancel its job; remove its folder now, or once its
        running job has stopped."""
        with self._cv:
            job = session.job
            if job is not None:
                job.cancel.set()
                if job in self._queue:
                    self._queue.remove(job)
                    self._end(job, "cancelled", "cancelled")
            running = self._current is not None and self._current.session is session
        if not running:
            session.remove_folder()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stopping = True
            for job in self._queue:
                job.cancel.set()
            if self._current is not None:
                self._current.cancel.set()
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -------------------------------------------------------------- in the worker thread

    def _loop(self) -> None:
        self._calibrate()
        while True:
            with self._cv:
                while not self._queue and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                job = self._current = self._queue.popleft()
            try:
                self._run(job)
            finally:
                with self._cv:
                    self._current = None
                if job.session.ended:
                    job.session.remove_folder()

    def _calibrate(self) -> None:
        """A first speed for time estimates (and the kernels compiled before the first job):
        one small pair, then one pair of :data:`CALIBRATION_SIZE`, timed."""
        try:
            with collect_warnings([]):
                deblur_image_pair(self.model, torch.rand(3, 64, 64), torch.rand(3, 64, 64),
                                  device=self.device)
                h, w = CALIBRATION_SIZE
                start = time.perf_counter()
                deblur_image_pair(self.model, torch.rand(3, h, w), torch.rand(3, h, w),
                                  device=self.device)
            self.seconds_per_pixel = (time.perf_counter() - start) / (h * w)
        except Exception as e:  # an estimate is a courtesy: the jobs still run without one
            print(f"flowdeblur: warning: no time estimates ({e})", file=sys.stderr, flush=True)

    def _run(self, job: Job) -> None:
        job.state, job.started = "running", time.monotonic()
        job.phase_started = job.started
        _route.cancel = job.cancel
        try:
            with collect_warnings(job.warnings):
                self._deblur(job)
        except Cancelled:
            self._end(job, "cancelled", "cancelled")
        except UserError as e:
            self._end(job, "error", job.session.tidy(str(e)))
        except Exception as e:  # a bug: said on the page and on stderr; the server goes on
            traceback.print_exc()
            self._end(job, "error", f"internal error ({type(e).__name__}: {e})")
        else:
            self._end(job, "done", "")
        finally:
            _route.cancel = None

    def _deblur(self, job: Job) -> None:
        out_dir = job.folder / "out"
        ext = job.options.extension(job.input_suffix)
        output = out_dir / f"{job.stem}_deblurred{ext}"
        options = dict(job.options.deblur)
        if options["precision"] == "int8" and getattr(self.model, "int8_qparams", None) is None:
            attach_scales(self.model, self.weights if self.weights is not None else PRETRAINED)
        start = time.perf_counter()
        has_flow = getattr(self.model, "flownet", None) is not None  # a variant may have none
        deblur_video(job.inputs if len(job.inputs) > 1 else job.inputs[0], output,
                     model=self.model, save_flow=job.folder / "flow" if has_flow else None,
                     progress=False, on_progress=job.progress, **options)
        pixels = job.total * job.clip["width"] * job.clip["height"] * options["ensemble"]
        if pixels:
            self.seconds_per_pixel = (time.perf_counter() - start) / pixels
        job.state, job.done, job.phase_started = "finishing", 0, time.monotonic()
        side = out_dir / f"{job.stem}_side_by_side{ext or '.mp4'}"
        encoding = {k: options[k] for k in ("crf", "chroma", "lossless", "video_codec", "fps")}
        result = finish(job.folder, job.inputs, output, side, encoding=encoding,
                        sharp=job.sharp, step=job.progress)
        if not ext:  # a folder of PNGs: downloaded as one zip
            output = zip_folder(output, output.with_name(output.name + ".zip"))
        session = job.session
        flow = [job.folder / "flow" / name for name in result.pop("flow_names")]
        result.update(
            job=session.relative(job.folder), output=session.relative(output),
            side_by_side=session.relative(side),
            flow=[session.relative(p) for p in flow] if all(p.is_file() for p in flow) else None)
        job.result = result

    def _end(self, job: Job, state: str, message: str) -> None:
        job.state, job.message, job.ended = state, message, time.monotonic()
        if state in ("cancelled", "error"):
            shutil.rmtree(job.folder, ignore_errors=True)
