"""A stop asked for by signals: the first stops dispatching, the grace period or a second one abandons."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StopDecision:
    """What the master loop does about the signals so far."""

    abandon: bool  # leave the running evaluations to --resume and end the loop now
    reason: str = ""  # the stop reason this signal gives ("" when it gives none now)
    message: str = ""  # a line for the progress log ("" for none)


class StopRequest:
    """Signal names queued by the handlers, turned into decisions with a grace period."""

    def __init__(self, grace: float, clock: Callable[[], float]) -> None:
        """Wait up to ``grace`` seconds (``search.stop_grace``) after the first signal."""
        self.grace = grace
        self._clock = clock
        self.names: list[str] = []  # appended by the signal handler (`StopSignals`)
        self._first_at = math.nan  # clock time of the first signal the loop saw

    def __bool__(self) -> bool:
        return bool(self.names)

    @property
    def first(self) -> str:
        """The first signal's name ("" before any)."""
        return self.names[0] if self.names else ""

    def decide(self, running: int, held: int, stop_reason: str) -> StopDecision:
        """Decide after the signals so far, once per turn of the loop.

        Args:
            running: workers running an evaluation.
            held: tasks running or queued on workers.
            stop_reason: the search's stop reason so far ("" when none).
        """
        name = self.names[-1]
        if math.isnan(self._first_at):
            self._first_at = self._clock()
        elif self._clock() - self._first_at > self.grace and len(self.names) == 1:
            return StopDecision(True, "", f"{name}: grace period of {self.grace:.0f}s (search.stop_grace) over; "
                                          f"leaving {running} running evaluations to --resume")  # fmt: skip
        if len(self.names) >= 2:
            return StopDecision(
                True, f"{name} received twice", f"{name} again: abandoning {running} running evaluations"
            )
        if not stop_reason:
            return StopDecision(False, f"{name} received", f"{name}: no new evaluations; waiting up to "
                                f"{self.grace:.0f}s for {held} running or queued ones (send {name} again to abandon "
                                "them)")  # fmt: skip
        return StopDecision(False)
