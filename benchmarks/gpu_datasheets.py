"""Peak fp32 throughput of GPUs, from vendor data sheets: the hardware basis of the comparison
with the paper's Table III (0.20 s per 720x1280 frame on a Titan Xp).

``flowdeblur bench`` knows no GPU table; it sets its figures beside the paper's per unit of
hardware only when given ``--peak-tflops``. ``benchmarks/bench_model.py`` looks the GPU up here
and passes that flag, so the benchmark reports name the part and its peak.

    from gpu_datasheets import peak_fp32_tflops   # with benchmarks/ on sys.path
    peak_fp32_tflops("NVIDIA H100 80GB HBM3")     # GpuPeak(part='H100 SXM', tflops=66.9)
"""

from __future__ import annotations

from typing import NamedTuple


class GpuPeak(NamedTuple):
    """A GPU part and its peak fp32 TFLOP/s without tensor cores (boost clock)."""

    part: str
    tflops: float


#: (substring of the CUDA device name, part, peak fp32 TFLOP/s without tensor cores), matched
#: in order: more specific names first ("H100 PCIe" before "H100").
PEAK_FP32_TFLOPS: list[tuple[str, str, float]] = [
    ("H100 PCIe", "H100 PCIe", 51.2),
    ("H100 NVL", "H100 NVL", 60.0),
    ("H100", "H100 SXM", 66.9),  # "NVIDIA H100 80GB HBM3" is the SXM part
    ("H200 NVL", "H200 NVL", 60.0),
    ("H200", "H200 SXM", 66.9),
    ("GH200", "GH200", 66.9),
    ("A100", "A100", 19.5),
    ("L40S", "L40S", 91.6),
    ("L4", "L4", 30.3),
    ("A10", "A10", 31.2),
    ("V100", "V100 SXM2", 15.7),
    ("T4", "T4", 8.1),
    ("RTX 4090", "RTX 4090", 82.6),
    ("RTX 3090", "RTX 3090", 35.6),
    # 3840 CUDA cores x 2 FLOP x 1.582 GHz boost: the paper's GPU.
    ("TITAN Xp", "TITAN Xp", 12.1),
]


def peak_fp32_tflops(gpu_name: str) -> GpuPeak | None:
    """The part and its peak non-tensor fp32 TFLOP/s for a CUDA device name, None if unknown."""
    for key, part, tflops in PEAK_FP32_TFLOPS:
        if key.lower() in gpu_name.lower():
            return GpuPeak(part, tflops)
    return None
