"""The search's budget: evaluations handed out, training epochs and search seconds, over every run of a library."""

from __future__ import annotations

from collections.abc import Callable


class Budget:
    """``search.evaluations``, ``epoch_budget`` and ``time_limit`` (at least one is set), counted across resumes."""

    def __init__(self, evaluations: int | None, time_limit: float | None, clock: Callable[[], float],
                 dispatched: int = 0, seconds_before: float = 0.0, epochs: int | None = None) -> None:  # fmt: skip
        """Count from ``dispatched`` candidates and ``seconds_before`` of earlier runs of the same library.

        Args:
            epochs: ``search.epoch_budget``: training epochs over all evaluations (None: no such limit).
        """
        self.evaluations, self.time_limit, self.epochs = evaluations, time_limit, epochs
        self.dispatched = dispatched  # candidates handed out so far (ids given), earlier runs included
        self.epochs_spent = 0  # training epochs of the rows written, earlier runs included
        self._epochs_planned: dict[int, int] = {}  # epochs of each task in flight, by id
        self._planned = 0  # their sum
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

    def plan_epochs(self, task_id: int, epochs: int) -> None:
        """A task of ``epochs`` training epochs went out (counted against ``epoch_budget`` until its row comes)."""
        if task_id not in self._epochs_planned:
            self._epochs_planned[task_id] = epochs
            self._planned += epochs

    def spend_epochs(self, task_id: int, epochs: int) -> None:
        """A row was written: its task trained ``epochs`` epochs."""
        self._planned -= self._epochs_planned.pop(task_id, 0)
        self.epochs_spent += max(0, epochs)

    def _epochs_reached(self) -> bool:
        return self.epochs is not None and self.epochs_spent + self._planned >= self.epochs

    def allows(self, rerun_waiting: bool) -> bool:
        """Whether there is work left: a new candidate within the evaluations and epochs (or one to re-run), and
        time."""
        if self.evaluations is not None and self.dispatched >= self.evaluations and not rerun_waiting:
            return False
        if self._epochs_reached() and not rerun_waiting:
            return False
        return self.time_limit is None or self.search_seconds() < self.time_limit

    def spent_reason(self) -> str:
        """Which budget ended the search."""
        if self.evaluations is not None and self.dispatched >= self.evaluations:
            return "evaluation budget reached"
        if self._epochs_reached():
            return "epoch budget reached"
        return "time limit reached"
