"""Writing the HDF5 architecture library.

Only the master process writes a library, one record per finished evaluation.
The file holds data only: integers, floats and variable-length UTF-8 strings,
never pickles or opaque blobs.  See ``docs/library-format.md`` for the layout.
"""

from __future__ import annotations

import json
import math
import operator
import os
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
    MISSING,
    NUMPY_DTYPES,
    PARETO_DATASET,
    RESERVED_ROOT_ATTRS,
)

__all__ = ["LibraryWriter"]

_CHUNK_ROWS = 512
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_STR_DTYPE = h5py.string_dtype("utf-8")


def _reason(exc: BaseException) -> str:
    """Return a one-line reason for an OS/h5py error."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno).lower()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
        if isinstance(value, (str, bytes)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise TypeError(
                f"library field {name!r} expects a number, got {type(value).__name__} {value!r}"
            )
        return float(value)
    # kind == "str"
    if not isinstance(value, str):
        if name in JSON_FIELDS and not isinstance(value, bytes):
            try:
                value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"library field {name!r}: cannot encode as JSON: {exc}") from None
        else:
            raise TypeError(
                f"library field {name!r} expects a str, got {type(value).__name__} {value!r}"
            )
    return _clean_str(value)


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
            raise TypeError(
                f"library attribute {key!r} must be str, int or float, "
                f"got {type(value).__name__}"
            )
    return out


class LibraryWriter:
    """Append-only writer of one HDF5 architecture library.

    The writer creates a new file, then buffers records passed to
    :meth:`append` and writes them in batches of ``flush_every``.  It is meant
    to be used by a single thread of the master process.

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

    Raises:
        UserError: ``path`` already exists, its folder is missing, or the file
            cannot be created.
        TypeError: ``job_text`` is not a str, or an attribute has a bad type.
        ValueError: ``flush_every`` < 1 or a reserved attribute name is used.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        job_text: str,
        attrs: Mapping[str, str | int | float] = {},  # noqa: B006 (read-only)
        flush_every: int = 1,
    ) -> None:
        if not isinstance(job_text, str):
            raise TypeError(f"job_text must be a str, got {type(job_text).__name__}")
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ValueError(f"flush_every must be an integer >= 1, got {flush_every!r}")
        extra = _check_attrs(attrs)

        self._path = Path(path)
        self._flush_every = flush_every
        self._buffer: list[tuple[Any, ...]] = []
        self._written = 0
        self._file: h5py.File | None = None

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

        try:
            # Mode "x" fails if the file appeared meanwhile: never clobber.
            f = h5py.File(p, "x")
        except FileExistsError:
            raise UserError(f"library {p} already exists; choose another --library path") from None
        except Exception as exc:  # h5py raises OSError subclasses, sometimes others
            raise UserError(f"cannot create library {p}: {_reason(exc)}") from None

        try:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["job"] = _clean_str(job_text)
            f.attrs["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for key, value in extra.items():
                f.attrs[key] = value

            group = f.create_group(EVALUATIONS_GROUP)
            group.attrs[COUNT_ATTR] = np.int64(0)
            self._datasets: dict[str, h5py.Dataset] = {}
            for name, kind in EVALUATION_FIELDS:
                if kind == "str":
                    ds = group.create_dataset(
                        name,
                        shape=(0,),
                        maxshape=(None,),
                        chunks=(_CHUNK_ROWS,),
                        dtype=_STR_DTYPE,
                    )
                else:
                    ds = group.create_dataset(
                        name,
                        shape=(0,),
                        maxshape=(None,),
                        chunks=(_CHUNK_ROWS,),
                        dtype=NUMPY_DTYPES[kind],
                        fillvalue=MISSING[kind],
                    )
                ds.attrs["kind"] = kind
                ds.attrs["description"] = FIELD_DESCRIPTIONS[name]
                self._datasets[name] = ds

            pareto = f.create_dataset(
                PARETO_DATASET,
                shape=(0,),
                maxshape=(None,),
                chunks=(_CHUNK_ROWS,),
                dtype="<i8",
            )
            pareto.attrs["description"] = "ids of the evaluations on the current Pareto front"
            self._group = group
            self._pareto = pareto
            f.flush()
        except Exception as exc:
            try:
                f.close()
            finally:
                try:
                    p.unlink()
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise UserError(f"cannot create library {p}: {_reason(exc)}") from None
            raise
        self._file = f

    # ------------------------------------------------------------------ API

    @property
    def path(self) -> Path:
        """Path of the library file."""
        return self._path

    def __len__(self) -> int:
        """Return the number of records written plus those still buffered."""
        return self._written + len(self._buffer)

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"<LibraryWriter {str(self._path)!r} {state}, {len(self)} records>"

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one evaluation record.

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
        unknown = [k for k in record if k not in FIELD_KINDS]
        if unknown:
            raise ValueError(
                f"unknown library field(s) {', '.join(map(repr, unknown))}; "
                f"valid fields: {', '.join(FIELD_NAMES)}"
            )
        row = tuple(
            _convert(name, kind, record.get(name)) for name, kind in EVALUATION_FIELDS
        )
        self._buffer.append(row)
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Write all buffered records (one resize per column) and flush the file.

        The ``count`` attribute of ``/evaluations`` is updated only after all
        columns hold the new rows, so readers never see half-written rows.

        Raises:
            ValueError: The writer is closed.
            UserError: Writing failed (e.g. the disk is full).
        """
        f = self._check_open()
        try:
            if self._buffer:
                start = self._written
                stop = start + len(self._buffer)
                columns = list(zip(*self._buffer))
                for (name, kind), values in zip(EVALUATION_FIELDS, columns):
                    ds = self._datasets[name]
                    data = np.asarray(
                        values, dtype=_STR_DTYPE if kind == "str" else NUMPY_DTYPES[kind]
                    )
                    ds.resize((stop,))
                    ds[start:stop] = data
                self._group.attrs[COUNT_ATTR] = np.int64(stop)
                self._written = stop
                self._buffer.clear()
            f.flush()
        except OSError as exc:
            raise UserError(f"cannot write library {self._path}: {_reason(exc)}") from None

    def set_pareto(self, ids: Sequence[int]) -> None:
        """Replace the Pareto-front id list ``/pareto`` and flush.

        Args:
            ids: Evaluation ids on the current Pareto front, in the order to
                store them.

        Raises:
            ValueError: The writer is closed.
            TypeError: An id is not an integer.
            UserError: Writing failed.
        """
        self._check_open()
        values = []
        for i in ids:
            try:
                values.append(operator.index(i))
            except TypeError:
                raise TypeError(f"Pareto ids must be integers, got {i!r}") from None
        data = np.asarray(values, dtype="<i8")
        try:
            self._pareto.resize((len(data),))
            if len(data):
                self._pareto[:] = data
        except OSError as exc:
            raise UserError(f"cannot write library {self._path}: {_reason(exc)}") from None
        self.flush()

    def close(self) -> None:
        """Flush buffered records and close the file.  Safe to call twice.

        Raises:
            UserError: The final write failed (the file is closed anyway).
        """
        f = self._file
        if f is None:
            return
        try:
            self.flush()
        finally:
            self._file = None
            try:
                f.close()
            except OSError as exc:
                raise UserError(f"cannot close library {self._path}: {_reason(exc)}") from None

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

    def _check_open(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"library writer for {self._path} is closed")
        return self._file
