"""The append-only journal beside a library that is being written (``LIB.h5.journal``).

While a search runs, every event reaches the journal before anything else: one JSON object per
line, committed with one ``write()`` before the master sends the next task and at every turn of
its loop (so a ``kill -9`` of the master loses nothing it acted on; the operating system still
holds it) and ``fsync``'d at least every ``flush_seconds`` (so a power cut loses at most that).
The HDF5 file itself is written in batches and may be left half-written by a crash; the journal
is what makes the library crash-safe:

* readers (``menndl library ...``) of a library with a journal read the journal (plus the
  ``.base`` copy, see below) and never open the HDF5 file that is being written;
* ``menndl run --resume`` rebuilds the HDF5 file from the base and the journal
  (:func:`menndl.library.recover`; the crashed file is never written into) and removes the
  journal; a clean close removes it too.

Lines (``type`` first):

``header``  ``{"type": "header", "format": "menndl-library-journal", "version": 2, "attrs": {...},
            "fields": [...]}``: the root attributes of the library (job text, fingerprint, ...) and
            the names of the evaluation fields, in the order row lines list their values; first line.
``task``    a candidate handed to a worker: ``id, genome, hash, parents, operator, seed,
            submitted_at, next_id`` and, at most once a second, ``rng_state`` (the master's random
            state after proposing it) and ``search_seconds`` (search time so far, earlier runs of
            the library included: what ``search.time_limit`` counts, kept by a crash too).
``row``     ``{"type": "row", "values": [...]}``: one finished evaluation, every field's value in
            the header's order (a list: a third cheaper to write than an object with the names);
            the ``genome`` is ``null`` when this journal already has the evaluation's ``task``
            line (it is the same text: the reader takes it from there).  Version 1 journals
            (``{"type": "row", "record": {...}}``, no ``fields``) are still read.
``pareto``  ``{"type": "pareto", "ids": [...]}``: the current Pareto front.

When an existing library is reopened for writing (resume), it is first copied to ``LIB.h5.base``
(a closed, consistent file) and a new journal is started; the library's rows are then the base's
rows plus the journal's.
"""

from __future__ import annotations

import abc
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.library.schema import FIELD_NAMES as EVALUATION_NAMES

JOURNAL_FORMAT = "menndl-library-journal"
JOURNAL_VERSION = 2  # 2: row lines list values in the header's field order (1: objects; still read)
JOURNAL_SUFFIX = ".journal"
STATE_KEYS = frozenset({"rng_state", "next_id", "search_seconds"})
"""Keys of a task line that carry the master's state, not the task's (the in-flight list drops them)."""
BASE_SUFFIX = ".base"
WEIGHTS_SUFFIX = ".weights"
JOURNALED_BATCH_SECONDS = 60.0
"""With a journal, the longest wait of a row for its HDF5 batch (the journal is the durable copy)."""


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one instance: no per-call setup
_QUOTE = json.encoder.encode_basestring  # a str as _ENCODER writes it (ensure_ascii=False)
# A task line's usual keys, formatted without the encoder's per-call set-up (see `JournalWriter.write_task`)
_TASK_KEYS = ("id", "genome", "hash", "parents", "operator", "seed", "submitted_at", "next_id")
_TASK_TEMPLATE = (
    '{"type":"task","id":%d,"genome":%s,"hash":%s,"parents":[%s],"operator":%s,"seed":%d,"submitted_at":%r,'
    '"next_id":%d}'
)


def journal_path(library: str | Path) -> Path:
    """The journal of a library: ``LIB.h5`` -> ``LIB.h5.journal``."""
    p = Path(library)
    return p.with_name(p.name + JOURNAL_SUFFIX)


def base_path(library: str | Path) -> Path:
    """The consistent copy a resumed library started from: ``LIB.h5`` -> ``LIB.h5.base``."""
    p = Path(library)
    return p.with_name(p.name + BASE_SUFFIX)


def weights_dir(library: str | Path) -> Path:
    """The folder of a library's kept weights while it is written: ``LIB.h5`` -> ``LIB.h5.weights``."""
    p = Path(library)
    return p.with_name(p.name + WEIGHTS_SUFFIX)


def remove_companions(library: str | Path) -> None:
    """Remove what lies beside a library while it is written: journal, base copy, kept-weights folder
    (a clean close, or a recovery, has put their contents into the library)."""
    journal_path(library).unlink(missing_ok=True)
    base_path(library).unlink(missing_ok=True)
    shutil.rmtree(weights_dir(library), ignore_errors=True)


class JournalWriter:
    """Appends JSON lines to a journal file: :meth:`write` queues a line, :meth:`commit` writes the
    queued lines with one ``write()``, :meth:`sync` commits and ``fsync``'s.

    The master commits before it sends each task (one ``write()`` holds the result just received
    and the task that replaces it) and once per loop turn, so a ``kill -9`` loses nothing it has
    acted on; a parallel file system pays one small write per result, not two.
    """

    def __init__(
        self, path: Path, header_attrs: Mapping[str, Any] | None, fields: Sequence[str] = EVALUATION_NAMES
    ) -> None:
        """Open (create or append to) ``path``; write a header line when ``header_attrs`` is given.

        ``fields`` are the names of the values of row lines, in order (see `write_row`).
        """
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._end = os.lseek(self._fd, 0, os.SEEK_END)  # this writer is the only one: it keeps the end itself
        self._queued: list[str] = []
        self._dirty = False
        if header_attrs is not None:
            header = {"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "attrs": dict(header_attrs),
                      "fields": list(fields)}  # fmt: skip
            self.write({"type": "header", **header})
            self.sync()

    def write(self, event: Mapping[str, Any]) -> None:
        """Queue one event as one line (encoded now: a value JSON cannot hold fails here)."""
        if self._fd is None:
            raise ValueError(f"journal {self.path} is closed")
        self._queued.append(_ENCODER.encode(event))

    def write_task(self, task: Mapping[str, Any]) -> None:
        """Queue one task line: ``{"type": "task", **task}``, the same line `write` makes, at half the cost.

        The usual keys (`_TASK_KEYS`, with exactly the types the master gives them) are formatted
        directly; any other key is encoded after them; anything unusual goes through `write`.
        """
        try:
            number, genome, hash_, parents, operator, seed, submitted, next_id = (task[key] for key in _TASK_KEYS)
        except KeyError:
            self.write({"type": "task", **task})
            return
        plain = "type" not in task and (
            type(number) is int and type(seed) is int and type(next_id) is int and type(submitted) is float
            and math.isfinite(submitted) and type(genome) is str and type(hash_) is str and type(operator) is str
            and type(parents) in (list, tuple) and all(type(parent) is int for parent in parents)
        )  # fmt: skip
        if not plain:
            self.write({"type": "task", **task})
            return
        if self._fd is None:
            raise ValueError(f"journal {self.path} is closed")
        line = _TASK_TEMPLATE % (number, _QUOTE(genome), _QUOTE(hash_), ",".join(map(str, parents)),
                                 _QUOTE(operator), seed, submitted, next_id)  # fmt: skip
        if len(task) > len(_TASK_KEYS):
            extra = {key: value for key, value in task.items() if key not in _TASK_KEYS and key != "type"}
            line = line[:-1] + "," + _ENCODER.encode(extra)[1:]
        self._queued.append(line)

    def write_row(self, values: Sequence[Any]) -> None:
        """Queue one row line: the evaluation's values in the header's field order."""
        if self._fd is None:
            raise ValueError(f"journal {self.path} is closed")
        self._queued.append('{"type":"row","values":' + _ENCODER.encode(values) + "}")

    def commit(self) -> None:
        """Write the queued lines with one ``write()``; on failure leave no torn line and raise ``OSError``."""
        if not self._queued or self._fd is None:
            return
        self._queued.append("")
        data = "\n".join(self._queued).encode()
        self._queued.clear()
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a regular file takes it all at once; loop for the rare short write
                written += os.write(self._fd, memoryview(data)[written:])
        except OSError:  # disk full, quota, file size limit: leave no torn line behind
            try:
                os.ftruncate(self._fd, self._end)
            except OSError:
                pass
            raise
        self._end += len(data)
        self._dirty = True

    def sync(self) -> None:
        """Commit, then make everything written so far durable (``fsync``)."""
        self.commit()
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False

    def close(self) -> None:
        """Sync and close; safe to call twice."""
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None


@dataclass
class JournalContents:
    """What a journal holds, in order; a torn last line (a crash mid-write) is dropped.

    Attributes:
        attrs: The header's root attributes (None: no header line).
        rows: Every row line's record (field -> value), in order.
        tasks: Id -> task line, without the master's state keys (``rng_state``, ``next_id``,
            ``search_seconds``); with ``forget_finished`` only the tasks without a row.
        next_id: The ``next_id`` the newest task line carried.
        rng_state: The newest random state any task line carried.
        search_seconds: The newest search time any task line carried.
        pareto: The newest Pareto front line's ids.
        torn_lines: Lines that did not parse.
    """

    attrs: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int | None = None
    rng_state: str | None = None
    search_seconds: float | None = None
    pareto: list[int] | None = None
    torn_lines: int = 0


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        data = fh.read()
    end = data.rfind(b"\n")
    complete = data[: end + 1] if end >= 0 else b""
    yield from complete.splitlines()
    if data[end + 1 :].strip():
        yield b"\0torn"


class JournalParser:
    """Reads journal lines one at a time into a `JournalContents` (`read_journal`, and the fold
    process that follows a journal as it grows).

    Args:
        forget_finished: drop a task once its row came (the fold process: memory stays the size of
            what is in flight).
    """

    def __init__(self, forget_finished: bool = False) -> None:
        self.contents = JournalContents()
        self._fields: list[str] | None = None  # the header's field names (version 2): row values in this order
        self._forget = forget_finished

    def feed(self, line: bytes) -> None:
        """Take one line (without its newline); a line that does not parse is counted as torn."""
        out = self.contents
        try:
            event = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            out.torn_lines += 1
            return
        if not isinstance(event, dict):
            out.torn_lines += 1
            return
        kind = event.get("type")
        if kind == "header" and out.attrs is None:
            out.attrs = dict(event.get("attrs", {}))
            self._fields = event.get("fields")
        elif kind == "row":
            if "values" in event:
                fields = self._fields
                if fields is None or len(event["values"]) != len(fields):
                    out.torn_lines += 1  # not this journal's row shape: never written by a writer
                    return
                record = dict(zip(fields, event["values"]))
                if record.get("genome") is None:
                    del record["genome"]
            else:
                record = dict(event["record"])
            task = out.tasks.pop(record["id"], None) if self._forget else out.tasks.get(record["id"])
            if "genome" not in record and task is not None:
                record = {"id": record["id"], "genome": task["genome"], **record}  # the task line has the text
            out.rows.append(record)
        elif kind == "task":
            task = {k: v for k, v in event.items() if k != "type" and k not in STATE_KEYS}
            if event.get("rng_state") is not None:  # only the newest random state matters; keep memory flat
                out.rng_state = str(event["rng_state"])
            if isinstance(event.get("search_seconds"), (int, float)):
                out.search_seconds = float(event["search_seconds"])
            if isinstance(event.get("next_id"), int):
                out.next_id = event["next_id"]
            out.tasks[int(task["id"])] = task
        elif kind == "pareto":
            out.pareto = [int(i) for i in event["ids"]]


def read_journal(path: str | Path) -> JournalContents:
    """Parse a journal; lines that do not parse (a torn end) are counted and skipped.

    Raises:
        OSError: The file cannot be read.
    """
    parser = JournalParser()
    for line in _lines(Path(path)):
        parser.feed(line)
    return parser.contents


class Journal(abc.ABC):
    """Where a library writer sends every event before its HDF5 file has it.

    Two implementations: :class:`JournalFile` (a running search: every event is a line of
    ``LIB.h5.journal``, kept models also go to their own files) and :class:`NoJournal` (offline
    writers such as ``menndl library merge``: the HDF5 file is the only copy).  The writer takes
    its batch policy from the two attributes and calls the methods unconditionally.

    Attributes:
        keeps_state: Whether the journal holds every task and front, so that the HDF5 file needs
            the search state (the in-flight list above all) only at close; without one, every
            batch carries it and a new front is written at once.
        batch_seconds: The longest wait of the oldest buffered row for its HDF5 batch (None:
            only the batch size counts).
    """

    keeps_state: bool
    batch_seconds: float | None

    @abc.abstractmethod
    def row(self, row: Sequence[Any]) -> None:
        """Queue a finished evaluation: its stored values in the schema's field order."""

    @abc.abstractmethod
    def task(self, task: Mapping[str, Any]) -> None:
        """Queue a task handed to a worker."""

    @abc.abstractmethod
    def pareto(self, ids: Sequence[int]) -> None:
        """Queue a new Pareto front."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Write what is queued (one ``write()``).

        Raises:
            OSError: The write failed; no torn line is left.
        """

    @abc.abstractmethod
    def sync(self) -> None:
        """Commit, then make everything durable (``fsync``).

        Raises:
            OSError: The write or the ``fsync`` failed.
        """

    @abc.abstractmethod
    def tick(self) -> None:
        """Sync when the last sync is older than the writer's ``flush_seconds``.

        Raises:
            OSError: The sync failed.
        """

    @abc.abstractmethod
    def keep_model(self, eval_id: int, accuracy: float, arrays: Mapping[str, Any], keep: int) -> None:
        """Make a model the writer keeps safe before its HDF5 batch.

        Raises:
            OSError: Its file cannot be written.
        """

    @abc.abstractmethod
    def drop_model(self, eval_id: int) -> None:
        """Forget a model pushed out of the top."""

    @abc.abstractmethod
    def close(self) -> None:
        """Clean close (the HDF5 file has everything): remove the journal and what lies beside the library.

        Raises:
            OSError: The last sync failed (the journal is kept).
        """

    @abc.abstractmethod
    def abandon(self, remove: bool = False) -> None:
        """Close after a failure, keeping the journal (or removing it, with ``remove``); never raises."""


class JournalFile(Journal):
    """The journal of a running search, ``LIB.h5.journal`` (see the module documentation).

    A row line leaves out the genome text when this journal's task line of the same id has it.
    Kept models are written to their own files in ``LIB.h5.weights`` (`menndl.library.kept_weights`).

    Args:
        library: The library's path.
        attrs: Its root attributes, for the header line (written and synced now).
        sync_seconds: The longest time between two ``fsync`` calls (None: only batches sync).

    Raises:
        OSError: The journal cannot be created.
    """

    keeps_state = True

    def __init__(self, library: Path, attrs: Mapping[str, Any], sync_seconds: float | None) -> None:
        self.library = library
        self._lines = JournalWriter(journal_path(library), attrs)
        self._sync_seconds = sync_seconds
        self._synced_at = time.monotonic()
        self._genomes: dict[int, str] = {}  # id -> genome text of this journal's task lines without a row yet
        self.batch_seconds = None if sync_seconds is None else max(sync_seconds, JOURNALED_BATCH_SECONDS)

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._lines.path

    def row(self, row: Sequence[Any]) -> None:
        """Queue a row line (``id`` and ``genome`` are the schema's first fields)."""
        if self._genomes.pop(row[0], None) == row[1]:
            self._lines.write_row((row[0], None, *row[2:]))  # this journal's task line has the same text
        else:
            self._lines.write_row(row)

    def task(self, task: Mapping[str, Any]) -> None:
        """Queue a task line."""
        task_id = int(task["id"])
        self._lines.write_task(task)
        self._genomes[task_id] = task["genome"]

    def pareto(self, ids: Sequence[int]) -> None:
        """Queue a Pareto line."""
        self._lines.write({"type": "pareto", "ids": list(ids)})

    def commit(self) -> None:
        """Write the queued lines with one ``write()``."""
        self._lines.commit()

    def sync(self) -> None:
        """Commit and ``fsync``."""
        self._lines.sync()
        self._synced_at = time.monotonic()

    def tick(self) -> None:
        """``fsync`` when ``sync_seconds`` have passed since the last one."""
        if self._sync_seconds is None:
            return
        now = time.monotonic()
        if now - self._synced_at >= self._sync_seconds:
            self._lines.sync()
            self._synced_at = now

    def keep_model(self, eval_id: int, accuracy: float, arrays: Mapping[str, Any], keep: int) -> None:
        """Write the model to ``LIB.h5.weights/<id>.h5`` now, complete before it gets that name."""
        from menndl.library.kept_weights import save_weights_file

        save_weights_file(weights_dir(self.library), eval_id, accuracy, arrays, keep)

    def drop_model(self, eval_id: int) -> None:
        """Delete the model's file."""
        (weights_dir(self.library) / f"{int(eval_id)}.h5").unlink(missing_ok=True)

    def close(self) -> None:
        """Sync and close the journal, then remove it with the base copy and the kept-weights folder."""
        self._lines.close()
        remove_companions(self.library)

    def abandon(self, remove: bool = False) -> None:
        """Close the file (what was written is there), and remove it with ``remove``."""
        try:
            self._lines.close()
        except OSError:
            pass  # fsync of a full disk: what was written is there
        if remove:
            self.path.unlink(missing_ok=True)


class NoJournal(Journal):
    """No journal (offline writers): every method does nothing, and the HDF5 batches carry the state.

    Args:
        batch_seconds: The longest wait of the oldest buffered row for its HDF5 batch.
    """

    keeps_state = False

    def __init__(self, batch_seconds: float | None = None) -> None:
        self.batch_seconds = batch_seconds

    def row(self, row: Sequence[Any]) -> None:
        """Nothing to queue."""

    def task(self, task: Mapping[str, Any]) -> None:
        """Nothing to queue."""

    def pareto(self, ids: Sequence[int]) -> None:
        """Nothing to queue."""

    def commit(self) -> None:
        """Nothing to write."""

    def sync(self) -> None:
        """Nothing to sync."""

    def tick(self) -> None:
        """Nothing to sync."""

    def keep_model(self, eval_id: int, accuracy: float, arrays: Mapping[str, Any], keep: int) -> None:
        """The model waits for the HDF5 batch."""

    def drop_model(self, eval_id: int) -> None:
        """Nothing to delete."""

    def close(self) -> None:
        """Nothing to remove."""

    def abandon(self, remove: bool = False) -> None:
        """Nothing to close."""


def start_journal(library: Path, attrs: Mapping[str, Any], *, enabled: bool, sync_seconds: float | None) -> Journal:
    """The journal of a new library: a fresh :class:`JournalFile` (stale companions removed first), or
    :class:`NoJournal` when not ``enabled``.

    Raises:
        OSError: The journal cannot be created.
    """
    if not enabled:
        return NoJournal(sync_seconds)
    remove_companions(library)
    return JournalFile(library, attrs, sync_seconds)
