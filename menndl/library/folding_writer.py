"""A library writer that leaves the HDF5 columns to a fold process (``library.fold``).

The master journals every result and task before it sends the next task (crash safety needs
that much); :class:`FoldingWriter` does only that, and a helper process
(:mod:`menndl.library.fold_process`) follows the journal and appends its rows to the HDF5 file in
batches.  The master no longer stops for an HDF5 batch (while every worker that finishes
waits), at the price of one more process beside it that parses each journal line again.
``auto`` uses it from `AUTO_WORKERS` workers on, when the master may run on more than one CPU
(a helper bound to the master's only core would take the time back).

At close the fold process folds the last lines and ends; the master then opens the file
again for what only it knows (the tasks in flight, the session, kept weights).  If the fold
process failed, the master folds the journal itself (:func:`menndl.library.recover`), so
nothing depends on the helper but speed.  Kept weights are written into the file at close (and to
their own files as they come: `menndl.library.kept_weights`).

This module and :mod:`menndl.library.fold_process` are the whole of the fold process: the
writer is :class:`menndl.library.writer.LibraryWriter` with :class:`FoldProcessBatches` for
its batches.  Without them, a search takes ``LibraryWriter`` (the commands' one branch on
``library.fold``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from menndl.errors import UserError
from menndl.library.batches import Batch, BatchesFactory
from menndl.library.columns import ColumnStore, failure_reason
from menndl.library.journal import JOURNALED_BATCH_SECONDS, Journal, journal_path
from menndl.library.writer import LibraryWriter

__all__ = ["AUTO_WORKERS", "FoldProcessBatches", "FoldingWriter", "use_fold_process"]

AUTO_WORKERS = 512  # `auto` uses a fold process from this many workers on
STOP_SECONDS = 300.0  # how long close waits for the fold process before folding itself


def use_fold_process(setting: str, workers: int) -> bool:
    """Whether a search with ``workers`` workers folds its library in a process (``library.fold``)."""
    if setting != "auto":
        return setting == "process"
    return workers >= AUTO_WORKERS and len(os.sched_getaffinity(0)) > 1


class FoldProcessBatches:
    """The HDF5 batches of a :class:`FoldingWriter`: a fold process writes them from the journal.

    The master only counts the rows; at `finish` the fold process folds the last lines and ends,
    and the master writes the last batch (state with the in-flight list, kept models, front).

    Args:
        store: The open library file; it is closed here and handed to the fold process.
        journal: The writer's journal (synced here, so that the fold process finds its header).
        flush_every: Rows per batch of the fold process.
        batch_seconds: Unused (the fold process waits `JOURNALED_BATCH_SECONDS` at most).

    Attributes:
        process: The fold process (None once it ended, or if it could not start).
    """

    def __init__(self, store: ColumnStore, journal: Journal, flush_every: int, batch_seconds: float | None) -> None:
        self._path = store.path
        self._written = store.written
        self._appended = 0
        self._store: ColumnStore | None = None  # the file, once the master has it again (`finish`)
        self._error = ""
        journal.sync()  # the header (and, on resume, nothing else yet) is on disk for the fold process
        store.close()
        command = [sys.executable, "-m", "menndl.library.fold_process", str(self._path), "--rows", str(flush_every),
                   "--seconds", str(JOURNALED_BATCH_SECONDS)]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None
        try:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True
            )
        except OSError as exc:  # cannot start a process here: the master folds at close instead
            self.process, self._error = None, f"cannot start the fold process: {failure_reason(exc)}"

    @property
    def written(self) -> int:
        """Rows the file had when the writer opened it."""
        return self._written

    @property
    def rows(self) -> int:
        """Rows the file had plus those journaled since."""
        return self._written + self._appended

    def add(self, row: tuple[Any, ...]) -> bool:
        """Count a journaled row (the fold process writes it); never a full batch."""
        self._appended += 1
        return False

    def touch(self) -> None:
        """Nothing waits on the master."""

    def due(self, state_changed: bool) -> bool:
        """Never: the fold process writes the batches."""
        return False

    def write(self, batch: Batch) -> None:
        """Nothing: the fold process writes the rows, and the rest waits for `finish`."""

    def write_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Not for a running search.

        Raises:
            TypeError: Always: use a `LibraryWriter` without a journal.
        """
        raise TypeError("FoldingWriter takes rows through append(); write_columns is for offline writers")

    def finish(self, batch: Batch) -> None:
        """Let the fold process fold the last lines, then write ``batch`` into the file and close it.

        Raises:
            OSError, RuntimeError: The writes failed.
            UserError: The file does not open after the master folded the journal itself.
        """
        error = self._stop()
        store = None
        try:
            store = ColumnStore.open(self._path)
        except Exception as exc:  # noqa: BLE001 - unreadable after a failed fold: recovery rebuilds it
            error = error or f"cannot open the library after the fold process: {failure_reason(exc)}"
        if store is not None and not error and store.written != self.rows:
            error = f"the fold process left {store.written - self._written} of {self._appended} rows"
        if store is not None and error:
            store.release()
            store = None
        self._store = store if store is not None else self._fold_here()
        batch.write_into(self._store)
        self._store.close()
        self._store = None

    def release(self) -> None:
        """Stop the fold process (it folds what is complete) and drop the file's handles."""
        self._stop()
        if self._store is not None:
            self._store.release()
            self._store = None

    def _stop(self) -> str:
        """Close the fold process's input (its signal to finish) and wait for it; its error, or ""."""
        process, self.process = self.process, None
        if process is None:
            return self._error
        try:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return f"the fold process did not finish within {STOP_SECONDS:.0f}s"
        except OSError:
            process.wait()
        text = process.stderr.read().decode(errors="replace").strip() if process.stderr is not None else ""
        if process.stderr is not None:
            process.stderr.close()
        message = text.splitlines()[-1] if text else f"the fold process ended with status {process.returncode}"
        return message if process.returncode else ""

    def _fold_here(self) -> ColumnStore:
        """The fold process failed: fold the journal in this process (recovery's code), then reopen the file."""
        from menndl.library.recover import recover

        if journal_path(self._path).exists():
            recover(self._path)  # keeps the journal if it fails: a --resume can try again
        try:
            return ColumnStore.open(self._path)
        except Exception as exc:  # noqa: BLE001
            raise UserError(
                f"cannot open library {self._path} after folding its journal: {failure_reason(exc)}"
            ) from None


class FoldingWriter(LibraryWriter):
    """A journaled :class:`LibraryWriter` whose HDF5 batches a fold process writes.

    Same interface and guarantees; `written` counts only the rows the file had when it was opened.
    """

    batches_class: ClassVar[BatchesFactory] = FoldProcessBatches

    def __init__(
        self,
        path: str | Path,
        *,
        job_text: str,
        attrs: Mapping[str, str | int | float] = {},  # noqa: B006 (read-only)
        flush_every: int = 4096,
        flush_seconds: float | None = 1.0,
        keep_weights: int = 0,
    ) -> None:
        super().__init__(path, job_text=job_text, attrs=attrs, flush_every=flush_every, flush_seconds=flush_seconds,
                         journal=True, keep_weights=keep_weights)  # fmt: skip

    @classmethod
    def reopen(
        cls,
        path: str | Path,
        *,
        flush_every: int = 4096,
        flush_seconds: float | None = 1.0,
        keep_weights: int = 0,
    ) -> FoldingWriter:
        """:meth:`LibraryWriter.reopen`, then the fold process takes the file."""
        writer = super().reopen(path, flush_every=flush_every, flush_seconds=flush_seconds, keep_weights=keep_weights)
        return cast(FoldingWriter, writer)

    @property
    def fold_process(self) -> subprocess.Popen[bytes] | None:
        """The fold process (None once it ended, or if it could not start)."""
        return cast(FoldProcessBatches, self.batches).process
