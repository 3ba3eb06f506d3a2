"""SIGINT / SIGTERM during training: finish the current step, save a checkpoint, exit.

A second signal stops at once (KeyboardInterrupt), without saving.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

#: The signals that ask a run to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager that catches :data:`STOP_SIGNALS` while a run trains.

    ``caught`` is the number of the first signal received (0: none); the loop reads it once
    per step. The previous handlers come back on exit. Outside the main thread Python cannot
    install handlers, so signals are left alone there.
    """

    def __init__(self, *, announce: bool) -> None:
        self.announce = announce  # print a line when a signal arrives (rank 0)
        self.caught = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.caught:
            raise KeyboardInterrupt
        self.caught = signum
        if self.announce:
            print(f"\nflowdeblur train: {signal.Signals(signum).name}: saving after this "
                  "step (send it again to stop without saving)", flush=True)
