"""Sample arrays read in row ranges, never whole: an HDF5 dataset, a memory-mapped ``.npy`` file, or memory.

Every reader of the data (the master's check, the worker's placements, ``menndl train``) goes through a
`SampleArray`: it knows the shape and dtype from metadata, reads rows ``start:stop`` into memory, and says
how many rows one read should take (whole HDF5 chunks, about `READ_BYTES`).  An HDF5 virtual dataset that
joins shard files, or an external link to a dataset in another file, is read the same way: h5py resolves
them.  A failed read becomes a one-line `DataReadError` naming the file, the dataset and the samples.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from menndl.errors import UserError

#: Bytes one read aims at: large enough for a parallel file system, small enough to bound memory.
READ_BYTES = 32 * 2**20

#: `SampleArray.take` reads a block's chunks one by one when its rows fill less than this share of it.
SPARSE_SHARE = 0.25

#: Sample dtypes kept as they are in memory and on the device (converted to float32 per batch); others
#: are converted to float32 when read.
KEPT_DTYPES = ("uint8", "int8", "int16", "float16", "float32")


class DataReadError(UserError):
    """Samples of a data file cannot be read (a corrupted chunk, an I/O error): one line, exit status 2."""


class DataUnavailable(UserError):
    """The data file is gone or unreachable mid-search: one line, exit status 1 (the input was fine).

    The search stops cleanly and keeps every result; ``--resume`` continues once the file is back.
    """

    exit_status = 1


def human_bytes(count: int) -> str:
    """``1.5 GiB``, ``97.7 KiB`` and the like, for messages and summaries."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def one_line(exc: BaseException) -> str:
    """The text of an exception on one line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class SampleArray(ABC):
    """Rows of samples (or labels) stored somewhere, read a range at a time.

    Attributes:
        display: How the file is named in messages (as the user wrote it).
        key: The dataset name in the file (the file's stem for ``.npy``).
        shape: ``(rows, *sample_shape)``.
        dtype: The stored dtype.
    """

    display: str
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def row_bytes(self) -> int:
        """Bytes of one row as stored."""
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    @property
    def memory_dtype(self) -> np.dtype:
        """The dtype rows have once read: the stored one (in native byte order) when it is in `KEPT_DTYPES`,
        else float32."""
        return self.dtype.newbyteorder("=") if self.dtype.name in KEPT_DTYPES else np.dtype(np.float32)

    @property
    def chunk_rows(self) -> int:
        """Rows of one storage chunk (1 for a contiguous layout)."""
        return 1

    def block_rows(self, target_bytes: int = READ_BYTES) -> int:
        """Rows one read should take: whole chunks, about ``target_bytes``, at least one chunk.

        Args:
            target_bytes: The size aimed at.

        Returns:
            A positive number of rows (a multiple of `chunk_rows` unless the array is shorter).
        """
        chunk = max(1, self.chunk_rows)
        chunks = max(1, target_bytes // max(1, self.row_bytes * chunk))
        return max(1, min(len(self) or 1, chunks * chunk))

    def where(self, start: int, stop: int) -> str:
        """``file: dataset 'x', samples a..b`` for messages."""
        return f"{self.display}: dataset '{self.key}', samples {start}..{max(start, stop - 1)}"

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` in memory, in `memory_dtype`.

        Raises:
            DataReadError: the rows cannot be read (e.g. a corrupted chunk).
            DataUnavailable: the file is gone.
        """
        try:
            rows = self._read(start, stop)
        except (UserError, MemoryError):
            raise
        except FileNotFoundError as exc:
            raise DataUnavailable(f"{self.where(start, stop)}: the file is gone ({one_line(exc)})") from None
        except Exception as exc:  # h5py raises OSError, RuntimeError, ...
            if not self.exists():
                raise DataUnavailable(f"{self.where(start, stop)}: the file is gone ({one_line(exc)})") from None
            raise DataReadError(f"{self.where(start, stop)}: cannot be read ({one_line(exc)})") from None
        if rows.dtype == self.memory_dtype:
            return rows
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf: the scan names it
            return rows.astype(self.memory_dtype)

    def take(self, rows: np.ndarray, out: np.ndarray | None = None, *, target_bytes: int = READ_BYTES) -> np.ndarray:
        """The given rows (sorted, unique) in memory, read block by block: never more than one block extra.

        Args:
            rows: Sorted unique row indices.
            out: Where to put them (``(len(rows), *sample_shape)`` in `memory_dtype`); allocated when None.
            target_bytes: Bytes per read.

        Returns:
            ``out``.
        """
        if out is None:
            out = np.empty((len(rows), *self.shape[1:]), dtype=self.memory_dtype)
        chunk = max(1, self.chunk_rows)
        for first, last, start, stop in row_blocks(rows, self.block_rows(target_bytes)):
            wanted = rows[first:last]
            if SPARSE_SHARE * (stop - start) > len(wanted) * chunk:
                # Sparse rows (a validation split carved from a big file): read only the chunks they are in.
                for sub_first, sub_last, sub_start, sub_stop in row_blocks(wanted, chunk):
                    piece = self.read(sub_start, sub_stop)
                    out[first + sub_first : first + sub_last] = piece[wanted[sub_first:sub_last] - sub_start]
                continue
            block = self.read(start, stop)
            out[first:last] = block[wanted - start]
        return out

    def exists(self) -> bool:
        """Whether the file is still there."""
        return True

    def close(self) -> None:
        """Release the file (reads after this reopen nothing: they fail)."""

    @abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored."""


def row_blocks(rows: np.ndarray, block: int) -> list[tuple[int, int, int, int]]:
    """Group sorted row indices by the read blocks they fall in.

    Args:
        rows: Sorted unique row indices.
        block: Rows per read block (blocks start at multiples of ``block``).

    Returns:
        ``(first, last, start, stop)`` per block touched: ``rows[first:last]`` lie in rows ``start:stop``.
    """
    if len(rows) == 0:
        return []
    ids = np.asarray(rows) // block
    cuts = np.flatnonzero(np.diff(ids)) + 1
    firsts = np.concatenate([[0], cuts])
    lasts = np.concatenate([cuts, [len(rows)]])
    out = []
    for first, last in zip(firsts.tolist(), lasts.tolist()):
        start = int(rows[first])
        out.append((first, last, start, int(rows[last - 1]) + 1))
    return out


class MemoryArray(SampleArray):
    """An array already in memory (the built-in datasets, ``.npz`` archives)."""

    def __init__(self, array: np.ndarray, display: str, key: str) -> None:
        """Wrap ``array`` (not copied)."""
        self.array, self.display, self.key = array, display, key
        self.shape, self.dtype = tuple(int(d) for d in array.shape), array.dtype

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop])


class NpyArray(SampleArray):
    """A ``.npy`` file opened as a read-only memory map (never unpickled)."""

    def __init__(self, path: Path, display: str) -> None:
        """Map the file.

        Raises:
            UserError: it is not a ``.npy`` file of numbers.
        """
        self.path, self.display, self.key = path, display, path.stem
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise UserError(f"{display}: holds Python objects or is not a .npy array ({one_line(exc)})") from None
        except Exception as exc:
            raise UserError(f"{display}: cannot be read as a .npy array ({one_line(exc)})") from None
        self.shape, self.dtype = tuple(int(d) for d in self.array.shape), self.array.dtype
        self._closed = False

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._closed:
            raise ValueError("the file was closed")
        return np.array(self.array[start:stop], order="C")  # a copy (never a view of the map), C order

    def exists(self) -> bool:
        """Whether the file is still there."""
        return self.path.exists()

    def close(self) -> None:
        """Drop the memory map."""
        mapping = getattr(self.array, "_mmap", None)
        self._closed = True
        self.array = np.empty((0, *self.shape[1:]), dtype=self.dtype)
        if mapping is not None:
            mapping.close()


class H5Array(SampleArray):
    """A dataset of an open HDF5 file: plain, chunked (compressed or not), virtual, or reached by a link."""

    def __init__(self, handle: Any, dataset: Any, path: Path, display: str, key: str) -> None:
        """Wrap an open h5py dataset (the file ``handle`` is closed by `close`)."""
        self.handle, self.dataset, self.path, self.display, self.key = handle, dataset, path, display, key
        self.shape, self.dtype = tuple(int(d) for d in dataset.shape), dataset.dtype
        self._chunks = dataset.chunks

    @property
    def chunk_rows(self) -> int:
        """Rows of one storage chunk (1 for a contiguous or virtual layout)."""
        return int(self._chunks[0]) if self._chunks else 1

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        if stop > start:
            self.dataset.read_direct(out, source_sel=np.s_[start:stop])
        return out

    def exists(self) -> bool:
        """Whether the file is still there."""
        return os.path.exists(self.path)

    def close(self) -> None:
        """Close the file once (every dataset of it shares the handle)."""
        try:
            if self.handle.id.valid:
                self.handle.close()
        except Exception:
            pass


class JoinedArray(SampleArray):
    """Two arrays of the same sample shape, one after the other (a given validation split beside ``x``)."""

    def __init__(self, first: SampleArray, second: SampleArray) -> None:
        """Join ``first`` and ``second`` (neither is read)."""
        self.first, self.second = first, second
        self.display, self.key = first.display, f"{first.key}+{second.key}"
        self.shape = (len(first) + len(second), *first.shape[1:])
        self.dtype = first.memory_dtype if first.memory_dtype == second.memory_dtype else np.dtype(np.float32)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` across both arrays (each names its own file in errors)."""
        cut = len(self.first)
        parts = []
        if start < cut:
            parts.append(self.first.read(start, min(stop, cut)))
        if stop > cut:
            parts.append(self.second.read(max(start, cut) - cut, stop - cut))
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return out.astype(self.memory_dtype, copy=False)

    def _read(self, start: int, stop: int) -> np.ndarray:  # pragma: no cover - read() is overridden
        return self.read(start, stop)

    def exists(self) -> bool:
        """Whether both files are still there."""
        return self.first.exists() and self.second.exists()
