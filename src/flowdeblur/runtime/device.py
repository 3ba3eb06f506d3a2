"""The rules for where and in what precision the network runs, each written once.

:class:`flowdeblur.runtime.Runtime` and :func:`flowdeblur.runtime.prepare_for_inference`
both resolve through these functions, so ``"auto"`` means the same thing everywhere.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch

from ..errors import UserError

#: Precision name -> the dtype the network computes in (fp32 runs without autocast).
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}

#: Precisions that exist only for inference on the CPU (no storage dtype): int8 runs the
#: convolutions quantized (:mod:`flowdeblur.runtime.int8`), everything else in float32.
INFERENCE_ONLY_PRECISIONS = ("int8",)

#: What a run is for. "deblur": the user's own frames, fastest precision that keeps quality
#: (bf16 where the hardware computes it natively). "report": figures the project publishes
#: (evaluation, demo, benchmarks, golden outputs), always fp32 unless asked otherwise.
PURPOSES = ("deblur", "report")

#: Read for the CPU's instruction-set flags (Linux); elsewhere no flags are known.
CPUINFO = Path("/proc/cpuinfo")

#: CPU flags of native bf16 arithmetic: AVX512-BF16 dot products or AMX bf16 tiles. Without
#: them PyTorch emulates bf16 convolutions in fp32 and gains nothing.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an explicit device must exist here.

    UserError for a name torch does not know, a device type other than cpu/cuda, CUDA asked
    for without CUDA, or a CUDA index beyond the devices present.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"device {str(dev)!r} is not supported; use cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {str(dev)!r} asked for, but CUDA is not available here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"device {str(dev)!r} asked for, but only {torch.cuda.device_count()} CUDA "
                "device(s) exist"
            )
    return dev


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first CPU listed in :data:`CPUINFO` (empty if none)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_computes_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (see :data:`NATIVE_BF16_FLAGS`)."""
    return not cpu_flags().isdisjoint(NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device, purpose: str = "deblur") -> str:
    """``"auto"`` -> the default precision for ``purpose`` on ``device``; checks the others.

    Defaults: "report" -> fp32; "deblur" -> bf16 on CUDA and on CPUs with native bf16
    (:func:`cpu_computes_bf16`), fp32 elsewhere. With the shipped weights on a 2-core
    AVX512-BF16 CPU, one 720p forward took 1.18 s in fp32 and 0.72 s in bf16, the outputs
    57 dB apart at 8 bits; on a 2-core AVX2 CPU without bf16 (AMD EPYC), one 256x448 forward
    took 0.9-2.2 s in fp32 and 42-51 s in bf16. fp16 needs CUDA (CPU half-precision kernels
    are slow and lose accuracy).
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; use one of {PURPOSES}")
    if precision == "auto":
        if purpose == "report":
            return "fp32"
        native = device.type == "cuda" or cpu_computes_bf16()
        return "bf16" if native else "fp32"
    if precision not in PRECISIONS and precision not in INFERENCE_ONLY_PRECISIONS:
        known = ", ".join((*PRECISIONS, *INFERENCE_ONLY_PRECISIONS))
        raise UserError(f"unknown precision {precision!r}; use auto or one of {known}")
    if precision == "int8" and device.type != "cpu":
        raise UserError("precision int8 runs on the CPU; on CUDA use bf16 or fp16")
    if precision == "fp16" and device.type == "cpu":
        raise UserError("precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    return precision


#: Frames from which ``deblur``'s mode "auto" compiles the forward on a CPU with native bf16.
#: At 720p on a 2-core AMX Xeon a compiled bf16 forward saves 0.26-0.27 s a frame against
#: eager (421 against 686 ms; 671 against 932 ms on a slower hour), and its first call costs
#: 2.2-12.6 s with inductor's cache warm, 27.7 s cold (references/cpu_speed.py;
#: docs/BENCHMARKS.md, "CPU speed plan"): it pays for itself by about 100 frames even cold,
#: and costs more than it saves on a short clip.
COMPILE_MIN_FRAMES = 100


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would use on the CPU (``$CXX``, else g++, c++ or clang++),
    or None when there is none: then nothing can be compiled for the CPU."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return next((path for path in map(shutil.which, names) if path), None)


def auto_mode(device: torch.device, precision: str, purpose: str, frames: int | None) -> str:
    """What mode "auto" means: "graph" on CUDA for deblurring (one capture per frame shape);
    "compile" for deblurring ``frames`` >= :data:`COMPILE_MIN_FRAMES` frames in bf16 on a CPU
    (bf16 there means native bf16) when a C++ compiler exists, and always for int8; else
    "eager"."""
    if precision == "int8":  # the int8 convolutions exist only in the compiled graph
        if cpp_compiler() is None:
            raise UserError("precision int8 compiles the network and needs a C++ compiler "
                            "(g++, c++, clang++ or $CXX)")
        return "compile"
    if purpose != "deblur":
        return "eager"
    if device.type == "cuda":
        return "graph"
    if precision == "bf16" and frames is not None and frames >= COMPILE_MIN_FRAMES:
        if cpp_compiler() is not None:
            return "compile"
        warnings.warn("no C++ compiler found (g++, c++, clang++ or $CXX): running the "
                      "network uncompiled, slower on long videos", UserWarning, stacklevel=3)
    return "eager"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype autocast runs ``precision`` in; None for fp32 and int8 (no autocast)."""
    return None if precision in ("fp32", *INFERENCE_ONLY_PRECISIONS) else PRECISIONS[precision]


def default_channels_last(device: torch.device | str) -> bool:
    """NHWC on CUDA (tensor-core convolutions), NCHW on CPU.

    On CPU the layout conversions around the NCHW RNN kernel dominate: making one 720p gate map
    (1x96x384x640 fp32) contiguous took ~330 ms on the 2-core development machine, against
    ~230 ms for that RNN layer itself.
    """
    return torch.device(device).type == "cuda"
