"""The search's budget: evaluations handed out and search seconds, over every run of a library."""

from __future__ import annotations

from collections.abc import Callable


class Budget:
    """``search.evaluations`` and ``search.time_limit`` (at least one is set), counted across resumes."""

    def __init__(self, evaluations: int | None, time_limit: float | None, clock: Callable[[], float],
                 dispatched: int = 0, seconds_before: float = 0.0) -> None:  # fmt: skip
        """Count from ``dispatched`` candidates and ``seconds_before`` of earlier runs of the same library."""
        self.evaluations, self.time_limit = evaluations, time_limit
        self.dispatched = dispatched  # candidates handed out so far (ids given), earlier runs included
        self.seconds_before = seconds_before
        self._clock = clock
        self._start = clock()

    def start(self) -> None:
        """The search's clock starts now."""
        self._start = self._clock()

    def search_seconds(self) -> float:
        """Seconds of search so far, earlier runs of this library included (``search.time_limit`` counts these)."""
        return self.seconds_before + self._clock() - self._start

    def evaluations_left(self) -> int | None:
        """Candidates still to hand out (None without an evaluation budget)."""
        return None if self.evaluations is None else self.evaluations - self.dispatched

    def allows(self, rerun_waiting: bool) -> bool:
        """Whether there is work left: a new candidate within the evaluations (or one to re-run), and time."""
        if self.evaluations is not None and self.dispatched >= self.evaluations and not rerun_waiting:
            return False
        return self.time_limit is None or self.search_seconds() < self.time_limit

    def spent_reason(self) -> str:
        """Which budget ended the search."""
        if self.evaluations is not None and self.dispatched >= self.evaluations:
            return "evaluation budget reached"
        return "time limit reached"
