"""The append-only journal beside a library that is being written (``LIB.h5.journal``).

While a search runs, every event reaches the journal before anything else: one JSON object per
line, committed with one ``write()`` before the master sends the next task and at every turn of
its loop (so a ``kill -9`` of the master loses nothing it acted on; the operating system still
holds it) and ``fsync``'d at least every ``flush_seconds`` (so a power cut loses at most that).
The HDF5 file itself is written in batches and may be left half-written by a crash; the journal
is what makes the library crash-safe:

* readers (``menndl library ...``) of a library with a journal read the journal (plus the
  ``.base`` copy, see below) and never open the HDF5 file that is being written;
* ``menndl run --resume`` replays the journal into the HDF5 file (:func:`menndl.library.recover`)
  and removes it; a clean close removes it too.

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

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.library.schema import FIELD_NAMES as EVALUATION_NAMES

JOURNAL_FORMAT = "menndl-library-journal"
JOURNAL_VERSION = 2  # 2: row lines list values in the header's field order (1: objects; still read)
JOURNAL_SUFFIX = ".journal"
BASE_SUFFIX = ".base"


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
    """What a journal holds, in order; a torn last line (a crash mid-write) is dropped."""

    attrs: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_task: dict[str, Any] | None = None
    rng_state: str | None = None  # the newest random state any task line carried
    search_seconds: float | None = None  # the newest search time any task line carried
    pareto: list[int] | None = None
    torn_lines: int = 0

    def pending(self) -> list[dict[str, Any]]:
        """Tasks handed out that have no row yet (what was in flight), in id order."""
        done = {int(row["id"]) for row in self.rows}
        return [task for task_id, task in sorted(self.tasks.items()) if task_id not in done]


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
            what is in flight); `JournalContents.pending` then needs the rows too, so leave it off for that.
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
            task = {k: v for k, v in event.items() if k not in ("type", "rng_state", "search_seconds")}
            if event.get("rng_state") is not None:  # only the newest random state matters; keep memory flat
                out.rng_state = str(event["rng_state"])
            if isinstance(event.get("search_seconds"), (int, float)):
                out.search_seconds = float(event["search_seconds"])
            out.tasks[int(task["id"])] = task
            out.last_task = task
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
