"""The HDF5 column store: the library file's layout, its columns, its Pareto dataset and its ``/state``.

Everything that writes a library file goes through here: the writer (its batches and its bulk
path), recovery, merge (through the writer) and the fold process.  The reader validates and reads
the columns with the functions here.  The layout is described in ``docs/library-format.md``; the
field list is :mod:`menndl.library.schema`.

* :func:`create_layout` writes the groups, datasets and attributes of a new file;
* :func:`stored_value` converts one record value to its stored form (the writer's rows);
* :func:`columns_of` turns rows into one typed array per field (the only rows-to-columns
  conversion; :func:`row_values` makes a row of a journal record);
* :class:`ColumnStore` is one open file: :meth:`~ColumnStore.append` (one slice per column, then
  ``count``), :meth:`~ColumnStore.set_pareto` (the only rewrite of ``/pareto``),
  :meth:`~ColumnStore.read_state` / :meth:`~ColumnStore.write_state`;
* :func:`validate_layout`, :func:`read_column` and :func:`read_state` read a file opened elsewhere.
"""

from __future__ import annotations

import glob
import json
import math
import operator
import os
import re
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from menndl.errors import UserError
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
    LATER_FIELDS,
    MISSING,
    NUMPY_DTYPES,
    PARETO_DATASET,
    RESERVED_ROOT_ATTRS,
    STATE_GROUP,
    WEIGHTS_GROUP,
)
from menndl.library.state import SearchState, task_of
from menndl.library.stored import stored_json

__all__ = [
    "ColumnStore",
    "check_attrs",
    "clean_str",
    "columns_of",
    "create_layout",
    "failure_reason",
    "pareto_ids",
    "plain_attr",
    "read_column",
    "read_state",
    "readable",
    "row_values",
    "stored_value",
    "temporary_path",
    "typed_column",
    "validate_layout",
]

CHUNK_ROWS = 512
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_STR_DTYPE = h5py.string_dtype("utf-8")


# ------------------------------------------------------------------ values


def failure_reason(exc: BaseException) -> str:
    """A one-line reason for an OS or h5py error (``no space left on device``, ...)."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno).lower()
    text = " ".join(str(exc).split())
    system = re.search(r"error message = '([^']*)'", text)  # HDF5's long report of a failed write
    if system:
        return f"{text.split(' (')[0]}: {system.group(1).lower()}"
    return text or type(exc).__name__


def clean_str(value: str) -> str:
    """Make ``value`` storable as an HDF5 variable-length UTF-8 string.

    Embedded NUL characters (unsupported by HDF5 strings) and lone surrogates (not encodable as
    UTF-8) are replaced by U+FFFD.
    """
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def stored_value(name: str, kind: str, value: Any) -> Any:
    """One record value in its stored form (``None``: the missing value of ``kind``).

    For the JSON fields (``genome``, ``parents``, ``checkpoints``) a non-str value is JSON-encoded.

    Raises:
        TypeError: The value has the wrong type for its field.
        ValueError: An integer does not fit in 64 bits.
    """
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
    return clean_str(value)


def row_values(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """A journal record (field -> stored value; absent or None: missing) as a row in the schema's order."""
    values = []
    for name, kind in EVALUATION_FIELDS:
        value = record.get(name)
        if value is None:
            values.append(MISSING[kind])
        else:
            values.append(str(value) if kind == "str" else value)
    return tuple(values)


def typed_column(kind: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Stored values of one field as the array its dataset takes (``object`` of str for strings)."""
    if kind == "str":
        data = np.empty(len(values), dtype=object)
        data[:] = values
        return data
    return np.asarray(values, dtype=NUMPY_DTYPES[kind])


def columns_of(rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Rows of stored values (each in the schema's field order) as one typed array per field."""
    if not rows:
        return {name: typed_column(kind, []) for name, kind in EVALUATION_FIELDS}
    return {name: typed_column(kind, values) for (name, kind), values in zip(EVALUATION_FIELDS, zip(*rows))}


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


def check_attrs(attrs: Mapping[str, str | int | float]) -> dict[str, Any]:
    """Validate extra root attributes; return them as HDF5-ready values.

    Raises:
        ValueError: A name is empty or reserved.
        TypeError: A value is not a str, int or float.
    """
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"library attribute names must be non-empty str, got {key!r}")
        if key in RESERVED_ROOT_ATTRS:
            raise ValueError(f"library attribute {key!r} is reserved and written by the library")
        if isinstance(value, str):
            out[key] = clean_str(value)
        elif isinstance(value, (bool, np.bool_)):
            out[key] = np.int64(int(value))
        elif isinstance(value, (int, np.integer)):
            out[key] = np.int64(value)
        elif isinstance(value, (float, np.floating)):
            out[key] = np.float64(value)
        else:
            raise TypeError(f"library attribute {key!r} must be str, int or float, got {type(value).__name__}")
    return out


def plain_attr(value: Any) -> Any:
    """An h5py attribute value as plain JSON-able Python."""
    if isinstance(value, np.ndarray):
        return [plain_attr(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


# ------------------------------------------------------------------ layout


def create_layout(f: h5py.File, job_text: str, extra: Mapping[str, Any], created_at: str | None = None) -> None:
    """Write the root attributes and the empty, extendable datasets of a new library.

    Args:
        f: A new, empty file open for writing.
        job_text: The TOML job text (root attribute ``job``).
        extra: Further root attributes, as :func:`check_attrs` returns them.
        created_at: The ``created_at`` attribute (default: now, in UTC).
    """
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    f.attrs["job"] = clean_str(job_text)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    f.attrs["created_at"] = now if created_at is None else created_at
    for key, value in extra.items():
        f.attrs[key] = value
    group = f.create_group(EVALUATIONS_GROUP)
    group.attrs[COUNT_ATTR] = np.int64(0)
    for name, _kind in EVALUATION_FIELDS:
        create_field(group, name, 0)
    pareto = f.create_dataset(PARETO_DATASET, shape=(0,), maxshape=(None,), chunks=(CHUNK_ROWS,), dtype="<i8")
    pareto.attrs["description"] = "ids of the evaluations on the current Pareto front"
    state = f.create_group(STATE_GROUP)
    state.attrs["next_id"] = np.int64(0)
    state.attrs["pending"] = "[]"
    f.create_group(WEIGHTS_GROUP)


def create_field(group: h5py.Group, name: str, rows: int) -> h5py.Dataset:
    """Create the extendable dataset of field ``name`` in ``group`` with ``rows`` missing values."""
    kind = FIELD_KINDS[name]
    dtype = _STR_DTYPE if kind == "str" else NUMPY_DTYPES[kind]
    options: dict[str, Any] = {} if kind == "str" else {"fillvalue": MISSING[kind]}
    ds = group.create_dataset(name, shape=(rows,), maxshape=(None,), chunks=(CHUNK_ROWS,), dtype=dtype, **options)
    ds.attrs["kind"] = kind
    ds.attrs["description"] = FIELD_DESCRIPTIONS[name]
    return ds


def validate_layout(p: Path, f: h5py.File) -> int:
    """Check the datasets of a library file; return its number of complete rows.

    Rows past the ``count`` attribute, or past the shortest column, are half-written and not counted.

    Raises:
        UserError: A dataset is missing or has the wrong shape or dtype, or ``count`` is invalid.
    """
    group = f.get(EVALUATIONS_GROUP)
    if not isinstance(group, h5py.Group):
        raise UserError(f"library {p} is corrupt: group /{EVALUATIONS_GROUP} is missing")
    lengths = []
    for name, kind in EVALUATION_FIELDS:
        ds = group.get(name)
        where = f"/{EVALUATIONS_GROUP}/{name}"
        if ds is None and name in LATER_FIELDS:  # a library from before the field existed
            continue
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
            raise UserError(f"library {p} is corrupt: 1-D dataset {where} is missing")
        if kind == "str":
            ok = h5py.check_string_dtype(ds.dtype) is not None
        elif kind == "int":
            ok = ds.dtype.kind in "iu"
        else:
            ok = ds.dtype.kind == "f"
        if not ok:
            raise UserError(f"library {p} is corrupt: {where} has dtype {ds.dtype}; expected {kind}")
        lengths.append(ds.shape[0])
    pareto = f.get(PARETO_DATASET)
    if not isinstance(pareto, h5py.Dataset) or pareto.ndim != 1 or pareto.dtype.kind not in "iu":
        raise UserError(f"library {p} is corrupt: integer dataset /{PARETO_DATASET} is missing")
    if COUNT_ATTR in group.attrs:
        count = plain_attr(group.attrs[COUNT_ATTR])
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise UserError(f"library {p} is corrupt: /{EVALUATIONS_GROUP} attribute {COUNT_ATTR!r} is {count!r}")
        return min(count, min(lengths))
    return min(lengths)


def readable(path: Path) -> bool:
    """Whether ``path`` opens as a library whose every column and front read (else recovery rebuilds it)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            group = f[EVALUATIONS_GROUP]
            for name in FIELD_NAMES:
                group[name][...]
            f[PARETO_DATASET][...]
            return str(f.attrs["format"]) == FORMAT_NAME
    except Exception:  # noqa: BLE001 - any failure means "rebuild it"
        return False


def read_column(f: h5py.File, name: str, count: int) -> np.ndarray:
    """The first ``count`` values of field ``name``: int64, float64, or an ``object`` array of str.

    Raises:
        KeyError: ``name`` is not a field.  h5py's errors when the file is damaged.
    """
    kind = FIELD_KINDS[name]
    if count == 0:
        return np.empty(0, dtype=object if kind == "str" else NUMPY_DTYPES[kind])
    if name in LATER_FIELDS and name not in f[EVALUATIONS_GROUP]:  # written before the field existed
        return np.full(count, MISSING[kind], dtype=object if kind == "str" else NUMPY_DTYPES[kind])
    dataset = f[EVALUATIONS_GROUP][name]
    if kind == "str":
        raw = dataset.asstr(errors="replace")[:count]
        data = np.empty(len(raw), dtype=object)
        data[:] = [str(v) for v in raw]
        return data
    return np.asarray(dataset[:count], dtype=NUMPY_DTYPES[kind])


def read_state(f: h5py.File, library: str | Path) -> SearchState:
    """The search state the ``/state`` attributes of ``f`` hold (defaults where absent).

    Raises:
        UserError: The in-flight list is not JSON (names ``library``).
    """
    if STATE_GROUP not in f:
        return SearchState()
    attrs = f[STATE_GROUP].attrs
    pending = stored_json(library, "state.pending", str(plain_attr(attrs["pending"])) if "pending" in attrs else "", [])
    return SearchState(
        next_id=int(attrs["next_id"]) if "next_id" in attrs else 0,
        rng_state=str(plain_attr(attrs["rng_state"])) if "rng_state" in attrs else None,
        pending=tuple(pending),
        stop_reason=str(plain_attr(attrs["stop_reason"])) if "stop_reason" in attrs else None,
        search_seconds=float(attrs["search_seconds"]) if "search_seconds" in attrs else None,
    )


# ------------------------------------------------------------------ store


def temporary_path(path: Path) -> Path:
    """This process's scratch name beside ``path`` (``.NAME.<host>.<pid>.tmp``), where a library is
    built complete before it is linked or renamed into place; what a dead process of this host left
    under such a name is removed first."""
    _remove_stale_tmp(path)
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


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


class ColumnStore:
    """One open library file with the library layout: its columns, front, search state and kept models.

    Rows are appended as whole columns, one slice per column, and the ``count`` attribute moves only
    after every column holds them, so a reader never sees half-written rows.

    Args:
        f: An open file with the library layout (new or existing), writable.
        path: The library's path (default: the file's name).

    Attributes:
        path: The library's path.
        written: The number of complete rows in the file.
    """

    def __init__(self, f: h5py.File, path: str | Path | None = None) -> None:
        self._file: h5py.File | None = f
        self.path = Path(f.filename if path is None else path)
        self._group = f[EVALUATIONS_GROUP]
        count = int(self._group.attrs.get(COUNT_ATTR, 0))
        if f.mode != "r":  # a library from before a field existed gets it, filled with missing values
            for name in LATER_FIELDS - set(self._group):
                create_field(self._group, name, int(self._group["id"].shape[0]))
        self._datasets: dict[str, h5py.Dataset] = {name: self._group[name] for name in FIELD_NAMES}
        self.written = min([count, *(ds.shape[0] for ds in self._datasets.values())])
        self._tmp: Path | None = None  # created under this name, not yet at `path` (see `create`)

    @classmethod
    def create(cls, path: str | Path, job_text: str, attrs: Mapping[str, Any]) -> ColumnStore:
        """Create a new library beside ``path`` under a temporary name; :meth:`publish` links it into place.

        Built complete under the temporary name, so a crash never leaves a half-created library at
        ``path`` (a dead process's leftover is removed first).

        Args:
            path: Where the library goes; it must not exist.
            job_text: The TOML job text.
            attrs: Extra root attributes, as :func:`check_attrs` returns them.

        Raises:
            UserError: ``path`` exists, its folder is missing or not writable, or the file cannot be created.
        """
        p = Path(path)
        if p.exists() or p.is_symlink():
            raise UserError(f"library {p} already exists; choose another --library path")
        parent = p.parent
        if not parent.exists():
            raise UserError(f"cannot create library {p}: folder {parent} does not exist")
        if not parent.is_dir():
            raise UserError(f"cannot create library {p}: {parent} is not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"cannot create library {p}: folder {parent} is not writable")
        tmp = temporary_path(p)
        try:
            f = h5py.File(tmp, "w")
        except Exception as exc:  # h5py raises OSError subclasses, sometimes others
            raise UserError(f"cannot create library {p}: {failure_reason(exc)}") from None
        try:
            create_layout(f, job_text, attrs)
            f.flush()
            store = cls(f, p)
        except Exception as exc:
            f.close()
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise UserError(f"cannot create library {p}: {failure_reason(exc)}") from None
            raise
        store._tmp = tmp
        return store

    def publish(self) -> None:
        """Link a file made by :meth:`create` to its path (never over an existing file).

        Raises:
            FileExistsError: Something appeared at the path meanwhile.
            OSError: The link failed.
        """
        assert self._tmp is not None
        try:
            os.link(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def discard(self) -> None:
        """Close a file made by :meth:`create` and never published, and remove it."""
        self.release()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    @classmethod
    def open(cls, path: str | Path) -> ColumnStore:
        """Open an existing library file for appending.

        Raises:
            OSError: HDF5 cannot open it (missing, locked by a writer, not HDF5).
            KeyError: It lacks the library layout.
        """
        f = h5py.File(path, "a")
        try:
            return cls(f, path)
        except Exception:
            f.close()
            raise

    @property
    def file(self) -> h5py.File:
        """The open h5py file.

        Raises:
            ValueError: The store is closed.
        """
        if self._file is None:
            raise ValueError(f"library {self.path} is closed")
        return self._file

    def root_attrs(self) -> dict[str, Any]:
        """The root attributes as plain Python values (a journal's header)."""
        return {key: plain_attr(value) for key, value in self.file.attrs.items()}

    def ids(self) -> np.ndarray:
        """The ``id`` column of the complete rows."""
        return np.asarray(self._datasets["id"][: self.written], dtype=np.int64)

    def append(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows given as one array per field (as :func:`columns_of` makes them), then move ``count``.

        ``count`` is written even for no rows: it then drops to the rows every column holds.
        """
        n = len(columns[FIELD_NAMES[0]])
        start, stop = self.written, self.written + n
        if n:
            for name in FIELD_NAMES:
                ds = self._datasets[name]
                ds.resize((stop,))
                ds[start:stop] = columns[name]
        self._group.attrs[COUNT_ATTR] = np.int64(stop)
        self.written = stop

    def set_pareto(self, ids: Sequence[int]) -> None:
        """Replace ``/pareto`` with these ids, in this order."""
        data = np.asarray(ids, dtype="<i8")
        pareto = self.file[PARETO_DATASET]
        pareto.resize((len(data),))
        if len(data):
            pareto[:] = data

    def read_state(self) -> SearchState:
        """The search state of the ``/state`` attributes (see :func:`read_state`)."""
        return read_state(self.file, self.path)

    def write_state(self, state: SearchState, *, pending: bool, session: bool = True) -> None:
        """Write a search state into ``/state``.

        Args:
            state: The state; its random state, stop reason and search seconds only where not None.
            pending: Also the in-flight list (one JSON text of every pending genome: megabytes with
                thousands of workers, so a journaled writer writes it only at close).
            session: Also the stop reason and search seconds.
        """
        attrs = self.file.require_group(STATE_GROUP).attrs
        if state.rng_state is not None:
            attrs["rng_state"] = state.rng_state
        attrs["next_id"] = np.int64(state.next_id)
        if pending:
            attrs["pending"] = json.dumps([task_of(task) for task in state.pending], separators=(",", ":"))
        if session and state.stop_reason is not None:
            attrs["stop_reason"] = state.stop_reason
        if session and state.search_seconds is not None:
            attrs["search_seconds"] = np.float64(state.search_seconds)

    @property
    def weights(self) -> h5py.Group:
        """The ``/weights`` group of kept models."""
        return self.file.require_group(WEIGHTS_GROUP)

    def stored_models(self) -> dict[int, float]:
        """Id -> accuracy of the models ``/weights`` keeps."""
        if WEIGHTS_GROUP not in self.file:
            return {}
        return {int(key): float(group.attrs.get("accuracy", math.nan)) for key, group in self.weights.items()}

    def flush(self) -> None:
        """Make HDF5 write what it buffers to the file."""
        self.file.flush()

    def close(self) -> None:
        """Flush and close the file.  Safe to call twice."""
        f, self._file = self._file, None
        if f is not None:
            self._datasets = {}
            f.close()

    def release(self) -> None:
        """Close the file after a failed write (disk full): drop every handle first, ignore further errors.

        HDF5 cannot flush its metadata cache any more; handles left to the garbage collector would
        try again and can crash the process, so they go now, while the file is closed once.
        """
        f, self._file = self._file, None
        self._datasets = {}
        self._group = None  # type: ignore[assignment]
        if f is not None:
            try:
                f.close()
            except Exception:  # noqa: S110 - nothing more can be written; the journal holds the records
                pass

    def __enter__(self) -> ColumnStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
