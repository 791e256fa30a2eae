"""Reading the HDF5 architecture library.

:meth:`Library.open` validates a library file and turns every problem with it
(missing, not HDF5, truncated, not a menndl library, too new) into a one-line
:class:`menndl.errors.UserError` naming the file.

Reading a library while the master still writes it is best-effort: the file is
opened read-only without HDF5 file locking (falling back to the default when
this same process already has it open), and a reader sees the rows that were
flushed when it opened the file.  Until the crash-safety work (SWMR or a
journal) lands, a read that races with a write may fail with a "truncated or
corrupt" UserError; retry after the next flush.
"""

from __future__ import annotations

import operator
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
    FIELD_KINDS,
    FIELD_NAMES,
    FORMAT_NAME,
    FORMAT_VERSION,
    PARETO_DATASET,
)

__all__ = ["Library"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _looks_like_hdf5(path: Path) -> bool:
    """Tell whether ``path`` carries the HDF5 signature (at 0, 512, 1024, ...)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            offset = 0
            while offset + len(_HDF5_SIGNATURE) <= size:
                fh.seek(offset)
                if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def _plain(value: Any) -> Any:
    """Convert an h5py attribute value to plain Python values."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class Library:
    """A read-only view of one architecture library.

    Create it with :meth:`Library.open`; use it as a context manager or call
    :meth:`close`.  The number of rows is fixed when the file is opened.

    Attributes:
        path: Path of the library file.
        job_text: Text of the TOML job file the search ran with.
        attrs: All root attributes as plain Python values.
    """

    path: Path
    job_text: str
    attrs: dict[str, Any]

    def __init__(self, path: Path, file: h5py.File, count: int) -> None:
        """Wrap an already validated file; use :meth:`Library.open` instead."""
        self.path = path
        self._file: h5py.File | None = file
        self._count = count
        self._cache: dict[str, np.ndarray] = {}
        self.attrs = {key: _plain(file.attrs[key]) for key in file.attrs}
        self.job_text = str(self.attrs.get("job", ""))

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | Path) -> Library:
        """Open a library file read-only and validate it.

        The file is opened without HDF5 file locking so that it can be read
        while the master still has it open for writing (best-effort, see the
        module documentation).

        Args:
            path: Path of the ``.h5`` library.

        Returns:
            The opened library.

        Raises:
            UserError: The file is missing, unreadable, not an HDF5 file,
                truncated or corrupt, not a menndl library, or written by a
                newer menndl.
        """
        p = Path(path)
        if not p.exists():
            raise UserError(f"library {p} does not exist")
        if p.is_dir():
            raise UserError(f"library {p} is a folder; expected an HDF5 library file")
        try:
            f = cls._open_h5(p)
        except PermissionError:
            raise UserError(f"cannot read library {p}: permission denied") from None
        except Exception as exc:  # h5py raises OSError, occasionally others
            if _looks_like_hdf5(p):
                raise UserError(
                    f"library {p} is truncated or corrupt ({_first_line(exc)})"
                ) from None
            raise UserError(
                f"{p} is not an HDF5 file; expected a menndl library"
            ) from None
        try:
            count = cls._validate(p, f)
            return cls(p, f, count)
        except UserError:
            f.close()
            raise
        except Exception as exc:
            f.close()
            raise UserError(f"library {p} is truncated or corrupt ({_first_line(exc)})") from None

    @staticmethod
    def _open_h5(p: Path) -> h5py.File:
        """Open ``p`` read-only, without file locking where possible.

        Without locking, another process may hold the file open for writing.
        Within one process HDF5 shares an already open file and insists on
        the same locking flag, so if the unlocked open fails (e.g. this
        process's own writer has the file open) retry with the default.
        """
        try:
            return h5py.File(p, "r", locking=False)
        except Exception as first:
            try:
                return h5py.File(p, "r")
            except Exception:
                raise first from None

    @staticmethod
    def _validate(p: Path, f: h5py.File) -> int:
        """Check format, version and layout; return the number of complete rows."""
        fmt = _plain(f.attrs["format"]) if "format" in f.attrs else None
        if fmt != FORMAT_NAME:
            what = "root attribute 'format' is missing" if fmt is None else f"format is {fmt!r}"
            raise UserError(f"{p} is not a menndl library ({what}; expected {FORMAT_NAME!r})")

        version = _plain(f.attrs["format_version"]) if "format_version" in f.attrs else None
        if isinstance(version, bool) or not isinstance(version, int):
            raise UserError(
                f"library {p} is corrupt: root attribute 'format_version' is "
                f"{'missing' if version is None else repr(version)}; expected an integer"
            )
        if version > FORMAT_VERSION:
            raise UserError(
                f"library {p} was written by a newer menndl (format {version}); "
                f"this menndl reads up to {FORMAT_VERSION}"
            )
        if version < 1:
            raise UserError(f"library {p} is corrupt: invalid format_version {version}")

        if not isinstance(_plain(f.attrs["job"]) if "job" in f.attrs else None, str):
            raise UserError(f"library {p} is corrupt: root attribute 'job' is missing")

        group = f.get(EVALUATIONS_GROUP)
        if not isinstance(group, h5py.Group):
            raise UserError(f"library {p} is corrupt: group /{EVALUATIONS_GROUP} is missing")
        lengths = []
        for name, kind in EVALUATION_FIELDS:
            ds = group.get(name)
            where = f"/{EVALUATIONS_GROUP}/{name}"
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                raise UserError(f"library {p} is corrupt: 1-D dataset {where} is missing")
            if kind == "str":
                ok = h5py.check_string_dtype(ds.dtype) is not None
            elif kind == "int":
                ok = ds.dtype.kind in "iu"
            else:
                ok = ds.dtype.kind == "f"
            if not ok:
                raise UserError(
                    f"library {p} is corrupt: {where} has dtype {ds.dtype}; expected {kind}"
                )
            lengths.append(ds.shape[0])
        pareto = f.get(PARETO_DATASET)
        if not isinstance(pareto, h5py.Dataset) or pareto.ndim != 1 or pareto.dtype.kind not in "iu":
            raise UserError(f"library {p} is corrupt: integer dataset /{PARETO_DATASET} is missing")

        shortest = min(lengths)
        if COUNT_ATTR in group.attrs:
            count = _plain(group.attrs[COUNT_ATTR])
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise UserError(
                    f"library {p} is corrupt: /{EVALUATIONS_GROUP} attribute "
                    f"{COUNT_ATTR!r} is {count!r}"
                )
            # Rows past `count`, or past the shortest column, are half-written.
            return min(count, shortest)
        return shortest

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Return the number of evaluations in the library."""
        return self._count

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"<Library {str(self.path)!r} {state}, {self._count} evaluations>"

    def column(self, name: str) -> np.ndarray:
        """Return one field for all evaluations, in row order.

        Args:
            name: A field name from :data:`menndl.library.schema.EVALUATION_FIELDS`.

        Returns:
            A new 1-D array: ``int64`` for int fields, ``float64`` for float
            fields (missing values are NaN), and an ``object`` array of Python
            ``str`` for str fields.

        Raises:
            UserError: ``name`` is not a field, or the file is corrupt.
            ValueError: The library is closed.
        """
        return self._column(name).copy()

    def records(self) -> list[dict[str, Any]]:
        """Return every evaluation as a dict of plain Python scalars.

        Returns:
            One dict per evaluation, in row order, with every field of
            :data:`menndl.library.schema.EVALUATION_FIELDS` as a key.

        Raises:
            UserError: The file is corrupt.
            ValueError: The library is closed.
        """
        columns = [self._column(name).tolist() for name in FIELD_NAMES]
        return [dict(zip(FIELD_NAMES, row)) for row in zip(*columns)]

    def record(self, eval_id: int) -> dict[str, Any]:
        """Return the evaluation with id ``eval_id``.

        Ids are unique in a library written by menndl; should one repeat, the
        first row carrying it is returned.

        Args:
            eval_id: The evaluation id.

        Returns:
            A dict of plain Python scalars with every field as a key.

        Raises:
            UserError: No evaluation has this id, or the file is corrupt.
            TypeError: ``eval_id`` is not an integer.
            ValueError: The library is closed.
        """
        wanted = operator.index(eval_id)
        rows = np.flatnonzero(self._column("id") == wanted)
        if rows.size == 0:
            raise UserError(f"library {self.path} has no evaluation with id {wanted}")
        row = int(rows[0])
        group = self._group()
        out: dict[str, Any] = {}
        try:
            for name, kind in EVALUATION_FIELDS:
                if name in self._cache:
                    value = self._cache[name][row]
                    out[name] = value.item() if isinstance(value, np.generic) else value
                elif kind == "str":
                    out[name] = group[name].asstr(errors="replace")[row]
                else:
                    out[name] = group[name][row].item()
        except Exception as exc:
            raise UserError(
                f"library {self.path} is truncated or corrupt ({_first_line(exc)})"
            ) from None
        return out

    def pareto_ids(self) -> list[int]:
        """Return the ids on the Pareto front as last stored by the writer.

        Raises:
            UserError: The file is corrupt.
            ValueError: The library is closed.
        """
        f = self._check_open()
        try:
            return [int(v) for v in f[PARETO_DATASET][()].tolist()]
        except Exception as exc:
            raise UserError(
                f"library {self.path} is truncated or corrupt ({_first_line(exc)})"
            ) from None

    def close(self) -> None:
        """Close the file.  Safe to call twice."""
        f, self._file = self._file, None
        self._cache.clear()
        if f is not None:
            f.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ helpers

    def _check_open(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"library {self.path} is closed")
        return self._file

    def _group(self) -> h5py.Group:
        return self._check_open()[EVALUATIONS_GROUP]

    def _column(self, name: str) -> np.ndarray:
        """Return the cached (shared, do not modify) column ``name``."""
        if name not in FIELD_KINDS:
            raise UserError(
                f"library {self.path} has no column {name!r}; "
                f"valid columns: {', '.join(FIELD_NAMES)}"
            )
        cached = self._cache.get(name)
        if cached is not None:
            self._check_open()
            return cached
        ds = self._group()[name]
        try:
            if FIELD_KINDS[name] == "str":
                raw = ds.asstr(errors="replace")[: self._count]
                data = np.empty(len(raw), dtype=object)
                data[:] = [str(v) for v in raw]
            elif FIELD_KINDS[name] == "int":
                data = np.asarray(ds[: self._count], dtype=np.int64)
            else:
                data = np.asarray(ds[: self._count], dtype=np.float64)
        except Exception as exc:
            raise UserError(
                f"library {self.path} is truncated or corrupt ({_first_line(exc)})"
            ) from None
        self._cache[name] = data
        return data
