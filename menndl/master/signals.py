"""Turn SIGINT/SIGTERM/SIGUSR2 into a graceful stop request instead of an exception.

SIGUSR2 is the checkpoint signal of batch jobs (``#SBATCH --signal=B:USR2@600``):
SLURM sends it ahead of the wall-time limit, and USR1 may be taken by NCCL.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)


class StopSignals:
    """Context manager: while active, each stop signal calls ``on_signal(name)``.

    The callback runs in the main thread between bytecodes; it may raise
    (for example KeyboardInterrupt on a second signal) to break out.  Outside
    the main thread (where handlers cannot be installed) it does nothing.
    """

    def __init__(self, on_signal: Callable[[str], None]) -> None:
        self._on_signal = on_signal
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self._on_signal(signal.Signals(number).name)
