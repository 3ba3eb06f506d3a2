"""Speed of the network (paper Table III) measured here: ``flowdeblur bench``.

What is timed, for each device, precision and execution mode:

- **convolutions only**: the network with every spatial RNN replaced by the same-shape stand-in
  ``x.repeat(1, 4, 1, 1) * w`` (:func:`flowdeblur.apps.bench.standin.use_standin_rnn`);
- **full network**: the real RNNs, on the chosen backend;
- their ratio, from the same run, and frames per second;
- the three RNN layers alone at their shapes for the benchmark size (720p: x 1x24x384x640,
  1x48x192x320, 1x96x96x160; gates 4x the channels), forward;
- with ``train=True``: one training step (batch 20 of 256x256 by default: forward, Eq. 14 loss,
  backward, Adam) with the stand-in and with the real RNNs.

Modes: ``eager``; ``compile`` (``torch.compile``, default mode); ``cudagraphs``
(``torch.compile`` with CUDA graphs, mode ``max-autotune`` unless ``graph_mode`` says
``reduce-overhead``); ``graph`` (the eager forward captured in one CUDA graph, no compiler).
The last two need CUDA.

How a forward is run and timed (the runtime ``flowdeblur deblur`` uses, medians after
warm-up, the first call apart): :mod:`.timing`.

The report says what was measured. Set beside the paper's Table III per unit of hardware only
with a GPU's peak throughput (``--peak-tflops``): the data sheets of GPUs live with the
benchmark scripts (benchmarks/gpu_datasheets.py), not in the package.

Modules: :mod:`.plan` (options, per-device defaults and plans), :mod:`.timing` (the timers),
:mod:`.train_step` (the training-step timer), :mod:`.standin` (the stand-in RNN),
:mod:`.runner` (a whole run), :mod:`.results` (what was measured), :mod:`.report` (markdown
and JSON).
"""

from .plan import DEFAULTS, QUICK, BenchConfig, DevicePlan
from .report import format_report, write_json
from .results import BenchReport, InferenceResult, RnnLayerResult, Timing, TrainResult
from .runner import machine_info, run_benchmark
from .standin import StandInRNN, use_standin_rnn
from .timing import (
    CUDA_ONLY_MODES,
    MODES,
    RNN_LAYERS,
    RUNTIME_MODES,
    count_conv_gflop,
    time_callable,
    time_inference,
    time_rnn_layers,
)
from .train_step import time_train_step

__all__ = [
    "CUDA_ONLY_MODES",
    "DEFAULTS",
    "MODES",
    "QUICK",
    "RNN_LAYERS",
    "RUNTIME_MODES",
    "BenchConfig",
    "BenchReport",
    "DevicePlan",
    "InferenceResult",
    "RnnLayerResult",
    "StandInRNN",
    "Timing",
    "TrainResult",
    "count_conv_gflop",
    "format_report",
    "machine_info",
    "run_benchmark",
    "time_callable",
    "time_inference",
    "time_rnn_layers",
    "time_train_step",
    "use_standin_rnn",
    "write_json",
]
