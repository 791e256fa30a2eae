"""Writing the HDF5 architecture library (the master is its only writer).

:class:`LibraryWriter` takes one record per finished evaluation and one task per candidate handed
to a worker.  It sends each event to its journal (:class:`menndl.library.journal.Journal`: a
:class:`~menndl.library.journal.JournalFile` for a search, written at the next commit, which the
master makes before each send; :class:`~menndl.library.journal.NoJournal` for offline writers),
keeps the search state (:class:`menndl.library.state.StateTracker`) and the top models
(:class:`menndl.library.kept_weights.TopModels`), and leaves the HDF5 batches to its
:class:`menndl.library.batches.Batches`: :class:`~menndl.library.batches.InlineBatches` writes
them itself through the column store (:mod:`menndl.library.columns`);
:class:`menndl.library.folding_writer.FoldingWriter` hands them to a fold process.  The file
holds data only (see ``docs/library-format.md``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from menndl.errors import StorageError, UserError
from menndl.library.batches import Batch, Batches, BatchesFactory, InlineBatches
from menndl.library.columns import (
    ColumnStore,
    check_attrs,
    clean_str,
    failure_reason,
    pareto_ids,
    stored_value,
    typed_column,
)
from menndl.library.journal import (
    Journal,
    JournalFile,
    NoJournal,
    base_path,
    journal_path,
    start_journal,
    weights_dir,
)
from menndl.library.kept_weights import TopModels, model_arrays
from menndl.library.schema import EVALUATION_FIELDS, FIELD_KINDS, FIELD_NAMES, MISSING
from menndl.library.state import SearchState, StateTracker, search_state

__all__ = ["LibraryWriter"]

_FIELD_SET = frozenset(FIELD_KINDS)


@dataclass(frozen=True)
class _Policy:
    """A writer's validated batch and weights settings."""

    flush_every: int
    flush_seconds: float | None
    keep_weights: int

    def __post_init__(self) -> None:
        flush_every, flush_seconds, keep_weights = self.flush_every, self.flush_seconds, self.keep_weights
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be an integer >= 1, got {flush_every!r}")
        if flush_seconds is not None and not flush_seconds >= 0:
            raise ValueError(f"flush_seconds must be >= 0 or None, got {flush_seconds!r}")
        if isinstance(keep_weights, bool) or not isinstance(keep_weights, int) or keep_weights < 0:
            raise ValueError(f"keep_weights must be an integer >= 0, got {keep_weights!r}")


class LibraryWriter:
    """Append-only writer of one HDF5 architecture library (the master is its only writer).

    Records passed to :meth:`append` (and tasks passed to :meth:`task_started`)
    are queued for the journal and written with one ``write()`` at the next
    :meth:`commit` or :meth:`tick` (the master calls them before each send and
    at every turn of its loop).  The HDF5 columns are written in batches of
    ``flush_every`` records, or when the oldest record has waited
    ``flush_seconds`` (without a journal) or
    `menndl.library.journal.JOURNALED_BATCH_SECONDS` (with one, which is then
    ``fsync``'d every ``flush_seconds``).  A clean :meth:`close` writes the
    rest and removes the journal.

    Example:
        >>> with LibraryWriter("run.h5", job_text=toml_text) as lib:  # doctest: +SKIP
        ...     lib.append({"id": 0, "genome": "{}", "status": "ok", "accuracy": 0.9})
        ...     lib.set_pareto([0])

    Args:
        path: Where to create the library.  The file must not exist yet.
        job_text: Text of the TOML job file, stored verbatim as root
            attribute ``job``.
        attrs: Extra root attributes (e.g. ``menndl_version``, a dataset
            fingerprint).  Values must be ``str``, ``int`` or ``float``; the
            names ``format``, ``format_version``, ``job`` and ``created_at``
            are reserved.
        flush_every: Number of buffered records that triggers a write.
        flush_seconds: Without a journal, the age of the oldest buffered
            record that triggers a write; with one, the longest time between
            ``fsync`` calls of the journal (``None``: only ``flush_every``
            counts, and only batches sync).
        journal: Keep the crash-safety journal (off only for offline bulk
            writers such as ``menndl library merge`` and the benchmark).
        keep_weights: Keep the weights of this many best candidates (by
            accuracy) offered to :meth:`offer_weights`.

    Raises:
        UserError: ``path`` already exists, its folder is missing, or the file
            cannot be created.
        TypeError: ``job_text`` is not a str, or an attribute has a bad type.
        ValueError: ``flush_every`` < 1 or a reserved attribute name is used.
    """

    batches_class: ClassVar[BatchesFactory] = InlineBatches
    """Who writes the HDF5 batches (``FoldingWriter`` hands them to a fold process)."""

    def __init__(
        self,
        path: str | Path,
        *,
        job_text: str,
        attrs: Mapping[str, str | int | float] = {},  # noqa: B006 (read-only)
        flush_every: int = 1,
        flush_seconds: float | None = None,
        journal: bool = True,
        keep_weights: int = 0,
    ) -> None:
        if not isinstance(job_text, str):
            raise TypeError(f"job_text must be a str, got {type(job_text).__name__}")
        policy = _Policy(flush_every, flush_seconds, keep_weights)
        extra = check_attrs(attrs)
        p = Path(path)
        store = ColumnStore.create(p, job_text, extra)  # under a temporary name, linked into place with its journal
        log: Journal = NoJournal()
        try:
            log = start_journal(p, store.root_attrs(), enabled=journal, sync_seconds=flush_seconds)
            store.publish()
        except Exception as exc:
            store.discard()
            log.abandon(remove=not p.exists())
            if isinstance(exc, FileExistsError):
                raise UserError(f"library {p} already exists; choose another --library path") from None
            if isinstance(exc, OSError):
                raise UserError(f"cannot create library {p}: {failure_reason(exc)}") from None
            raise
        self._start(store, log, SearchState(), TopModels(policy.keep_weights, {}), policy.flush_every)

    @classmethod
    def reopen(
        cls,
        path: str | Path,
        *,
        flush_every: int = 1,
        flush_seconds: float | None = None,
        keep_weights: int = 0,
    ) -> LibraryWriter:
        """Open an existing, recovered library to append to it (``menndl run --resume``).

        The file is first copied to ``LIB.base`` (a closed, consistent copy
        that a crash cannot damage) and a new journal is started.

        Raises:
            UserError: The library is missing, still has a journal (call
                :func:`menndl.library.recover` first), or cannot be opened.
        """
        policy = _Policy(flush_every, flush_seconds, keep_weights)
        p = Path(path)
        if journal_path(p).exists():
            raise UserError(f"library {p} has a journal; recover it before appending")
        try:
            shutil.copy2(p, base_path(p))
            store = ColumnStore.open(p)
        except Exception as exc:
            raise UserError(f"cannot open library {p} for appending: {failure_reason(exc)}") from None
        try:
            state = search_state(store.read_state(), None, store.ids())
            models = TopModels(policy.keep_weights, store.stored_models())
            log = JournalFile(p, store.root_attrs(), flush_seconds)
        except Exception:
            store.close()
            raise
        self = cls.__new__(cls)  # the file exists: none of `__init__`'s creation
        self._start(store, log, state, models, policy.flush_every)
        return self

    def _start(
        self, store: ColumnStore, journal: Journal, state: SearchState, models: TopModels, flush_every: int
    ) -> None:
        """Attach to an open file and its journal, continuing from ``state`` with the kept ``models``."""
        self._path = store.path
        self._broken = ""  # the first failed write's message: the writer then writes nothing more
        self._closed = False
        self._journal = journal
        self._state_in_batches = not journal.keeps_state  # without a journal the file is the state's only copy
        self._state = StateTracker(state)
        self._state_dirty = False  # the state must go with the next batch
        self._front: list[int] | None = None  # the newest Pareto front this writer was given
        self._front_dirty = False
        self._models = models
        self._batches = type(self).batches_class(store, journal, flush_every, journal.batch_seconds)

    # ------------------------------------------------------------------ API

    @property
    def path(self) -> Path:
        """Path of the library file."""
        return self._path

    @property
    def written(self) -> int:
        """Rows already in the HDF5 file (the rest are buffered and journaled)."""
        return self._batches.written

    @property
    def batches(self) -> Batches:
        """Who writes the HDF5 batches (an instance of `batches_class`)."""
        return self._batches

    def __len__(self) -> int:
        """Return the number of records written plus those still buffered."""
        return self._batches.rows

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {str(self._path)!r} {state}, {len(self)} records>"

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one evaluation record (journaled at the next `commit` or `tick`, written to HDF5 with its batch).

        Values are converted immediately, so a bad record fails here and not
        at a later flush.  Absent fields (or ``None`` values) are stored as
        :data:`menndl.library.schema.MISSING` for their kind.  For the JSON
        fields ``genome`` and ``parents`` a non-str value is JSON-encoded.

        Args:
            record: Mapping from field name to value.

        Raises:
            ValueError: ``record`` has keys that are not library fields, or
                the writer is closed.
            TypeError: A value has the wrong type for its field.
            UserError: The buffer became full and writing it failed.
        """
        self._check_open()
        if not _FIELD_SET.issuperset(record):
            unknown = [k for k in record if k not in FIELD_KINDS]
            raise ValueError(
                f"unknown library field(s) {', '.join(map(repr, unknown))}; valid fields: {', '.join(FIELD_NAMES)}"
            )
        row = tuple([stored_value(name, kind, record.get(name)) for name, kind in EVALUATION_FIELDS])
        self._journal.row(row)
        if self._state.finished(row[0]):
            self._state_dirty = self._state_dirty or self._state_in_batches
        if self._batches.add(row):
            self.flush()
        else:
            self._flush_if_due()

    def task_started(self, task: Mapping[str, Any]) -> None:
        """Journal a candidate handed to a worker, so that a resume re-queues it if it never finishes.

        Args:
            task: ``id, genome (JSON text), hash, parents (list), operator,
                seed, submitted_at`` and, optionally, ``rng_state`` (JSON
                text, the master's random state after proposing it) and
                ``next_id``.  The writer keeps the mapping until the task's row comes: do not change it.
        """
        self._check_open()
        self._journal.task(task)
        self._state.started(task)
        self._state_dirty = self._state_dirty or self._state_in_batches
        self._batches.touch()

    def commit(self) -> None:
        """Write the journal lines queued so far (one ``write()``); the master calls it before each send.

        Raises:
            UserError: The write failed (e.g. the disk is full); the writer then writes nothing more.
        """
        self._journal_call(self._journal.commit)

    def tick(self) -> None:
        """Commit the journal; sync it or write the HDF5 batch when due.  Call it at every turn of the master loop.

        With a journal, ``flush_seconds`` bounds how long a record waits for ``fsync``, and the HDF5
        batch (only a checkpoint of the journal: readers read the journal while a search runs) is
        written every ``flush_every`` records or `menndl.library.journal.JOURNALED_BATCH_SECONDS`.
        Without a journal, ``flush_seconds`` bounds how long a record waits for the HDF5 file.
        """
        self.commit()
        if not self._flush_if_due():
            self._journal_call(self._journal.tick)

    def _flush_if_due(self) -> bool:
        """Write the HDF5 batch when its oldest record has waited long enough (see `tick`)."""
        if not self._batches.due(self._state_dirty):
            return False
        self.flush()
        return True

    def offer_weights(self, eval_id: int, accuracy: float, arrays: Mapping[str, Any]) -> bool:
        """Keep a candidate's trained weights if it is among the ``keep_weights`` most accurate.

        Arrays are stored as float32 datasets ``weights/<id>/<name>`` at the
        next flush; a candidate pushed out of the top is deleted then.  With a
        journal, a kept model is also written at once to its own file beside the
        library (`menndl.library.kept_weights`), so that a crash loses none.

        Returns:
            Whether the weights are kept (for now).

        Raises:
            UserError: The model's file cannot be written (e.g. the disk is full).
        """
        self._check_open()
        admitted, worst = self._models.admits(accuracy)
        if not admitted:
            return False
        clean = model_arrays(arrays)
        try:  # the new model is safe on disk before the one it replaces goes
            self._journal.keep_model(int(eval_id), float(accuracy), clean, self._models.keep)
        except (OSError, RuntimeError) as exc:
            where = weights_dir(self._path)
            raise self._broken_by(f"cannot write kept weights in {where}: {failure_reason(exc)}") from None
        if worst is not None:
            self._models.drop(worst)
            self._journal.drop_model(worst)
        self._models.add(int(eval_id), float(accuracy), clean)
        return True

    def write_columns(self, columns: Mapping[str, Any]) -> None:
        """Append many rows at once, given as whole columns (the fast path; not journaled).

        Used by offline writers (merge, the benchmark).  Missing columns are
        filled with their missing value.

        Raises:
            ValueError: Unknown column names or columns of different lengths.
            TypeError: The writer hands its batches to a fold process.
        """
        self._check_open()
        unknown = [k for k in columns if k not in FIELD_KINDS]
        if unknown:
            raise ValueError(f"unknown library field(s) {', '.join(map(repr, unknown))}")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        self.flush()
        typed = {}
        for name, kind in EVALUATION_FIELDS:
            if name not in columns:
                values: Any = np.full(n, MISSING[kind], dtype=object if kind == "str" else None)
            elif kind == "str":
                values = [clean_str(str(v)) for v in columns[name]]
            else:
                values = columns[name]
            typed[name] = typed_column(kind, values)
        self._batches.write_columns(typed)
        self.flush()

    def flush(self, final: bool = False) -> None:
        """Sync the journal, then write the buffered rows (one slice per column), state and weights.

        ``final`` (at close) also writes the list of tasks in flight.

        The ``count`` attribute of ``/evaluations`` is updated only after all
        columns hold the new rows, so readers never see half-written rows.

        Raises:
            ValueError: The writer is closed.
            UserError: Writing failed (e.g. the disk is full).
        """
        self._check_open()
        self._journal_call(self._journal.sync)
        try:
            self._batches.write(self._batch(final))
        except (OSError, RuntimeError) as exc:  # h5py reports failed writes as both
            raise self._broken_by(f"cannot write library {self._path}: {failure_reason(exc)}") from None
        self._state_dirty = self._front_dirty = False

    def _batch(self, final: bool) -> Batch:
        """What the next HDF5 batch writes besides the rows (``final``: everything, the in-flight list too)."""
        state = self._state.snapshot() if self._state_dirty or final else None
        front = self._front if self._front_dirty or final else None
        return Batch(state, final or self._state_in_batches, self._models, front)

    def set_session(self, stop_reason: str, search_seconds: float) -> None:
        """Note why this run of the search ended and its search seconds so far (written at close).

        ``menndl library LIB status`` and a ``--resume`` read them: the reason
        says whether the search is finished, and the time limit counts on.
        """
        self._check_open()
        self._state.end_session(stop_reason, search_seconds)
        self._state_dirty = True

    def set_pareto(self, ids: Sequence[int]) -> None:
        """Replace the Pareto-front id list ``/pareto`` (journaled; without a journal, written at once).

        Args:
            ids: Evaluation ids on the current Pareto front, in the order to
                store them.

        Raises:
            ValueError: The writer is closed.
            TypeError: An id is not an integer.
            UserError: Writing failed.
        """
        self._check_open()
        values = pareto_ids(ids)
        self._journal.pareto(values)
        self._front, self._front_dirty = values, True
        if self._state_in_batches:
            self.flush()  # the file is the only copy
        else:
            self.commit()  # the journal line is the durable copy; the dataset reaches the file with the next batch

    def close(self) -> None:
        """Flush buffered records, close the file and remove the journal.  Safe to call twice.

        Raises:
            UserError: The final write failed (the file is closed anyway; the
                journal is kept, so nothing is lost).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._broken:
                raise StorageError(self._broken)
            self._journal_call(self._journal.sync)
            try:
                self._batches.finish(self._batch(final=True))
            except (OSError, RuntimeError) as exc:  # h5py reports failed writes as both
                raise self._broken_by(f"cannot write library {self._path}: {failure_reason(exc)}") from None
        except BaseException:
            self._batches.release()
            self._journal.abandon()
            raise
        self._journal.close()

    def __enter__(self) -> LibraryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -------------------------------------------------------------- helpers

    def _journal_call(self, call: Callable[[], None]) -> None:
        """Run a journal write; a failure breaks the writer."""
        try:
            call()
        except OSError as exc:
            message = f"cannot write library journal {journal_path(self._path)}: {failure_reason(exc)}"
            raise self._broken_by(message) from None

    def _broken_by(self, message: str) -> StorageError:
        """Remember the first failed write: from then on the writer writes nothing more (see `_check_open`).

        A write after a failure could put rows in the journal that a resume must not see (``lost``
        rows for the tasks in flight, which it re-queues instead) or a line after a torn one.
        """
        self._broken = self._broken or message
        return StorageError(self._broken)

    def _check_open(self) -> None:
        if self._broken:
            raise StorageError(self._broken)
        if self._closed:
            raise ValueError(f"library writer for {self._path} is closed")
