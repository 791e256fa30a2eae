"""The search state of a library: what a resumed search needs beyond the rows.

A library keeps it in two places: the ``/state`` attributes of its HDF5 file (written by a writer
at close, by recovery, and in batches by a writer without a journal) and, while a search runs or
after it was killed, the task lines of its journal.  :func:`search_state` is the one function that
combines them into a :class:`SearchState`; the reader (``resume_state``, ``session``), recovery,
``LibraryWriter.reopen``, the fold process and ``menndl run --resume`` all call it.
:class:`StateTracker` is the writer's live copy, kept up to date in O(1) per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from menndl.library.journal import STATE_KEYS

if TYPE_CHECKING:
    from menndl.library.journal import JournalContents

__all__ = ["SearchState", "StateTracker", "search_state", "task_of"]


@dataclass(frozen=True)
class SearchState:
    """Where a search stands: the id counter, the random state, the tasks in flight, how its last run ended.

    Attributes:
        next_id: The id the next candidate gets (past every id handed out or stored).
        rng_state: The master's random state as JSON text, or None if never stored.
        pending: The tasks handed to workers that have no row yet, in id order; each a mapping
            with ``id, genome, hash, parents, operator, seed, submitted_at``.
        stop_reason: Why the last run ended, as its writer noted at close (None: never noted).
        search_seconds: Seconds of search over every run so far (None: never noted).
        closed: False while a journal lies beside the library (its search runs, or was killed).
    """

    next_id: int = 0
    rng_state: str | None = None
    pending: tuple[Mapping[str, Any], ...] = ()
    stop_reason: str | None = None
    search_seconds: float | None = None
    closed: bool = True


def task_of(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task as the in-flight list stores it: the master's state keys (`STATE_KEYS`) dropped."""
    return {key: value for key, value in task.items() if key not in STATE_KEYS}


def search_state(
    stored: SearchState,
    journal: JournalContents | None = None,
    finished: np.ndarray | Iterable[int] = (),
) -> SearchState:
    """Combine the state an HDF5 file stored with what its journal adds, and drop the finished tasks.

    Args:
        stored: The state of the HDF5 file (or of its ``.base`` copy), as
            :meth:`menndl.library.columns.ColumnStore.read_state` reads it; or a state computed
            earlier by this function, which the journal then advances.
        journal: What the journal holds (None: there is none).  Its newest random state, search
            seconds and id counter win; its tasks join the stored in-flight list (a task line with
            the id of a stored one replaces it).
        finished: Ids of rows the library has: their tasks are done, and ``next_id`` passes them.

    Returns:
        The state; ``closed`` is False when a journal was given.
    """
    ids = np.asarray(finished if isinstance(finished, np.ndarray) else list(finished), dtype=np.int64)
    next_id = stored.next_id
    if ids.size:
        next_id = max(next_id, int(ids.max()) + 1)
    tasks = {int(task["id"]): task for task in stored.pending}
    rng_state, seconds, closed = stored.rng_state, stored.search_seconds, stored.closed
    if journal is not None:
        tasks.update(journal.tasks)
        if journal.tasks or journal.next_id is not None:
            next_id = max(next_id, journal.next_id or 0, max(journal.tasks, default=-1) + 1)
        rng_state = journal.rng_state or rng_state
        if journal.search_seconds is not None:
            seconds = max(seconds or 0.0, journal.search_seconds)
        closed = False
    order = sorted(tasks)
    done = np.isin(np.asarray(order, dtype=np.int64), ids).tolist() if ids.size else [False] * len(order)
    pending = tuple(tasks[task_id] for task_id, finished_task in zip(order, done) if not finished_task)
    return SearchState(next_id, rng_state, pending, stored.stop_reason, seconds, closed)


class StateTracker:
    """A writer's live search state: tasks handed out, rows that finish them, the session (O(1) per event).

    Args:
        start: The state the library had when the writer opened it.
    """

    def __init__(self, start: SearchState) -> None:
        self._pending: dict[int, Mapping[str, Any]] = {int(task["id"]): task for task in start.pending}
        self._next_id = start.next_id
        self._rng_state = start.rng_state
        self._session: tuple[str, float] | None = None

    def started(self, task: Mapping[str, Any]) -> None:
        """A task went to a worker; its ``rng_state`` and ``next_id`` (when given) are the master's newest.

        The mapping is kept as given until its row comes (its state keys are dropped when written).
        """
        self._pending[int(task["id"])] = task
        if task.get("rng_state") is not None:
            self._rng_state = str(task["rng_state"])
        if task.get("next_id") is not None:
            self._next_id = int(task["next_id"])

    def finished(self, eval_id: int) -> bool:
        """A row came for ``eval_id``; whether it finished a task in flight."""
        return self._pending.pop(eval_id, None) is not None

    def end_session(self, stop_reason: str, search_seconds: float) -> None:
        """Note why this run ended and its search seconds so far."""
        self._session = (str(stop_reason), float(search_seconds))

    def snapshot(self) -> SearchState:
        """The state now (O(tasks in flight)); the session only once noted."""
        stop_reason, seconds = self._session if self._session is not None else (None, None)
        return SearchState(self._next_id, self._rng_state, tuple(self._pending.values()), stop_reason, seconds)
