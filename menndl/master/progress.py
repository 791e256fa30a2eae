"""What the master prints while it runs: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class Status:
    """A snapshot of the search for the progress display."""

    done: int
    budget: int | None
    elapsed: float
    time_limit: float | None
    best_score: float
    front_size: int
    busy: int
    workers: int
    failed: int
    score: str = "accuracy"  # the column best_score is of (the task's score, menndl.tasks.SCORES)

    def line(self) -> str:
        """One line: ``23/60 evaluations, best accuracy 0.981, front 5, busy 2/2, 41s``."""
        done = f"{self.done}/{self.budget}" if self.budget is not None else str(self.done)
        best = "-" if math.isnan(self.best_score) else f"{self.best_score:.4f}"
        limit = f"/{self.time_limit:.0f}s" if self.time_limit is not None else "s"
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{done} evaluations{failed}, best {self.score} {best}, Pareto front {self.front_size}, "
            f"busy {self.busy}/{self.workers}, {self.elapsed:.0f}{limit}"
        )

    def fraction(self) -> float:
        """How much of the budget is used, by evaluations or time, whichever is further."""
        parts = [0.0]
        if self.budget:
            parts.append(self.done / self.budget)
        if self.time_limit:
            parts.append(self.elapsed / self.time_limit)
        return min(1.0, max(parts))


class Progress:
    """Prints `Status` updates: redrawn in place on a TTY, every ``interval`` seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 10.0, tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self._last_print = -math.inf
        self._last_done = -1
        self._drawn = False

    def due(self) -> bool:
        """Whether `update` would print now: callers skip building a `Status` (the master loop, per event)."""
        return time.monotonic() - self._last_print >= (0.2 if self.tty else self.interval)

    def update(self, status: Status, *, force: bool = False) -> None:
        """Show ``status`` if it is time to (always when ``force``)."""
        now = time.monotonic()
        if self.tty:
            if force or now - self._last_print >= 0.2:
                width = 24
                filled = int(round(status.fraction() * width))
                bar = "#" * filled + "." * (width - filled)
                self.stream.write(f"\r\033[K[{bar}] {status.line()}")
                self.stream.flush()
                self._last_print, self._drawn = now, True
            return
        if force or (now - self._last_print >= self.interval and status.done != self._last_done):
            self.stream.write(f"menndl: {status.line()}\n")
            self.stream.flush()
            self._last_print, self._last_done = now, status.done

    def message(self, text: str) -> None:
        """Print a line of its own (warnings, events) without breaking the bar."""
        if self.tty and self._drawn:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, status: Status) -> None:
        """Print the final status and end the bar's line."""
        self.update(status, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
