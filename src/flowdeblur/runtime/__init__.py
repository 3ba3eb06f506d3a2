"""Where and how the network runs: device, precision and the fast inference path.

:class:`Runtime` resolves device, precision, layout and execution mode once;
:meth:`Runtime.prepare` gives the forward that ``deblur``, ``demo``, ``eval`` and ``bench`` run.
The rules behind ``"auto"`` are in :mod:`.device`; the fast forward itself in :mod:`.fastpath`.
"""

from .device import PRECISIONS, PURPOSES, cpu_computes_bf16, resolve_device
from .fastpath import FastForward, prepare_for_inference
from .runtime import MODES, Runtime

__all__ = [
    "MODES",
    "PRECISIONS",
    "PURPOSES",
    "FastForward",
    "Runtime",
    "cpu_computes_bf16",
    "prepare_for_inference",
    "resolve_device",
]
