"""``python benchmarks/bench_model.py [options]`` == ``flowdeblur bench [options]``, plus the
GPU's peak throughput from its data sheet.

Every figure of docs/BENCHMARKS.md about the network's speed comes from this command; see
``flowdeblur bench --help`` for the options and src/flowdeblur/apps/bench/ for what is timed.
When CUDA is present, the GPU is in benchmarks/gpu_datasheets.py and no ``--peak-tflops`` is
given, its peak is passed as ``--peak-tflops``, so the report sets the figures beside the
paper's Table III per unit of hardware (the report's command line shows the value used).
"""

from __future__ import annotations

import sys

import torch
from gpu_datasheets import peak_fp32_tflops

from flowdeblur.cli import main


def with_datasheet_peak(argv: list[str]) -> list[str]:
    """``argv`` plus ``--peak-tflops`` for this machine's first GPU, when it is known."""
    if "--peak-tflops" in argv or not torch.cuda.is_available():
        return argv
    peak = peak_fp32_tflops(torch.cuda.get_device_name(0))
    if peak is None:
        return argv
    print(f"[bench] peak fp32 of {peak.part} from its data sheet: {peak.tflops} TFLOP/s",
          file=sys.stderr)
    return [*argv, "--peak-tflops", str(peak.tflops)]


if __name__ == "__main__":
    sys.exit(main(["bench", *with_datasheet_peak(sys.argv[1:])]))
