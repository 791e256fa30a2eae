"""Reading the HDF5 architecture library.

:meth:`Library.open` validates a library file and turns every problem with it
(missing, not HDF5, truncated, not a menndl library, too new) into a one-line
:class:`menndl.errors.UserError` naming the file.

A library that has a journal beside it (its search is still running, or was
killed) is read from the journal and the ``.base`` copy, never from the HDF5
file being written: the reader cannot disturb the writer nor see a half-written
batch, and it sees every record the master appended (see
:mod:`menndl.library.journal`).  The number of rows is fixed when the library
is opened; reopen it to see new results.
"""

from __future__ import annotations

import operator
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from menndl.errors import UserError
from menndl.library.columns import plain_attr, read_column, read_state, validate_layout
from menndl.library.journal import JournalContents, base_path, journal_path, read_journal, weights_dir
from menndl.library.schema import (
    EVALUATIONS_GROUP,
    FIELD_KINDS,
    FIELD_NAMES,
    FORMAT_NAME,
    FORMAT_VERSION,
    MISSING,
    PARETO_DATASET,
    WEIGHTS_GROUP,
)
from menndl.library.state import SearchState, search_state

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

    def __init__(
        self,
        path: Path,
        file: h5py.File | None,
        count: int,
        *,
        journal: JournalContents | None = None,
    ) -> None:
        """Wrap an already validated file (and journal); use :meth:`Library.open` instead."""
        self.path = path
        self._file: h5py.File | None = file
        self._closed = False
        self._h5_count = count
        self._journal = journal
        self._extra: list[dict[str, Any]] = []
        if journal is not None:
            seen = set(np.asarray(file[EVALUATIONS_GROUP]["id"][:count]).tolist()) if file is not None else set()
            for row in journal.rows:
                if int(row["id"]) not in seen:
                    seen.add(int(row["id"]))
                    self._extra.append(row)
        self._count = count + len(self._extra)
        self._cache: dict[str, np.ndarray] = {}
        self._weight_files: dict[Path, h5py.File] = {}  # a live library's kept models (`_weights_groups`)
        if journal is not None and journal.attrs is not None:
            self.attrs = dict(journal.attrs)
        else:
            self.attrs = {key: plain_attr(file.attrs[key]) for key in file.attrs} if file is not None else {}
        self.job_text = str(self.attrs.get("job", ""))

    @property
    def live(self) -> bool:
        """Whether the library was read through its journal (a search writing it, or killed)."""
        return self._journal is not None

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
        journal = cls._read_journal(p)
        if journal is not None:
            assert journal.attrs is not None
            cls._validate_attrs(p, journal.attrs)
            base = base_path(p)
            if not base.exists():
                return cls(p, None, 0, journal=journal)
            f = cls._open_h5(base)
            try:
                return cls(p, f, cls._validate(base, f), journal=journal)
            except Exception:
                f.close()
                raise
        try:
            f = cls._open_h5(p)
        except PermissionError:
            raise UserError(f"cannot read library {p}: permission denied") from None
        except Exception as exc:  # h5py raises OSError, occasionally others
            if _looks_like_hdf5(p):
                raise UserError(f"library {p} is truncated or corrupt ({_first_line(exc)})") from None
            raise UserError(f"{p} is not an HDF5 file; expected a menndl library") from None
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
    def _read_journal(p: Path) -> JournalContents | None:
        """The journal beside ``p`` when there is one with a header, else None."""
        jpath = journal_path(p)
        if not jpath.exists():
            return None
        try:
            contents = read_journal(jpath)
        except OSError as exc:
            raise UserError(f"cannot read library journal {jpath}: {_first_line(exc)}") from None
        return contents if contents.attrs is not None else None

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
        names = ("format", "format_version", "job")
        Library._validate_attrs(p, {key: plain_attr(f.attrs[key]) for key in names if key in f.attrs})
        return validate_layout(p, f)

    @staticmethod
    def _validate_attrs(p: Path, attrs: dict[str, Any]) -> None:
        """Check the format name, version and job text of a library's root attributes."""
        fmt = attrs.get("format")
        if fmt != FORMAT_NAME:
            what = "root attribute 'format' is missing" if fmt is None else f"format is {fmt!r}"
            raise UserError(f"{p} is not a menndl library ({what}; expected {FORMAT_NAME!r})")

        version = attrs.get("format_version")
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

        if not isinstance(attrs.get("job"), str):
            raise UserError(f"library {p} is corrupt: root attribute 'job' is missing")

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Return the number of evaluations in the library."""
        return self._count

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
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

    def column_at(self, name: str, positions: np.ndarray) -> np.ndarray:
        """Values of column ``name`` at row ``positions`` (reads only those rows when few)."""
        if name in self._cache or len(positions) > 4096:
            return self._column(name)[positions]
        out = np.empty(len(positions), dtype=object)
        wanted = positions.tolist()
        step = 256  # `_rows_of` reads a whole column beyond that many rows
        out[:] = [row[name] for first in range(0, len(wanted), step)
                  for row in self._rows_of([name], wanted[first : first + step])]  # fmt: skip
        return out

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
        return self.rows([int(rows[0])])[0]

    def rows(self, indices: list[int]) -> list[dict[str, Any]]:
        """Return the rows at positions ``indices`` (in that order) as dicts of plain values.

        Reads only those rows of the string columns, so it stays fast on big libraries.

        Raises:
            UserError: The file is corrupt.
            ValueError: The library is closed.
        """
        return self._rows_of(FIELD_NAMES, indices)

    def _rows_of(self, names: tuple[str, ...] | list[str], indices: list[int]) -> list[dict[str, Any]]:
        self._check_open()
        out: list[dict[str, Any]] = [{} for _ in indices]
        try:
            for name in names:
                kind = FIELD_KINDS[name]
                if name in self._cache or len(indices) > 256:
                    column = self._column(name)
                    for k, row in enumerate(indices):
                        value = column[row]
                        out[k][name] = value.item() if isinstance(value, np.generic) else value
                    continue
                group = self._file[EVALUATIONS_GROUP] if self._file is not None else None
                dataset = group[name] if group is not None and name in group else None
                for k, row in enumerate(indices):
                    if row < self._h5_count and dataset is None:  # a field added after this library was written
                        out[k][name] = MISSING[kind]
                    elif row < self._h5_count:
                        assert dataset is not None
                        if kind == "str":
                            out[k][name] = str(dataset.asstr(errors="replace")[row])
                        else:
                            out[k][name] = int(dataset[row]) if kind == "int" else float(dataset[row])
                    else:
                        out[k][name] = _extra_value(self._extra[row - self._h5_count], name, kind)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"library {self.path} is truncated or corrupt ({_first_line(exc)})") from None
        return out

    def pareto_ids(self) -> list[int]:
        """Return the ids on the Pareto front as last stored by the writer.

        Raises:
            UserError: The file is corrupt.
            ValueError: The library is closed.
        """
        self._check_open()
        if self._journal is not None and self._journal.pareto is not None:
            return list(self._journal.pareto)
        if self._file is None:
            return []
        try:
            return [int(v) for v in self._file[PARETO_DATASET][()].tolist()]
        except Exception as exc:
            raise UserError(f"library {self.path} is truncated or corrupt ({_first_line(exc)})") from None

    def search_state(self) -> SearchState:
        """Where the search stands: the HDF5 file's state (the base copy's, for a live library)
        advanced by the journal, its finished tasks dropped (:func:`menndl.library.state.search_state`).

        Raises:
            UserError: The file is corrupt.
            ValueError: The library is closed.
        """
        f = self._check_open()
        stored = read_state(f, self.path) if f is not None else SearchState()
        return search_state(stored, self._journal, self._column("id"))

    def resume_state(self) -> tuple[str | None, int, list[dict[str, Any]]]:
        """What a resumed search needs beyond the rows: (random state, next id, tasks in flight).

        Returns:
            The master's random state as JSON text (None if never stored),
            the id the next candidate gets, and the tasks that were handed out
            but have no row (each with ``id, genome, hash, parents, operator,
            seed``), in id order.
        """
        state = self.search_state()
        return state.rng_state, state.next_id, [dict(task) for task in state.pending]

    def session(self) -> dict[str, Any]:
        """How the last run of the search ended, as its writer noted at close (the search time: or as
        journaled since, while a journal lies beside the library).

        Returns:
            ``stop_reason`` ('' when never noted), ``search_seconds`` (0.0 when
            never noted) and ``closed``: False while a journal lies beside the
            library (its search still runs, or was killed before it closed).
        """
        state = self.search_state()
        return {
            "stop_reason": state.stop_reason or "",
            "search_seconds": state.search_seconds or 0.0,
            "closed": state.closed,
        }

    def weight_ids(self) -> list[int]:
        """Ids of the candidates whose trained weights the library keeps."""
        return sorted(self._weights_groups())

    def weights(self, eval_id: int) -> dict[str, np.ndarray] | None:
        """The kept weights of ``eval_id`` as {state-dict name: float32 array}, or None."""
        group = self._weights_groups().get(int(eval_id))
        if group is None:
            return None
        from menndl.library.stored import stored_json

        where = f"kept weights of evaluation {eval_id}"
        names = stored_json(self.path, where, str(plain_attr(group.attrs["names"]))) if "names" in group.attrs else None
        names = list(group) if names is None else names
        if not isinstance(names, list) or not all(isinstance(name, str) and name in group for name in names):
            raise UserError(f"library {self.path}: {where}: 'names' does not list its arrays")
        arrays = {}
        for name in names:
            item = group[name]
            if not isinstance(item, h5py.Dataset) or item.dtype.kind != "f":
                raise UserError(f"library {self.path}: {where}: '{name}' is not a float array")
            arrays[name] = np.asarray(item[()])
        return arrays

    def _weights_groups(self) -> dict[int, h5py.Group]:
        """Kept weights.  For a live library: those of its base copy (the file being written is not read)
        and the models its writer keeps now (`menndl.library.kept_weights`, one complete file each)."""
        f = self._check_open()
        groups = {} if f is None or WEIGHTS_GROUP not in f else {int(k): g for k, g in f[WEIGHTS_GROUP].items()}
        directory = weights_dir(self.path)
        if self._journal is not None and directory.is_dir():
            for path in sorted(directory.glob("*.h5")):
                if not path.stem.isdigit():
                    continue
                try:
                    if path not in self._weight_files:
                        self._weight_files[path] = h5py.File(path, "r", locking=False)
                    groups[int(path.stem)] = self._weight_files[path]["/"]
                except OSError:
                    continue  # pushed out of the top (deleted) since the folder was listed
        return groups

    def close(self) -> None:
        """Close the file.  Safe to call twice."""
        f, self._file = self._file, None
        self._closed = True
        self._cache.clear()
        for weights in self._weight_files.values():
            weights.close()
        self._weight_files.clear()
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

    def _check_open(self) -> h5py.File | None:
        if self._closed:
            raise ValueError(f"library {self.path} is closed")
        return self._file

    def _column(self, name: str) -> np.ndarray:
        """Return the cached (shared, do not modify) column ``name``."""
        if name not in FIELD_KINDS:
            raise UserError(f"library {self.path} has no column {name!r}; valid columns: {', '.join(FIELD_NAMES)}")
        f = self._check_open()
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        kind = FIELD_KINDS[name]
        dtype = object if kind == "str" else (np.int64 if kind == "int" else np.float64)
        try:
            data = read_column(f, name, self._h5_count) if f is not None else np.empty(0, dtype=dtype)
        except Exception as exc:
            raise UserError(f"library {self.path} is truncated or corrupt ({_first_line(exc)})") from None
        if self._extra:
            extra = np.empty(len(self._extra), dtype=dtype)
            extra[:] = [_extra_value(row, name, kind) for row in self._extra]
            data = np.concatenate([data, extra])
        self._cache[name] = data
        return data


def _extra_value(row: dict[str, Any], name: str, kind: str) -> Any:
    """One field of a journal row as a plain value of its kind (missing -> the missing value)."""
    value = row.get(name)
    if value is None:
        return MISSING[kind]
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return str(value)
