"""A whole benchmark run: every table's rows on every device, and the machine they ran on."""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import platform
import sys
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

from ... import __version__
from ...errors import UserError
from ...models import VARIANTS, FlowDeblurNet, count_parameters
from ...ops import backend_available, resolve_backend
from ...runtime import Runtime, resolve_device
from .plan import BenchConfig, DevicePlan, check_config, padded_frame_size, plan_device
from .results import BenchReport, InferenceResult, RnnLayerResult, Timing, TrainResult
from .standin import use_standin_rnn
from .timing import (
    CUDA_ONLY_MODES,
    RUNTIME_MODES,
    count_conv_gflop,
    time_inference,
    time_rnn_layers,
)
from .train_step import time_train_step


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU model and cores, GPU names, library versions: what the report's header says."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _package_version("triton"),
        "numba": _package_version("numba"),
        "flowdeblur": __version__,
        "gpus": [],
        "cuda": torch.version.cuda,
        "cudnn": None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()



def _error_text(e: BaseException) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"[:200]


def _standin_if(model: FlowDeblurNet, on: bool) -> contextlib.AbstractContextManager:
    return use_standin_rnn(model) if on else contextlib.nullcontext()


def _new_report(config: BenchConfig, model: FlowDeblurNet, size: tuple[int, int]) -> BenchReport:
    padded = padded_frame_size(size)
    report = BenchReport(
        command=config.command,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine_info(),
        variant=config.variant,
        parameters=count_parameters(model),
        size=tuple(size),
        padded_size=padded,
        batch=config.batch,
        backends={},
        conv_gflop=count_conv_gflop(config.variant, padded, config.batch),
    )
    if config.quick:
        report.notes.append(f"--quick: {size[0]}x{size[1]} frames and 1-2 repeats; a smoke "
                            "test of the command, not a measurement.")
    return report


def _set_up_device(report: BenchReport, config: BenchConfig, model: FlowDeblurNet,
                   dev: torch.device, plan: DevicePlan) -> str:
    """Pin the model's RNN backend for ``dev`` and note the device's facts; returns the backend."""
    backend = resolve_backend(config.rnn_backend, dev)
    if not backend_available(backend, dev):
        raise UserError(f"spatial_rnn backend {backend!r} is not available on {dev.type}")
    report.backends[dev.type] = backend
    runtime = Runtime.resolve(dev, "fp32", purpose="report", channels_last=config.channels_last)
    report.layouts[dev.type] = "channels_last" if runtime.channels_last else "NCHW"
    model.set_rnn_backend(backend)
    if dev.type == "cpu":
        report.notes.append(
            f"CPU: median of {plan.repeats} run(s) after {max(plan.warmup, 1)} warm-up "
            f"(a frame takes seconds on few cores), {torch.get_num_threads()} torch threads;"
            " torch.compile is left out unless --modes asks for it (slow to compile here).")
    if dev.type == "cuda" and torch.backends.cudnn.allow_tf32:
        report.notes.append("CUDA fp32 rows: cuDNN may use TF32 tensor cores for "
                            "convolutions (torch.backends.cudnn.allow_tf32 = True, "
                            "PyTorch's default).")
    return backend


def _time_pair(row: InferenceResult | TrainResult, names: tuple[str, str], model: FlowDeblurNet,
               timer: Callable[[], Timing], log: Callable[[str], None]) -> None:
    """Time with the stand-in RNN (``names[0]``), then the real one (``names[1]``), into
    ``row``; a failure is recorded in ``row.error`` so the other configurations go on."""
    label = f"{row.device} {row.precision} {row.mode}" + (
        " train" if isinstance(row, TrainResult) else "")
    try:
        for which in names:
            with _standin_if(model, which == names[0]):
                t = timer()
            setattr(row, which, t)
            _free(torch.device(row.device))
            log(f"{label} {which}: {t.median_ms:.3f} ms (first call {t.first_call_s:.1f} s)")
    except UserError:
        raise
    except Exception as e:  # keep the other configurations' figures
        row.error = _error_text(e)
        log(f"{label}: FAILED {row.error}")
        traceback.print_exc(file=sys.stderr)
        _free(torch.device(row.device))


def _time_inference_rows(report: BenchReport, config: BenchConfig, model: FlowDeblurNet,
                         dev: torch.device, plan: DevicePlan, log: Callable[[str], None]) -> None:
    for precision in plan.precisions:
        for mode in plan.modes:
            row = InferenceResult(device=dev.type, precision=precision, mode=mode)
            report.inference.append(row)
            if mode in CUDA_ONLY_MODES and dev.type != "cuda":
                row.error = "needs CUDA"
                continue
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)

            def timer(precision=precision, mode=mode) -> Timing:
                return time_inference(
                    model, device=dev, precision=precision, mode=mode, size=report.size,
                    batch=config.batch, repeats=plan.repeats, warmup=plan.warmup,
                    channels_last=config.channels_last, graph_mode=config.graph_mode,
                    # Freezing is an inductor option: it applies where something is compiled.
                    freeze=config.freeze and RUNTIME_MODES[mode] == "compile")

            _time_pair(row, ("convs", "full"), model, timer, log)
            if dev.type == "cuda":
                row.peak_memory_gib = torch.cuda.max_memory_allocated(dev) / 2**30


def _time_rnn_row(report: BenchReport, *, dev: torch.device, precision: str, backend: str,
                  padded_size: tuple[int, int], batch: int, backward: bool, repeats: int,
                  warmup: int, log: Callable[[str], None]) -> None:
    try:
        shapes, timings = time_rnn_layers(
            device=dev, precision=precision, backend=backend, padded_size=padded_size,
            batch=batch, repeats=repeats, warmup=warmup, backward=backward)
        row = RnnLayerResult(dev.type, precision, backend, shapes, timings, backward=backward)
        log(f"{dev.type} {precision} rnn layers ({backend}"
            f"{', fwd+bwd' if backward else ''}): {row.total_s * 1e3:.3f} ms")
    except Exception as e:
        row = RnnLayerResult(dev.type, precision, backend, [], [], error=_error_text(e),
                             backward=backward)
        traceback.print_exc(file=sys.stderr)
    report.rnn_layers.append(row)
    _free(dev)


def _time_rnn_rows(report: BenchReport, config: BenchConfig, dev: torch.device,
                   plan: DevicePlan, backend: str, log: Callable[[str], None]) -> None:
    for precision in plan.precisions:
        _time_rnn_row(report, dev=dev, precision=precision, backend=backend,
                      padded_size=report.padded_size, batch=config.batch, backward=False,
                      repeats=plan.repeats, warmup=plan.warmup, log=log)
    if config.train:  # the same layers at training shapes, forward + backward
        _time_rnn_row(report, dev=dev, precision=plan.train_precision, backend=backend,
                      padded_size=padded_frame_size(plan.train_size), batch=plan.train_batch,
                      backward=True, repeats=plan.train_repeats, warmup=plan.train_warmup,
                      log=log)


def _time_train_rows(report: BenchReport, config: BenchConfig, model: FlowDeblurNet,
                     dev: torch.device, plan: DevicePlan, log: Callable[[str], None]) -> None:
    Runtime.resolve(dev, plan.train_precision, purpose="report")  # validates before timing
    for mode in plan.train_modes:
        row = TrainResult(dev.type, plan.train_precision, mode, plan.train_batch,
                          plan.train_size)
        report.train.append(row)
        if mode in CUDA_ONLY_MODES and dev.type != "cuda":
            row.error = "needs CUDA"
            continue
        if mode == "graph":
            row.error = "inference only"
            continue

        def timer(mode=mode) -> Timing:
            return time_train_step(
                model, device=dev, precision=plan.train_precision, mode=mode,
                batch=plan.train_batch, size=plan.train_size, repeats=plan.train_repeats,
                warmup=plan.train_warmup, channels_last=config.channels_last,
                graph_mode=config.graph_mode)

        _time_pair(row, ("standin", "full"), model, timer, log)


def run_benchmark(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchReport:
    """Run every measurement ``config`` asks for; failures of one configuration are recorded
    in its row (``error``) and the run goes on. ``log`` receives one line per measurement."""
    log = log or (lambda line: None)
    size = check_config(config)
    devices = list(dict.fromkeys(resolve_device(name) for name in config.devices))
    plans = {dev: plan_device(config, dev) for dev in devices}  # validate before timing

    torch.manual_seed(0)
    model = FlowDeblurNet(config.variant, rnn_backend=config.rnn_backend)
    report = _new_report(config, model, size)
    for dev in devices:
        plan = plans[dev]
        backend = _set_up_device(report, config, model, dev, plan)
        if config.inference:
            _time_inference_rows(report, config, model, dev, plan, log)
        if config.rnn_layers and VARIANTS[config.variant].rnn_mode == "rnn":
            _time_rnn_rows(report, config, dev, plan, backend, log)
        if config.train:
            _time_train_rows(report, config, model, dev, plan, log)
    return report
