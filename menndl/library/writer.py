"""Writing the HDF5 architecture library.

Only the master process writes a library, one record per finished evaluation.
The file holds data only: integers, floats and variable-length UTF-8 strings,
never pickles or opaque blobs.  See ``docs/library-format.md`` for the layout.

Crash safety comes from the journal (:mod:`menndl.library.journal`): every
record and every dispatched task goes there, one line each, written at the
next commit (the master commits before each send); the HDF5 columns are
written in batches (see :class:`LibraryWriter`), one slice per column.
"""

from __future__ import annotations

import glob
import json
import math
import operator
import os
import re
import shutil
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from menndl.errors import StorageError, UserError
from menndl.library.journal import JournalWriter, base_path, journal_path
from menndl.library.kept_weights import (
    drop_weights_file,
    remove_weights_dir,
    save_weights_file,
    weights_dir,
    write_model,
)
from menndl.library.schema import (
    COUNT_ATTR,
    EVALUATION_FIELDS,
    EVALUATIONS_GROUP,
    FIELD_DESCRIPTIONS,
    FIELD_KINDS,
    FIELD_NAMES,
    FORMAT_NAME,
    FORMAT_VERSION,
    JSON_FIELDS,
    MISSING,
    NUMPY_DTYPES,
    PARETO_DATASET,
    RESERVED_ROOT_ATTRS,
    STATE_GROUP,
    WEIGHTS_GROUP,
)

__all__ = ["LibraryWriter"]

_CHUNK_ROWS = 512
_FIELD_SET = frozenset(FIELD_KINDS)
_STATE_KEYS = frozenset({"rng_state", "next_id", "search_seconds"})  # task keys: the master's state, not the task's
JOURNALED_BATCH_SECONDS = 60.0  # with a journal, the oldest record waits at most this long for the HDF5 file
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_STR_DTYPE = h5py.string_dtype("utf-8")


def _reason(exc: BaseException) -> str:
    """Return a one-line reason for an OS/h5py error."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno).lower()
    text = " ".join(str(exc).split())
    system = re.search(r"error message = '([^']*)'", text)  # HDF5's long report of a failed write
    if system:
        return f"{text.split(' (')[0]}: {system.group(1).lower()}"
    return text or type(exc).__name__


def remove_companions(library: Path) -> None:
    """Remove what lies beside a library while it is written: journal, base copy, kept-weights folder
    (a clean close, or a recovery, has put their contents into the library)."""
    journal_path(library).unlink(missing_ok=True)
    base_path(library).unlink(missing_ok=True)
    remove_weights_dir(library)


def _remove_stale_tmp(path: Path) -> None:
    """Remove what a writer killed while creating ``path`` left (``.NAME.<host>.<pid>.tmp``, this host's,
    its process gone); another host's, or a live process's, are not this process's to judge."""
    prefix = f".{path.name}.{socket.gethostname()}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = stale.name[len(prefix) : -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except OSError:
            pass  # alive (another user's process): leave it


def _clean_str(value: str) -> str:
    """Make ``value`` storable as an HDF5 variable-length UTF-8 string.

    Embedded NUL characters (unsupported by HDF5 strings) and lone surrogates
    (not encodable as UTF-8) are replaced by U+FFFD.
    """
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def _convert(name: str, kind: str, value: Any) -> Any:
    """Convert one record value to its stored form, or raise TypeError."""
    if value is None:
        return MISSING[kind]
    cls = type(value)  # fast paths for the common exact types
    if kind == "str" and cls is str and value.isascii() and "\x00" not in value:
        return value
    if kind == "float" and cls is float:
        return value
    if kind == "int" and cls is int and _INT64_MIN <= value <= _INT64_MAX:
        return value
    if kind == "int":
        if isinstance(value, (float, np.floating)):
            if not (math.isfinite(value) and float(value).is_integer()):
                raise TypeError(f"library field {name!r} expects an integer, got {value!r}")
            value = int(value)
        try:
            result = operator.index(value)
        except TypeError:
            raise TypeError(
                f"library field {name!r} expects an integer, got {type(value).__name__} {value!r}"
            ) from None
        if not _INT64_MIN <= result <= _INT64_MAX:
            raise ValueError(f"library field {name!r}: {result} does not fit in a 64-bit integer")
        return result
    if kind == "float":
        if isinstance(value, (str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"library field {name!r} expects a number, got {type(value).__name__} {value!r}")
        return float(value)
    # kind == "str"
    if not isinstance(value, str):
        if name in JSON_FIELDS and cls is list and all(type(v) is int for v in value):  # parent lists
            return "[" + ",".join(map(str, value)) + "]"
        if name in JSON_FIELDS and not isinstance(value, bytes):
            try:
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"library field {name!r}: cannot encode as JSON: {exc}") from None
        else:
            raise TypeError(f"library field {name!r} expects a str, got {type(value).__name__} {value!r}")
    return _clean_str(value)


def pareto_ids(ids: Sequence[int]) -> list[int]:
    """The ids of a Pareto front as plain ints.

    Raises:
        TypeError: An id is not an integer.
    """
    values = []
    for i in ids:
        try:
            values.append(operator.index(i))
        except TypeError:
            raise TypeError(f"Pareto ids must be integers, got {i!r}") from None
    return values


def _check_attrs(attrs: Mapping[str, str | int | float]) -> dict[str, Any]:
    """Validate extra root attributes; return them as HDF5-ready values."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"library attribute names must be non-empty str, got {key!r}")
        if key in RESERVED_ROOT_ATTRS:
            raise ValueError(f"library attribute {key!r} is reserved and written by the library")
        if isinstance(value, str):
            out[key] = _clean_str(value)
        elif isinstance(value, (bool, np.bool_)):
            out[key] = np.int64(int(value))
        elif isinstance(value, (int, np.integer)):
            out[key] = np.int64(value)
        elif isinstance(value, (float, np.floating)):
            out[key] = np.float64(value)
        else:
            raise TypeError(f"library attribute {key!r} must be str, int or float, got {type(value).__name__}")
    return out


def _plain_attr(value: Any) -> Any:
    """An h5py attribute value as plain JSON-able Python."""
    if isinstance(value, np.ndarray):
        return [_plain_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _create_layout(f: h5py.File, job_text: str, extra: Mapping[str, Any]) -> None:
    """Write the root attributes and the empty, extendable datasets of a new library."""
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    f.attrs["job"] = _clean_str(job_text)
    f.attrs["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for key, value in extra.items():
        f.attrs[key] = value
    group = f.create_group(EVALUATIONS_GROUP)
    group.attrs[COUNT_ATTR] = np.int64(0)
    for name, kind in EVALUATION_FIELDS:
        dtype = _STR_DTYPE if kind == "str" else NUMPY_DTYPES[kind]
        options: dict[str, Any] = {} if kind == "str" else {"fillvalue": MISSING[kind]}
        ds = group.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(_CHUNK_ROWS,), dtype=dtype, **options)
        ds.attrs["kind"] = kind
        ds.attrs["description"] = FIELD_DESCRIPTIONS[name]
    pareto = f.create_dataset(PARETO_DATASET, shape=(0,), maxshape=(None,), chunks=(_CHUNK_ROWS,), dtype="<i8")
    pareto.attrs["description"] = "ids of the evaluations on the current Pareto front"
    state = f.create_group(STATE_GROUP)
    state.attrs["next_id"] = np.int64(0)
    state.attrs["pending"] = "[]"
    f.create_group(WEIGHTS_GROUP)


class LibraryWriter:
    """Append-only writer of one HDF5 architecture library (the master is its only writer).

    Records passed to :meth:`append` (and tasks passed to :meth:`task_started`)
    are queued for the journal and written with one ``write()`` at the next
    :meth:`commit` or :meth:`tick` (the master calls them before each send and
    at every turn of its loop).  The HDF5 columns are written in batches of
    ``flush_every`` records, or when the oldest record has waited
    ``flush_seconds`` (without a journal) or `JOURNALED_BATCH_SECONDS` (with
    one, which is then ``fsync``'d every ``flush_seconds``).  A clean
    :meth:`close` writes the rest and removes the journal.

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

    _journal: JournalWriter | None
    _weights_dir: Path | None  # journaled: kept models are also written here at once (see `offer_weights`)

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
        self._setup_policy(path, flush_every, flush_seconds, keep_weights)
        extra = _check_attrs(attrs)
        p = self._path
        if p.exists() or p.is_symlink():
            raise UserError(f"library {p} already exists; choose another --library path")
        parent = p.parent
        if not parent.exists():
            raise UserError(f"cannot create library {p}: folder {parent} does not exist")
        if not parent.is_dir():
            raise UserError(f"cannot create library {p}: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"cannot create library {p}: folder {parent} is not writable")
        # Built under a temporary name and linked into place complete (with its journal), so that
        # a crash never leaves a half-created library at `path`; link() also never clobbers.
        _remove_stale_tmp(p)
        tmp = p.with_name(f".{p.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        try:
            f = h5py.File(tmp, "w")
        except Exception as exc:  # h5py raises OSError subclasses, sometimes others
            raise UserError(f"cannot create library {p}: {_reason(exc)}") from None
        try:
            _create_layout(f, job_text, extra)
            f.flush()
            self._bind(f)
            if journal:
                remove_companions(p)  # stale ones
                self._journal = JournalWriter(journal_path(p), self._root_attrs())
                self._weights_dir = weights_dir(p)
            os.link(tmp, p)
        except Exception as exc:
            f.close()
            if self._journal is not None:
                self._journal.close()
                if not p.exists():
                    self._journal.path.unlink(missing_ok=True)
            if isinstance(exc, FileExistsError):
                raise UserError(f"library {p} already exists; choose another --library path") from None
            if isinstance(exc, OSError):
                raise UserError(f"cannot create library {p}: {_reason(exc)}") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def _setup_policy(self, path: str | Path, flush_every: int, flush_seconds: float | None, keep_weights: int) -> None:
        self._broken = ""  # the first failed write's message: the writer then writes nothing more
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be an integer >= 1, got {flush_every!r}")
        if flush_seconds is not None and not flush_seconds >= 0:
            raise ValueError(f"flush_seconds must be >= 0 or None, got {flush_seconds!r}")
        if isinstance(keep_weights, bool) or not isinstance(keep_weights, int) or keep_weights < 0:
            raise ValueError(f"keep_weights must be an integer >= 0, got {keep_weights!r}")
        self._path = Path(path)
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self._keep_weights = keep_weights
        self._buffer: list[tuple[Any, ...]] = []
        self._buffer_since = 0.0
        self._synced_at = time.monotonic()  # the journal's last fsync
        self._written = 0
        self._file: h5py.File | None = None
        self._journal = None
        self._pending: dict[int, Mapping[str, Any]] = {}
        self._journaled_genomes: dict[int, str] = {}  # id -> genome text of the task lines in this journal
        self._rng_state: str | None = None
        self._next_id: int | None = None
        self._state_dirty = False
        self._session: dict[str, Any] = {}
        self._weights_stored: dict[int, float] = {}
        self._weights_queue: dict[int, tuple[float, dict[str, np.ndarray]]] = {}
        self._weights_evict: set[int] = set()
        self._weights_dir = None

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
        self = cls.__new__(cls)
        self._setup_policy(path, flush_every, flush_seconds, keep_weights)
        p = self._path
        if journal_path(p).exists():
            raise UserError(f"library {p} has a journal; recover it before appending")
        try:
            shutil.copy2(p, base_path(p))
            f = h5py.File(p, "a")
        except Exception as exc:
            raise UserError(f"cannot open library {p} for appending: {_reason(exc)}") from None
        try:
            self._bind(f)
            state = f[STATE_GROUP].attrs
            if "pending" in state:
                self._pending = {int(t["id"]): t for t in json.loads(str(_plain_attr(state["pending"])))}
            if "rng_state" in state:
                self._rng_state = str(_plain_attr(state["rng_state"]))
            if "next_id" in state:
                self._next_id = int(state["next_id"])
            self._journal = JournalWriter(journal_path(p), self._root_attrs())
            self._weights_dir = weights_dir(p)
        except Exception:
            f.close()
            raise
        return self

    def _bind(self, f: h5py.File) -> None:
        """Attach to an open file with the library layout (new or existing)."""
        self._file = f
        self._group = f[EVALUATIONS_GROUP]
        self._datasets: dict[str, h5py.Dataset] = {name: self._group[name] for name in FIELD_NAMES}
        self._pareto = f[PARETO_DATASET]
        count = int(self._group.attrs.get(COUNT_ATTR, 0))
        self._written = min([count, *(ds.shape[0] for ds in self._datasets.values())])
        self._state = f.require_group(STATE_GROUP)
        self._weights = f.require_group(WEIGHTS_GROUP)
        for key, group in self._weights.items():
            self._weights_stored[int(key)] = float(group.attrs.get("accuracy", math.nan))

    def _root_attrs(self) -> dict[str, Any]:
        assert self._file is not None
        return {key: _plain_attr(value) for key, value in self._file.attrs.items()}

    # ------------------------------------------------------------------ API

    @property
    def path(self) -> Path:
        """Path of the library file."""
        return self._path

    @property
    def written(self) -> int:
        """Rows already in the HDF5 file (the rest are buffered and journaled)."""
        return self._written

    def __len__(self) -> int:
        """Return the number of records written plus those still buffered."""
        return self._written + len(self._buffer)

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"<LibraryWriter {str(self._path)!r} {state}, {len(self)} records>"

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
        row = tuple([_convert(name, kind, record.get(name)) for name, kind in EVALUATION_FIELDS])
        if self._journal is not None:
            if self._journaled_genomes.pop(row[0], None) == row[1]:  # (id, genome, ...: the schema's first fields)
                self._journal.write_row((row[0], None, *row[2:]))  # this journal's task line has the same text
            else:
                self._journal.write_row(row)
        if self._pending.pop(row[0], None) is not None and self._journal is None:
            self._state_dirty = True  # with a journal, the state reaches the file at close (the journal has it)
        self._add_row(row)

    def _add_row(self, row: tuple[Any, ...]) -> None:
        """Buffer a converted row for the next HDF5 batch (written when the batch is full or due)."""
        if not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer.append(row)
        if len(self._buffer) >= self._flush_every:
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
        task_id = int(task["id"])
        if self._journal is not None:
            self._journal.write_task(task)
            self._journaled_genomes[task_id] = task["genome"]
        self._pending[task_id] = task  # kept as given (state keys are dropped when the list is written)
        if task.get("rng_state") is not None:
            self._rng_state = str(task["rng_state"])
        if task.get("next_id") is not None:
            self._next_id = int(task["next_id"])
        if self._journal is None:
            self._state_dirty = True  # with a journal, the state reaches the file at close (the journal has it)
        if not self._buffer:
            self._buffer_since = time.monotonic()

    def commit(self) -> None:
        """Write the journal lines queued so far (one ``write()``); the master calls it before each send.

        Raises:
            UserError: The write failed (e.g. the disk is full); the writer then writes nothing more.
        """
        if self._journal is not None:
            self._journal_out(sync=False)

    def tick(self) -> None:
        """Commit the journal; sync it or write the HDF5 batch when due.  Call it at every turn of the master loop.

        With a journal, ``flush_seconds`` bounds how long a record waits for ``fsync``, and the HDF5
        batch (only a checkpoint of the journal: readers read the journal while a search runs) is
        written every ``flush_every`` records or `JOURNALED_BATCH_SECONDS`.  Without a journal,
        ``flush_seconds`` bounds how long a record waits for the HDF5 file.
        """
        self.commit()
        if self._flush_if_due() or self._journal is None or self._flush_seconds is None:
            return
        now = time.monotonic()
        if now - self._synced_at >= self._flush_seconds:
            self._journal_out(sync=True)
            self._synced_at = now

    def _flush_if_due(self) -> bool:
        """Write the HDF5 batch when its oldest record has waited long enough (see `tick`)."""
        if self._file is None or self._flush_seconds is None or not (self._buffer or self._state_dirty):
            return False
        wait = self._flush_seconds if self._journal is None else max(self._flush_seconds, JOURNALED_BATCH_SECONDS)
        if time.monotonic() - self._buffer_since < wait:
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
        if self._keep_weights == 0 or not math.isfinite(accuracy):
            return False
        kept = {**self._weights_stored, **{i: a for i, (a, _) in self._weights_queue.items()}}
        worst = None
        if len(kept) >= self._keep_weights:
            worst = min(kept, key=lambda i: (kept[i], -i))
            if accuracy <= kept[worst]:
                return False
        if any("/" in str(name) or not str(name) for name in arrays):
            raise ValueError("weight names must be non-empty and contain no '/'")
        clean = {str(name): np.ascontiguousarray(np.asarray(value, dtype=np.float32)) for name, value in arrays.items()}
        if self._weights_dir is not None:  # the new model is safe on disk before the one it replaces goes
            try:
                save_weights_file(self._weights_dir, int(eval_id), float(accuracy), clean, self._keep_weights)
            except (OSError, RuntimeError) as exc:
                raise self._broken_by(f"cannot write kept weights in {self._weights_dir}: {_reason(exc)}") from None
        if worst is not None:
            self._drop_weights(worst)
        self._weights_queue[int(eval_id)] = (float(accuracy), clean)
        return True

    def _drop_weights(self, eval_id: int) -> None:
        if self._weights_queue.pop(eval_id, None) is None:
            self._weights_evict.add(eval_id)
            self._weights_stored.pop(eval_id, None)
        if self._weights_dir is not None:
            drop_weights_file(self._weights_dir, eval_id)

    def write_columns(self, columns: Mapping[str, Any]) -> None:
        """Append many rows at once, given as whole columns (the fast path; not journaled).

        Used by offline writers (merge, the benchmark).  Missing columns are
        filled with their missing value.

        Raises:
            ValueError: Unknown column names or columns of different lengths.
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
        arrays = {}
        for name, kind in EVALUATION_FIELDS:
            if name in columns:
                values = columns[name]
                if kind == "str":
                    data = np.empty(n, dtype=object)
                    data[:] = [_clean_str(str(v)) for v in values]
                else:
                    data = np.asarray(values, dtype=NUMPY_DTYPES[kind])
            else:
                data = np.full(n, MISSING[kind], dtype=object if kind == "str" else NUMPY_DTYPES[kind])
            arrays[name] = data
        self._write_arrays(arrays, n)
        self.flush()

    def _write_arrays(self, arrays: Mapping[str, np.ndarray], n: int) -> None:
        """Write ``n`` rows, one slice per column, then move ``count``."""
        if n == 0:
            return
        start, stop = self._written, self._written + n
        for name in FIELD_NAMES:
            ds = self._datasets[name]
            ds.resize((stop,))
            ds[start:stop] = arrays[name]
        self._group.attrs[COUNT_ATTR] = np.int64(stop)
        self._written = stop

    def flush(self, final: bool = False) -> None:
        """Sync the journal, then write the buffered rows (one slice per column), state and weights.

        ``final`` (at close) also writes the list of tasks in flight.

        The ``count`` attribute of ``/evaluations`` is updated only after all
        columns hold the new rows, so readers never see half-written rows.

        Raises:
            ValueError: The writer is closed.
            UserError: Writing failed (e.g. the disk is full).
        """
        f = self._check_open()
        try:
            if self._journal is not None:
                self._journal.sync()
                self._synced_at = time.monotonic()
            if self._buffer:
                columns = list(zip(*self._buffer))
                arrays = {}
                for (name, kind), values in zip(EVALUATION_FIELDS, columns):
                    if kind == "str":
                        data = np.empty(len(values), dtype=object)
                        data[:] = values
                    else:
                        data = np.asarray(values, dtype=NUMPY_DTYPES[kind])
                    arrays[name] = data
                self._write_arrays(arrays, len(self._buffer))
                self._buffer.clear()
            if self._state_dirty or final:
                self._write_state(with_pending=final or self._journal is None)
            self._write_weights()
            f.flush()
        except (OSError, RuntimeError) as exc:  # h5py reports failed writes as both
            raise self._broken_by(f"cannot write library {self._path}: {_reason(exc)}") from None
        self._buffer_since = time.monotonic()

    def _write_state(self, with_pending: bool) -> None:
        """Random state, next id and (when asked) the tasks in flight.

        While a journal exists it holds every task line, so the in-flight list
        (one JSON text of every pending genome: megabytes with thousands of
        workers) is written only at close, or without a journal.
        """
        attrs = self._state.attrs
        if self._rng_state is not None:
            attrs["rng_state"] = self._rng_state
        if self._next_id is not None:
            attrs["next_id"] = np.int64(self._next_id)
        if with_pending:
            pending = [{k: v for k, v in task.items() if k not in _STATE_KEYS} for task in self._pending.values()]
            attrs["pending"] = json.dumps(pending, separators=(",", ":"))
        for name, value in self._session.items():
            attrs[name] = value
        self._state_dirty = False

    def set_session(self, stop_reason: str, search_seconds: float) -> None:
        """Note why this run of the search ended and its search seconds so far (written at close).

        ``menndl library LIB status`` and a ``--resume`` read them: the reason
        says whether the search is finished, and the time limit counts on.
        """
        self._check_open()
        self._session = {"stop_reason": str(stop_reason), "search_seconds": np.float64(search_seconds)}
        self._state_dirty = True

    def _write_weights(self) -> None:
        for eval_id in sorted(self._weights_evict):
            if str(eval_id) in self._weights:
                del self._weights[str(eval_id)]
        self._weights_evict.clear()
        for eval_id, (accuracy, arrays) in self._weights_queue.items():
            if str(eval_id) in self._weights:
                del self._weights[str(eval_id)]
            write_model(self._weights.create_group(str(eval_id)), accuracy, arrays)
            self._weights_stored[eval_id] = accuracy
        self._weights_queue.clear()

    def set_pareto(self, ids: Sequence[int]) -> None:
        """Replace the Pareto-front id list ``/pareto`` (journaled) and flush.

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
        if self._journal is not None:
            self._journal_write({"type": "pareto", "ids": values})
        data = np.asarray(values, dtype="<i8")
        try:
            self._pareto.resize((len(data),))
            if len(data):
                self._pareto[:] = data
        except (OSError, RuntimeError) as exc:  # h5py reports failed writes as both
            raise self._broken_by(f"cannot write library {self._path}: {_reason(exc)}") from None
        if self._journal is None:
            self.flush()  # else the journal line is the durable copy; the dataset reaches the file with the next batch
        else:
            self.commit()

    def close(self) -> None:
        """Flush buffered records, close the file and remove the journal.  Safe to call twice.

        Raises:
            UserError: The final write failed (the file is closed anyway; the
                journal is kept, so nothing is lost).
        """
        f = self._file
        if f is None:
            return
        try:
            self.flush(final=True)
        except BaseException:
            self._file = None
            self._release(f)
            if self._journal is not None:
                try:
                    self._journal.close()
                except OSError:
                    pass  # fsync of a full disk: what was written is there
            raise
        self._file = None
        try:
            f.close()
        except (OSError, RuntimeError) as exc:  # h5py reports failed writes as both
            raise self._broken_by(f"cannot close library {self._path}: {_reason(exc)}") from None
        if self._journal is not None:
            self._journal.close()
            remove_companions(self._path)

    def _release(self, f: h5py.File) -> None:
        """Close the file after a failed write (disk full): drop every handle first, ignore further errors.

        HDF5 cannot flush its metadata cache any more; handles left to the garbage collector would
        try again and can crash the process, so they go now, while the file is closed once.
        """
        self._datasets = {}
        self._group = self._pareto = self._state = self._weights = None  # type: ignore[assignment]
        try:
            f.close()
        except Exception:  # noqa: S110 - nothing more can be written; the journal holds the records
            pass

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

    def _journal_write(self, event: Mapping[str, Any]) -> None:
        """Queue a journal line (no I/O: it is written at the next `commit`)."""
        assert self._journal is not None
        self._journal.write(event)

    def _journal_out(self, sync: bool) -> None:
        """Write the queued journal lines, and ``fsync`` with ``sync``; a failure breaks the writer."""
        assert self._journal is not None
        try:
            if sync:
                self._journal.sync()
            else:
                self._journal.commit()
        except OSError as exc:
            raise self._broken_by(f"cannot write library journal {self._journal.path}: {_reason(exc)}") from None

    def _broken_by(self, message: str) -> StorageError:
        """Remember the first failed write: from then on the writer writes nothing more (see `_check_open`).

        A write after a failure could put rows in the journal that a resume must not see (``lost``
        rows for the tasks in flight, which it re-queues instead) or a line after a torn one.
        """
        self._broken = self._broken or message
        return StorageError(self._broken)

    def _check_open(self) -> h5py.File:
        if self._broken:
            raise StorageError(self._broken)
        if self._file is None:
            raise ValueError(f"library writer for {self._path} is closed")
        return self._file
