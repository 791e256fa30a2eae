"""Who writes a library writer's HDF5 batches, and what a batch holds besides the rows.

:class:`menndl.library.writer.LibraryWriter` journals every event, then hands each row to its
:class:`Batches`.  :class:`InlineBatches` buffers the rows and writes them itself, one slice per
column, through the column store (:mod:`menndl.library.columns`);
:class:`menndl.library.folding_writer.FoldProcessBatches` leaves them to a fold process.  Either
way the writer adds a :class:`Batch`: the search state, the kept models and the Pareto front.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from menndl.library.columns import ColumnStore, columns_of
from menndl.library.journal import Journal
from menndl.library.kept_weights import TopModels
from menndl.library.state import SearchState

__all__ = ["Batch", "Batches", "BatchesFactory", "InlineBatches"]


@dataclass
class Batch:
    """What the writer adds to an HDF5 batch besides the rows.

    Attributes:
        state: The search state to write (None: unchanged since the last batch).
        pending: Whether the state's in-flight list goes too.
        models: The kept models (those waiting are written, those pushed out deleted).
        front: The Pareto front to write (None: unchanged).
    """

    state: SearchState | None
    pending: bool
    models: TopModels
    front: list[int] | None

    def write_into(self, store: ColumnStore) -> None:
        """Write the state, the models and the front into ``store`` (the rows are the caller's)."""
        if self.state is not None:
            store.write_state(self.state, pending=self.pending)
        self.models.write(store.weights)
        if self.front is not None:
            store.set_pareto(self.front)


class Batches(Protocol):
    """Who writes a writer's HDF5 batches while the search runs (see ``LibraryWriter.batches_class``)."""

    @property
    def written(self) -> int:
        """Rows in the HDF5 file (a fold process's writer: when it opened the file)."""

    @property
    def rows(self) -> int:
        """Rows in the file plus those given since (buffered, or left to a fold process)."""

    def add(self, row: tuple[Any, ...]) -> bool:
        """Take one row (already journaled); True when its batch is full."""

    def touch(self) -> None:
        """Something waits for the next batch (a task's state): start its clock if it is not running."""

    def due(self, state_changed: bool) -> bool:
        """Whether the batch has waited long enough (``state_changed``: the search state waits for it)."""

    def write(self, batch: Batch) -> None:
        """Write a batch: the buffered rows, then ``batch``; flush the file.

        Raises:
            OSError, RuntimeError: The write failed (h5py raises both).
        """

    def write_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append whole typed columns at once (the bulk path of offline writers)."""

    def finish(self, batch: Batch) -> None:
        """Write the last batch and close the file.

        Raises:
            OSError, RuntimeError: The write failed.  UserError: the file cannot be opened again.
        """

    def release(self) -> None:
        """End after a failure: drop the file's handles (ignoring errors); nothing more is written."""


class InlineBatches:
    """The writer's own HDF5 batches: rows buffered in memory, written every ``flush_every`` rows or
    when the oldest has waited ``batch_seconds``, one slice per column.

    Args:
        store: The open library file.
        journal: The writer's journal (unused: the batches do not depend on it).
        flush_every: Rows per batch.
        batch_seconds: The longest wait of the oldest row (None: only ``flush_every`` counts).
    """

    def __init__(self, store: ColumnStore, journal: Journal, flush_every: int, batch_seconds: float | None) -> None:
        self._store = store
        self._flush_every = flush_every
        self._seconds = batch_seconds
        self._buffer: list[tuple[Any, ...]] = []
        self._since = 0.0  # when the oldest row (or task) waiting for the batch came

    @property
    def written(self) -> int:
        """Rows in the HDF5 file."""
        return self._store.written

    @property
    def rows(self) -> int:
        """Rows in the file plus those buffered."""
        return self._store.written + len(self._buffer)

    def add(self, row: tuple[Any, ...]) -> bool:
        """Buffer a row; True when the batch is full."""
        if not self._buffer:
            self._since = time.monotonic()
        self._buffer.append(row)
        return len(self._buffer) >= self._flush_every

    def touch(self) -> None:
        """Start the batch clock if nothing is buffered."""
        if not self._buffer:
            self._since = time.monotonic()

    def due(self, state_changed: bool) -> bool:
        """Whether buffered rows (or a changed state) have waited ``batch_seconds``."""
        if self._seconds is None or not (self._buffer or state_changed):
            return False
        return time.monotonic() - self._since >= self._seconds

    def write(self, batch: Batch) -> None:
        """Append the buffered rows (``count`` moves last), write ``batch``, flush."""
        if self._buffer:
            self._store.append(columns_of(self._buffer))
            self._buffer.clear()
        batch.write_into(self._store)
        self._store.flush()
        self._since = time.monotonic()

    def write_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append whole columns."""
        self._store.append(columns)

    def finish(self, batch: Batch) -> None:
        """Write the last batch and close the file."""
        self.write(batch)
        self._store.close()

    def release(self) -> None:
        """Drop the file's handles."""
        self._store.release()


BatchesFactory = Callable[[ColumnStore, Journal, int, float | None], Batches]
"""How a writer makes its `Batches`: (open file, journal, ``flush_every``, batch seconds)."""
