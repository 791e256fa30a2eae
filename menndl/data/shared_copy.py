"""One copy of the samples per node in POSIX shared memory: written once, mapped read-only, removed by the last user.

The copy of a search's data on a node is the file ``/dev/shm/menndl-<key>-<uid>`` (`segment_path`), beside two
lock files:

* ``<segment>.users``: every process using the copy holds a shared `fcntl.flock` on it from before it looks
  for the segment until it is done with it.  At close a user tries an exclusive lock without waiting; when it
  gets it no one else uses the copy, and it removes the segment and the lock files.  A killed user's lock is
  released by the kernel, so the last survivor cleans up, and `clean_stale_segments` (called by every worker
  that opens a copy, and by the master at start) removes copies nobody holds.
* ``<segment>.lock``: the one process that writes the copy holds it exclusively while it writes.  It writes
  ``<segment>.tmp`` (samples read block by block straight into the mapped file) and renames it into place
  when complete, so a half-written copy is never mapped; the others wait on the lock, then map the segment.

A lock file removed and recreated by a cleanup is detected (the inode locked is no longer the one at the
path) and locked again, so two processes never guard one segment with different lock files.  Nothing here
imports torch: the master calls `clean_stale_segments` too.  Locks are held on open file descriptions, so a
process forked while holding the copy holds it as well until it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from menndl.data.placement import SHARED_MEMORY
from menndl.errors import UserError

PREFIX = "menndl-"
USERS_SUFFIX = ".users"
WRITER_SUFFIX = ".lock"
TEMP_SUFFIX = ".tmp"
_MAGIC = b"MENNDL-SHARED-COPY-1\n"
#: Bytes before the first part (the header: magic and a JSON description), and the alignment of every part.
HEADER_BYTES = 4096
_NAME = re.compile(r"^menndl-([0-9A-Za-z_]+)-([0-9]+)(\.users|\.lock|\.tmp)?$")
_KEY = re.compile(r"^[0-9A-Za-z_]{1,64}$")


@dataclass(frozen=True)
class Part:
    """One array of the shared copy.

    Attributes:
        name: What it is (``train``, ``held``): recorded in the header and checked by every reader.
        shape: Its shape.
        dtype: Its dtype.
        fill: Writes the array's values into the mapped array it is given (called once per node).
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fill: Callable[[np.ndarray], None] = field(compare=False)

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def sanitize_key(node_key: str) -> str:
    """The key as it appears in the segment's name: itself when it is 1 to 64 letters, digits or ``_``, else a hash.

    Raises:
        ValueError: the key is empty (every search on the same data must name its copy).
    """
    if not node_key:
        raise ValueError("a node placement needs a non-empty node_key")
    if _KEY.match(node_key):
        return node_key
    return hashlib.sha256(node_key.encode()).hexdigest()[:32]


def segment_path(node_key: str, directory: str | os.PathLike[str] = SHARED_MEMORY, uid: int | None = None) -> Path:
    """``<directory>/menndl-<sanitized key>-<uid>``."""
    uid = os.getuid() if uid is None else uid
    return Path(directory) / f"{PREFIX}{sanitize_key(node_key)}-{uid}"


def _sibling(segment: Path, suffix: str) -> Path:
    return segment.with_name(segment.name + suffix)


class SharedCopy:
    """The node's shared copy as this process uses it: read-only arrays and a shared lock on the users file.

    Attributes:
        path: The segment.
        arrays: The parts, read-only, in the order they were given.
        wrote: Whether this process wrote the segment (exactly one process per copy does).
    """

    def __init__(self, path: Path, arrays: tuple[np.ndarray, ...], wrote: bool, users_fd: int, mapping: mmap.mmap):
        self.path, self.arrays, self.wrote = path, arrays, wrote
        self._users_fd: int | None = users_fd
        self._mapping: mmap.mmap | None = mapping

    def close(self) -> bool:
        """Stop using the copy; remove it when no other process uses it.

        The arrays must not be used afterwards (a view still held keeps the pages alive, nothing more).

        Returns:
            Whether this process removed the segment.
        """
        if self._users_fd is None:
            return False
        self.arrays = ()
        mapping, self._mapping = self._mapping, None
        if mapping is not None:
            with contextlib.suppress(BufferError):  # a caller still holds a view: the map goes with it
                mapping.close()
        fd, self._users_fd = self._users_fd, None
        return _remove_if_unused(self.path, fd)

    def __enter__(self) -> SharedCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_shared_copy(
    node_key: str, parts: Sequence[Part], *, directory: str | os.PathLike[str] = SHARED_MEMORY
) -> SharedCopy:
    """Map the node's copy, writing it first when this process is the first to want it.

    Args:
        node_key: Names the copy: the same for every worker of the search on the same data.
        parts: The arrays the copy holds, with how to fill them.
        directory: Where the segment lives (``/dev/shm``).

    Returns:
        The copy, mapped read-only; `SharedCopy.close` it when done.

    Raises:
        UserError: the shared memory has no room for the copy, or a segment of that name holds other arrays.
        DataReadError, DataUnavailable: a part could not be read while writing it.
    """
    path = segment_path(node_key, directory)
    users_fd = _lock_file(_sibling(path, USERS_SUFFIX), fcntl.LOCK_SH)
    try:
        wrote = False
        if not path.exists():
            writer_fd = _lock_file(_sibling(path, WRITER_SUFFIX), fcntl.LOCK_EX)
            try:
                if not path.exists():
                    _write(path, parts)
                    wrote = True
            finally:
                os.close(writer_fd)
        arrays, mapping = _map(path, parts)
    except BaseException:
        _remove_if_unused(path, users_fd)  # leave no lock files behind when no one else uses the copy
        raise
    return SharedCopy(path, arrays, wrote, users_fd, mapping)


def clean_stale_segments(directory: str | os.PathLike[str] = SHARED_MEMORY) -> list[Path]:
    """Remove this user's copies (and their lock files) that no process holds.

    A copy is held while some process has a shared lock on its users file; every other ``menndl-*`` copy
    of this uid (a search that was killed) is removed.

    Args:
        directory: Where the segments live.

    Returns:
        The segments removed.
    """
    uid = str(os.getuid())
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    segments = set()
    for name in names:
        match = _NAME.match(name)
        if match and match.group(2) == uid:
            segments.add(Path(directory) / f"{PREFIX}{match.group(1)}-{uid}")
    removed = []
    for segment in sorted(segments):
        try:
            fd = _lock_file(_sibling(segment, USERS_SUFFIX), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # in use
        existed = segment.exists()
        if _remove_if_unused(segment, fd, held=True) and existed:
            removed.append(segment)
    return removed


def _lock_file(path: Path, operation: int) -> int:
    """Open (creating it) and flock ``path``; lock again while a cleanup replaces it.

    Raises:
        BlockingIOError: ``LOCK_NB`` was asked for and another process holds the lock.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, operation)
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # a cleanup removed the file while we waited: lock the new one


def _remove_if_unused(path: Path, users_fd: int, *, held: bool = False) -> bool:
    """Remove the segment and its lock files when ``users_fd`` can be locked exclusively; close ``users_fd``."""
    try:
        if not held:
            try:
                fcntl.flock(users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another process uses the copy
        # The segment first, the users file last: a newcomer waiting on this lock retries on a new file.
        for suffix in ("", TEMP_SUFFIX, WRITER_SUFFIX, USERS_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_sibling(path, suffix))
        return True
    finally:
        os.close(users_fd)


def _layout(parts: Sequence[Part]) -> tuple[list[int], int]:
    """Offsets of the parts (page-aligned, after the header) and the segment's size."""
    offsets, end = [], HEADER_BYTES
    for part in parts:
        offsets.append(end)
        end += -(-part.nbytes // HEADER_BYTES) * HEADER_BYTES
    return offsets, end


def _header(parts: Sequence[Part]) -> bytes:
    description = [{"name": p.name, "shape": list(p.shape), "dtype": np.dtype(p.dtype).str} for p in parts]
    text = _MAGIC + json.dumps(description).encode() + b"\n"
    if len(text) > HEADER_BYTES:
        raise ValueError("too many parts for the shared copy's header")
    return text


def _write(path: Path, parts: Sequence[Part]) -> None:
    """Write the segment as ``<path>.tmp`` and rename it into place (the caller holds the writer lock)."""
    temp = _sibling(path, TEMP_SUFFIX)
    offsets, size = _layout(parts)
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)  # no room shows here, not as SIGBUS while writing the map
        except OSError as exc:
            raise UserError(
                f"{path.parent}: no room for the node's shared copy of the data ({size / 2**30:.1f} GiB: "
                f"{os.strerror(exc.errno or 0)}); use data.placement = 'stream'"
            ) from None
        header = _header(parts)
        os.pwrite(fd, header, 0)
        if size > HEADER_BYTES:
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                for part, offset in zip(parts, offsets):
                    array = np.ndarray(part.shape, dtype=part.dtype, buffer=mapping, offset=offset)
                    part.fill(array)
                    del array
            finally:
                try:
                    mapping.close()
                except BufferError:  # a fill kept a view: the map is released with it
                    pass
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    finally:
        os.close(fd)


def _map(path: Path, parts: Sequence[Part]) -> tuple[tuple[np.ndarray, ...], mmap.mmap]:
    """The segment's parts, read-only, after checking its header describes ``parts``."""
    offsets, size = _layout(parts)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        actual = os.fstat(fd).st_size
        header = os.pread(fd, HEADER_BYTES, 0)
        expected = _header(parts)
        if actual != size or header[: len(expected)] != expected:
            raise UserError(
                f"{path}: the node's shared copy holds other data than this search's (another search with the "
                "same node key?); remove it, or give the searches different data keys"
            )
        mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
    finally:
        os.close(fd)
    arrays = tuple(
        np.ndarray(part.shape, dtype=part.dtype, buffer=mapping, offset=offset) for part, offset in zip(parts, offsets)
    )
    return arrays, mapping


__all__ = ["Part", "SharedCopy", "clean_stale_segments", "open_shared_copy", "segment_path", "sanitize_key"]
