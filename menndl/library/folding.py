"""A library writer that leaves the HDF5 columns to a fold process (``library.fold``).

The master journals every result and task before it sends the next task (crash safety needs
that much); :class:`FoldingWriter` does only that, and a helper process
(:mod:`menndl.library.fold`) follows the journal and appends its rows to the HDF5 file in
batches.  The master no longer stops for an HDF5 batch (tens of milliseconds on a local disk,
more on a parallel file system, while every worker that finishes waits), at the price of one
more process beside it that parses each journal line again.  On the 2-CPU test VM the master's
CPU per result was the same either way (the HDF5 work it sheds is lost again to the helper on
the other CPU; docs/scaling.md, sixth pass).  ``auto`` uses it from `AUTO_WORKERS` workers on,
when the master may run on more than one CPU (a helper bound to the master's only core would
take the time back).

At close the fold process folds the last lines and ends; the master then opens the file
again for what only it knows (the tasks in flight, the session, kept weights).  If the fold
process failed, the master folds the journal itself (:func:`menndl.library.recover`), so
nothing depends on the helper but speed.  Kept weights are written into the file at close (and to
their own files as they come: `menndl.library.kept_weights`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import h5py

from menndl.errors import StorageError, UserError
from menndl.library.writer import JOURNALED_BATCH_SECONDS, LibraryWriter, _reason, pareto_ids, remove_companions

AUTO_WORKERS = 512  # `auto` uses a fold process from this many workers on
STOP_SECONDS = 300.0  # how long close waits for the fold process before folding itself


def use_fold_process(setting: str, workers: int) -> bool:
    """Whether a search with ``workers`` workers folds its library in a process (``library.fold``)."""
    if setting != "auto":
        return setting == "process"
    return workers >= AUTO_WORKERS and len(os.sched_getaffinity(0)) > 1


class FoldingWriter(LibraryWriter):
    """A journaled :class:`LibraryWriter` whose HDF5 batches a fold process writes.

    Same interface and guarantees; `written` counts only the rows the file had when it was opened.
    """

    _process: subprocess.Popen[bytes] | None

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
        self._start_folding()

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
        self = cast(FoldingWriter, super().reopen(path, flush_every=flush_every, flush_seconds=flush_seconds,
                                                  keep_weights=keep_weights))  # fmt: skip
        self._start_folding()
        return self

    def _start_folding(self) -> None:
        """Hand the HDF5 file to a new fold process (the master keeps the journal)."""
        assert self._file is not None and self._journal is not None
        self._rows_at_start = self._written
        self._appended = 0
        self._pareto_ids: list[int] | None = None
        self._closed = False
        self._fold_error = ""
        self._journal.sync()  # the header (and, on resume, nothing else yet) is on disk for the fold process
        self._release(self._file)
        self._file = None
        command = [sys.executable, "-m", "menndl.library.fold", str(self._path), "--rows", str(self._flush_every),
                   "--seconds", str(JOURNALED_BATCH_SECONDS)]  # fmt: skip
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=True
            )
        except OSError as exc:  # cannot start a process here: the master folds at close instead
            self._process, self._fold_error = None, f"cannot start the fold process: {_reason(exc)}"

    # ------------------------------------------------------------- overrides

    def _check_open(self) -> h5py.File:
        if self._broken:
            raise StorageError(self._broken)
        if self._closed:
            raise ValueError(f"library writer for {self._path} is closed")
        return cast(h5py.File, None)  # the fold process has the file

    def _add_row(self, row: tuple[Any, ...]) -> None:
        self._appended += 1  # journaled by `append`; the fold process writes it to the file

    def __len__(self) -> int:
        return self._rows_at_start + self._appended

    def flush(self, final: bool = False) -> None:
        """Sync the journal (the fold process writes the HDF5 batches)."""
        self._check_open()
        self._journal_out(sync=True)
        self._synced_at = time.monotonic()

    def set_pareto(self, ids: Sequence[int]) -> None:
        """Journal the Pareto front (the fold process writes it to the file)."""
        self._check_open()
        values = pareto_ids(ids)
        self._journal_write({"type": "pareto", "ids": values})
        self._pareto_ids = values
        self.commit()

    def write_columns(self, columns: Mapping[str, Any]) -> None:
        """Not for a running search: use a :class:`LibraryWriter` without a journal."""
        raise TypeError("FoldingWriter takes rows through append(); write_columns is for offline writers")

    def close(self) -> None:
        """Let the fold process fold the last lines, then write what only the master knows and remove the journal.

        Raises:
            UserError: The final writes failed (the journal is kept: a ``--resume`` recovers everything).
        """
        if self._closed:
            return
        self._closed = True
        assert self._journal is not None
        try:
            if not self._broken:
                self._journal_out(sync=True)  # every line the fold process must see
        except StorageError:
            pass  # raised below, once the fold process has ended
        error = self._stop_folding()
        try:
            self._journal.close()
        except OSError:
            pass  # fsync of a full disk: what was written is there
        if self._broken:
            raise StorageError(self._broken)
        try:
            f = h5py.File(self._path, "a")
            self._bind(f)
        except Exception as exc:  # noqa: BLE001 - unreadable after a failed fold: recovery rebuilds it
            error = error or f"cannot open the library after the fold process: {_reason(exc)}"
            f = None
        if f is not None and not error and self._written != self._rows_at_start + self._appended:
            error = f"the fold process left {self._written - self._rows_at_start} of {self._appended} rows"
        if f is not None and error:
            self._release(f)
            f = None
        try:
            if f is None:
                f = self._fold_here()
            self._file = f
            self._write_state(with_pending=True)
            self._write_weights()
            if self._pareto_ids is not None:
                self._pareto.resize((len(self._pareto_ids),))
                if self._pareto_ids:
                    self._pareto[:] = self._pareto_ids
            f.flush()
            self._file = None
            f.close()
        except (OSError, RuntimeError) as exc:  # h5py reports failed writes as both
            if self._file is not None:
                self._file = None
                self._release(f)
            raise self._broken_by(f"cannot write library {self._path}: {_reason(exc)}") from None
        remove_companions(self._path)

    # ------------------------------------------------------------- helpers

    def _stop_folding(self) -> str:
        """Close the fold process's input (its signal to finish) and wait for it; its error, or ""."""
        process = self._process
        if process is None:
            return self._fold_error
        self._process = None
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
        message = self._process_message(process)
        return message if process.returncode else ""

    @staticmethod
    def _process_message(process: subprocess.Popen[bytes]) -> str:
        """What an ended fold process said (its one line on stderr), or its exit status."""
        text = process.stderr.read().decode(errors="replace").strip() if process.stderr is not None else ""
        if process.stderr is not None:
            process.stderr.close()
        return text.splitlines()[-1] if text else f"the fold process ended with status {process.returncode}"

    def _fold_here(self) -> h5py.File:
        """The fold process failed: fold the journal in this process (recovery's code), then reopen the file."""
        from menndl.library.recover import recover

        if self._journal is not None and self._journal.path.exists():
            recover(self._path)  # keeps the journal if it fails: a --resume can try again
        try:
            f = h5py.File(self._path, "a")
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"cannot open library {self._path} after folding its journal: {_reason(exc)}") from None
        self._bind(f)
        return f
