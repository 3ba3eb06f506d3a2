"""The benchmark report: markdown tables ready for docs/BENCHMARKS.md, and the JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...errors import UserError
from ...media.atomic import atomic_write_text
from .results import BenchReport, InferenceResult, Timing

#: The paper's figure (Table III): 0.20 s per 720x1280 frame on an NVIDIA Titan Xp.
PAPER_SECONDS_PER_FRAME = 0.20
PAPER_GPU = "NVIDIA TITAN Xp"
#: Titan Xp peak fp32: 3840 CUDA cores x 2 FLOP x 1.582 GHz boost = 12.1 TFLOP/s.
PAPER_GPU_FP32_TFLOPS = 12.1


def _ms_value(ms: float, digits: int = 2) -> str:
    return f"{ms:,.0f}" if abs(ms) >= 1000 else f"{ms:.{digits}f}"


def _ms(t: Timing | None, digits: int = 2) -> str:
    return "-" if t is None else _ms_value(t.median_s * 1e3, digits)


def _fps(fps: float) -> str:
    return f"{fps:,.1f}" if fps >= 10 else f"{fps:.2f}"


def _best_gpu_row(report: BenchReport, precision: str | None = None) -> InferenceResult | None:
    rows = [r for r in report.inference if r.device == "cuda" and r.full is not None
            and (precision is None or r.precision == precision)]
    return min(rows, key=lambda r: r.full.median_s, default=None)


def _hardware_lines(report: BenchReport, peak_tflops: float | None,
                    peak_part: str | None) -> list[str]:
    """The paper's Table III beside the fastest GPU rows, scaled by peak fp32 throughput."""
    gpus = report.machine.get("gpus") or []
    best = _best_gpu_row(report)
    if best is None or not gpus:
        return []
    gpu = gpus[0]
    if not peak_tflops:
        return [f"Paper (Table III): {PAPER_SECONDS_PER_FRAME:.2f} s per 720x1280 frame on a "
                f"{PAPER_GPU}. To compare per unit of hardware, pass --peak-tflops (this GPU's "
                "peak fp32 TFLOP/s without tensor cores, from its data sheet)."]
    part = peak_part or f"{gpu} (peak given on the command line)"
    hw = peak_tflops / PAPER_GPU_FP32_TFLOPS
    size_note = "" if tuple(report.size) == (720, 1280) else (
        f" (this run's frames are {report.size[0]}x{report.size[1]}, not 720x1280: "
        "the comparison is only indicative)")
    lines = [f"Paper (Table III): {PAPER_SECONDS_PER_FRAME:.2f} s per 720x1280 frame on a "
             f"{PAPER_GPU}.{size_note}"]
    candidates = [("fastest", best)]
    best_fp32 = _best_gpu_row(report, "fp32")
    if best_fp32 is not None and best_fp32 is not best:
        candidates.append(("fastest fp32", best_fp32))
    for label, row in candidates:
        speedup = PAPER_SECONDS_PER_FRAME / row.full.median_s
        lines.append(f"- {label} here: {row.full.median_ms:.2f} ms ({row.precision}, {row.mode})"
                     f" on {gpu}: {speedup:,.0f}x the paper's speed; {speedup / hw:,.1f}x per "
                     "unit of hardware.")
    lines.append(f"Hardware basis: peak fp32 without tensor cores: {PAPER_GPU} "
                 f"{PAPER_GPU_FP32_TFLOPS} TFLOP/s, {part} {peak_tflops} TFLOP/s, ratio "
                 f"{hw:.2f}. bf16 rows also use tensor cores, which the basis does not count, "
                 "so their per-hardware figure flatters them.")
    return lines


def _devices_text(report: BenchReport) -> str:
    names = []
    for dev in dict.fromkeys(r.device for r in report.inference):
        if dev == "cuda" and report.machine.get("gpus"):
            names.append(f"cuda = {report.machine['gpus'][0]}")
        elif dev == "cpu":
            names.append(f"cpu = {report.machine['cpu']} ({report.machine['usable_cores']} cores)")
        else:
            names.append(dev)
    return "; ".join(names)


def _header_lines(report: BenchReport) -> list[str]:
    m = report.machine
    gpus = ", ".join(m.get("gpus") or []) or "none"
    return [
        f"### flowdeblur bench, {report.date}",
        "",
        f"- command: `{report.command}`",
        f"- machine: {m['cpu']}, {m['usable_cores']} usable of {m['logical_cores']} logical "
        f"cores; GPU: {gpus}",
        f"- software: torch {m['torch']}, triton {m['triton'] or '-'}, numba {m['numba'] or '-'}"
        f", CUDA {m['cuda'] or '-'}, cuDNN {m['cudnn'] or '-'}, flowdeblur {m['flowdeblur']}",
        f"- model: `{report.variant}`, {report.parameters:,} parameters (biases included); "
        "RNN backend: " + ", ".join(f"{k} `{v}`" for k, v in report.backends.items())
        + "; layout: " + ", ".join(f"{k} {v}" for k, v in report.layouts.items()),
        f"- input: batch {report.batch}, {report.size[0]}x{report.size[1]} "
        f"(padded to {report.padded_size[0]}x{report.padded_size[1]})"
        + (f"; convolutions {report.conv_gflop:,.1f} GFLOP per forward"
           if report.conv_gflop else ""),
        "",
    ]


def _inference_row(report: BenchReport, r: InferenceResult) -> str:
    if r.error and r.full is None:
        return f"| {r.device} | {r.precision} | {r.mode} | {r.error} | | | | | | |"
    fps = _fps(report.batch / r.full.median_s) if r.full else "-"
    rnn = (_ms_value((r.full.median_s - r.convs.median_s) * 1e3)
           if r.full and r.convs else "-")
    ratio = f"{r.ratio:.2f}" if r.ratio else "-"
    firsts = [t.first_call_s for t in (r.convs, r.full) if t and t.first_call_s]
    first = f"{max(firsts):.1f}" if firsts else "-"
    mem = f"{r.peak_memory_gib:.2f}" if r.peak_memory_gib is not None else "-"
    return (f"| {r.device} | {r.precision} | {r.mode} | {_ms(r.convs)} | "
            f"{_ms(r.full)} | {ratio} | {rnn} | {fps} | {first} | {mem} |")


def _inference_lines(report: BenchReport) -> list[str]:
    if not report.inference:
        return []
    out = [
        f"Inference on {_devices_text(report)}, milliseconds per forward (median). "
        "Convs only: every spatial RNN replaced by `x.repeat(1, 4, 1, 1) * w`; "
        "RNN cost = full - convs only.",
        "",
        "| device | precision | mode | convs only (ms) | full network (ms) | full / convs "
        "| RNN cost (ms) | frames/s | first call (s) | peak mem (GiB) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    out += [_inference_row(report, r) for r in report.inference]
    rows = [r for r in report.inference if r.convs is not None]
    if report.conv_gflop and rows:
        fastest = min(rows, key=lambda r: r.convs.median_s)
        rate = report.conv_gflop / fastest.convs.median_s  # GFLOP/s
        rate_text = f"{rate / 1e3:,.1f} TFLOP/s" if rate >= 1e3 else f"{rate:,.1f} GFLOP/s"
        out += ["", f"Convolutions at their fastest ({fastest.device} {fastest.precision}"
                f" {fastest.mode}): {rate_text} achieved."]
    return out + [""]


def _rnn_lines(report: BenchReport) -> list[str]:
    out = []
    for backward in (False, True):
        rows = [r for r in report.rnn_layers if r.backward == backward]
        if not rows:
            continue
        shapes = next((r.shapes for r in rows if r.shapes), [])
        heads = [f"x {'x'.join(map(str, s))}" for s in shapes] or ["layers"]
        what = "forward + backward, training shapes" if backward else "forward"
        out += [
            f"The three RNN layers alone ({what}; contiguous inputs, gates 4x the channels), "
            "milliseconds (median):",
            "",
            "| device | precision | backend | " + " | ".join(heads) + " | together |",
            "|---|---|---|" + "--:|" * (len(heads) + 1),
        ]
        for r in rows:
            if r.error:
                out.append(f"| {r.device} | {r.precision} | {r.backend} | {r.error} |")
                continue
            cells = " | ".join(_ms(t, 3) for t in r.timings)
            out.append(f"| {r.device} | {r.precision} | {r.backend} | {cells} | "
                       f"{r.total_s * 1e3:.3f} |")
        out.append("")
    return out


def _train_lines(report: BenchReport) -> list[str]:
    if not report.train:
        return []
    t0 = report.train[0]
    out = [
        f"Training step (batch {t0.batch}, {t0.size[0]}x{t0.size[1]}, forward + Eq. 14 loss "
        "+ backward + Adam), milliseconds (median):",
        "",
        "| device | precision | mode | stand-in RNN (ms) | full network (ms) | full / "
        "stand-in |",
        "|---|---|---|--:|--:|--:|",
    ]
    for r in report.train:
        if r.error and r.full is None:
            out.append(f"| {r.device} | {r.precision} | {r.mode} | {r.error} | | |")
            continue
        ratio = f"{r.ratio:.2f}" if r.ratio else "-"
        out.append(f"| {r.device} | {r.precision} | {r.mode} | {_ms(r.standin)} | "
                   f"{_ms(r.full)} | {ratio} |")
    return out + [""]


def format_report(report: BenchReport, *, peak_tflops: float | None = None,
                  peak_part: str | None = None) -> str:
    """Markdown: header (command, machine, versions, date), then one table per measurement.

    ``peak_tflops``: the GPU's peak fp32 TFLOP/s without tensor cores; with it, the fastest
    GPU rows are set beside the paper's Table III per unit of hardware (``peak_part`` names
    the part the figure is for; default: the GPU's own name).
    """
    out = (_header_lines(report) + _inference_lines(report) + _rnn_lines(report)
           + _train_lines(report) + _hardware_lines(report, peak_tflops, peak_part))
    if report.notes:
        out += [""] + [f"Note: {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def write_json(report: BenchReport, path: str | os.PathLike) -> None:
    """Write ``report.to_json()`` to ``path``, whole or not at all."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")
    try:
        atomic_write_text(path, json.dumps(report.to_json(), indent=2) + "\n")
    except OSError as e:
        raise UserError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
