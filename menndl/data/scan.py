"""One streaming pass over a dataset's samples: the checks, the fingerprint and the standardisation.

`scan_dataset` reads every sample array in blocks of whole chunks (a reader thread keeps the next block
coming while this one is checked), with memory bounded by a few blocks whatever the file's size.  It finds
the first NaN or infinite value (and float64 values too large for float32) and names its sample; hashes
every byte into the fingerprint recorded in the library; and accumulates the per-channel mean and standard
deviation of the training split, which every placement applies per batch on the training device.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from menndl.data.arrays import READ_BYTES, SampleArray, row_blocks
from menndl.data.dataset import Dataset, label_bytes
from menndl.errors import UserError

_FINGERPRINT_VERSION = b"menndl.dataset.v2\0"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Smallest standard deviation used (a constant channel is divided by this, not by zero).
MIN_STD = 1e-6
#: Sample values merged into the statistics at a time (bounds the scan's float64 temporaries: 8 MiB).
_MOMENT_VALUES = 2**20


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of the training split.

    Attributes:
        mean: One float per channel.
        std: One float per channel, at least `MIN_STD`.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def as_dict(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` (for the setup message and the library)."""
        return {"mean": list(self.mean), "std": list(self.std)}


@dataclass(frozen=True)
class DataScan:
    """What the streaming pass found.

    Attributes:
        fingerprint: SHA-256 hex digest of every sample and label, the splits and the class count.
        stats: The training split's per-channel statistics.
        seconds: Wall time of the pass.
        bytes_read: Sample bytes read.
    """

    fingerprint: str
    stats: ChannelStats
    seconds: float
    bytes_read: int


def scan_dataset(
    data: Dataset,
    *,
    block_bytes: int = READ_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> DataScan:
    """Check, fingerprint and measure the dataset in one pass over its samples.

    Args:
        data: The opened dataset.
        block_bytes: Bytes per read.
        progress: Called with ``(bytes read, bytes in all)`` after each block.

    Returns:
        The fingerprint and statistics.

    Raises:
        UserError: A sample holds NaN or infinity or a value too large for float32 (one line naming the
            file, the dataset and the sample), or samples cannot be read (`DataReadError`).
    """
    started = time.perf_counter()
    digest = hashlib.sha256(_FINGERPRINT_VERSION)
    digest.update(f"num_classes={data.num_classes}\0".encode())
    if data.task != "classification":
        digest.update(f"task={data.task}\0".encode())
    arrays = data.raw.arrays()
    total = sum(len(a) * a.row_bytes for a in arrays)
    channels = data.input_shape[0]
    moments = _Moments(channels)
    done = 0
    for array in arrays:
        digest.update(f"{array.key}:{array.dtype.str}:{array.shape}\0".encode())
        block = array.block_rows(block_bytes)
        train_rows = data.train.rows if data.train.x is array else np.zeros(0, dtype=np.int64)
        in_block = {start // block: (first, last) for first, last, start, _ in row_blocks(train_rows, block)}
        with contextlib.closing(_blocks(array, block)) as blocks:  # the reader thread ends, even on an error
            for start, rows in blocks:
                digest.update(np.ascontiguousarray(rows).data.cast("B"))
                _check_values(array, start, rows)
                if start // block in in_block:
                    first, last = in_block[start // block]
                    moments.add(rows, train_rows[first:last] - start)
                done += len(rows) * array.row_bytes
                if progress is not None:
                    progress(done, total)
    for name, split in data.splits.items():
        digest.update(f"{name}:{split.x.key}:{len(split)}\0".encode())
        digest.update(np.ascontiguousarray(split.rows, dtype=np.int64).tobytes())
        digest.update(label_bytes(split.y))
    return DataScan(digest.hexdigest(), moments.stats(), time.perf_counter() - started, done)


def _blocks(array: SampleArray, block: int, depth: int = 2) -> Generator[tuple[int, np.ndarray], None, None]:
    """``(start, rows)`` of each block in order, read ``depth`` blocks ahead by a thread."""
    starts = list(range(0, len(array), block))
    if len(starts) <= 1:
        for start in starts:
            yield start, array.read(start, min(len(array), start + block))
        return
    ready: queue.Queue[tuple[int, np.ndarray] | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read_ahead() -> None:
        try:
            for start in starts:
                if stop.is_set():
                    return
                ready.put((start, array.read(start, min(len(array), start + block))))
            ready.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(exc)

    reader = threading.Thread(target=read_ahead, name="menndl-scan-reader", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # unblock a reader waiting on a full queue
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass
        reader.join()


def _check_values(array: SampleArray, start: int, rows: np.ndarray) -> None:
    """Raise UserError naming the first sample of the block with a NaN, infinity or a float32 overflow.

    Samples stored as float64 are read as float32, so a value too large for float32 reads as infinity:
    the first such sample is read again as stored to tell an overflow from a real infinity.
    """
    if rows.dtype.kind != "f":
        return
    finite = np.isfinite(rows)
    if finite.all():
        return
    per_row = finite.reshape(len(rows), -1).all(axis=1)
    bad = int(np.flatnonzero(~per_row)[0])
    count = int(np.count_nonzero(~finite))
    del finite
    if array.dtype.kind == "f" and array.dtype.itemsize > rows.dtype.itemsize:
        stored = np.asarray(array._read(start + bad, start + bad + 1))
        if np.isfinite(stored).all():
            raise UserError(
                f"{array.display}: dataset '{array.key}', sample {start + bad}: a value too large for float32 "
                f"(magnitude above 3.4e38, e.g. {float(np.abs(stored).max()):g}); expected numbers float32 can hold"
            )
    raise UserError(
        f"{array.display}: dataset '{array.key}', sample {start + bad}: NaN or infinite value "
        f"({count} in samples {start}..{start + len(rows) - 1}); expected finite numbers"
    )


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged block by block (Chan et al.)."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = np.zeros(channels, dtype=np.float64)
        self.m2 = np.zeros(channels, dtype=np.float64)

    def add(self, rows: np.ndarray, index: np.ndarray) -> None:
        """Merge the samples ``rows[index]`` (``rows`` is ``(n, C, *spatial)``).

        The rows are taken a few MiB at a time and each channel's squared deviations are summed in float64,
        so the temporaries stay small whatever the block size and the sum stays exact enough.
        """
        if len(index) == 0:
            return
        per_row = max(1, int(np.prod(rows.shape[1:], dtype=np.int64)))
        step = max(1, _MOMENT_VALUES // per_row)
        for at in range(0, len(index), step):
            self._merge(rows[index[at : at + step]])

    def _merge(self, rows: np.ndarray) -> None:
        """Merge a few samples (Chan et al.'s pairwise update, per channel)."""
        values = rows.reshape(len(rows), rows.shape[1], -1)
        n = values.shape[0] * values.shape[2]
        for c in range(values.shape[1]):
            channel = values[:, c].astype(np.float64)
            mean = float(channel.mean())
            channel -= mean
            m2 = float(np.einsum("ij,ij->", channel, channel))
            total = self.count + n
            delta = mean - self.mean[c]
            self.m2[c] += m2 + delta * delta * self.count * n / total
            self.mean[c] += delta * n / total
        self.count += n

    def stats(self) -> ChannelStats:
        """The mean and the (population) standard deviation, at least `MIN_STD`."""
        if self.count == 0:
            raise UserError("the training split has no samples")
        std = np.sqrt(self.m2 / self.count)
        return ChannelStats(tuple(float(m) for m in self.mean), tuple(float(max(MIN_STD, s)) for s in std))
