"""Turning what can go wrong with a candidate into a status, and the hard deadline that stops overruns."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import torch

OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {cls for cls in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if cls}
)
_OOM_TEXT = (
    "out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "can't allocate memory",
)  # the last: torch's CPU allocator when the host (or RLIMIT_AS) says no


class CandidateTimeout(Exception):
    """The candidate ran far past its training budget (status ``timeout``)."""


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite (status ``nan``)."""


def status_of(exc: BaseException) -> str:
    """The result status for an exception raised while decoding, training or validating a candidate."""
    if isinstance(exc, CandidateTimeout):
        return "timeout"
    if isinstance(exc, NonFiniteLoss):
        return "nan"
    if isinstance(exc, (MemoryError, *OOM_ERRORS)):
        return "oom"
    if isinstance(exc, RuntimeError) and any(t in str(exc) for t in _OOM_TEXT):
        return "oom"
    return "failed"


MAX_TIMER_SECONDS = 1e8  # about three years


@contextlib.contextmanager
def hard_deadline(seconds: float) -> Iterator[None]:
    """Raise `CandidateTimeout` in this thread once ``seconds`` have passed (SIGALRM; main thread only).

    Python runs the handler between bytecodes, so a long kernel finishes
    first; the training loop also checks the clock after every step.  Off the
    main thread (where signals cannot be used) only those checks apply.
    An alarm someone else had pending is re-armed afterwards with what is left
    of it; if it fell due during the candidate it fires right after.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise CandidateTimeout(f"over the hard limit of {seconds:.1f}s")

    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    # setitimer overflows past time_t; a limit of years is no limit (the training loop checks the clock too).
    outer_delay, outer_interval = signal.setitimer(signal.ITIMER_REAL, min(max(seconds, 1e-3), MAX_TIMER_SECONDS))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:  # someone else's alarm (e.g. pytest-timeout) was pending: put it back
            remaining = max(1e-3, outer_delay - (time.monotonic() - started))
            signal.setitimer(signal.ITIMER_REAL, remaining, outer_interval)
