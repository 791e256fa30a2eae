"""`StreamPlacement`: each worker reads the samples from the file as it trains, holding at most two windows.

A reader thread reads the epoch's windows (`EpochOrder.windows`) one after another, block by block, into
one of two window buffers; the training loop gathers each batch from the window it is in (a batch that
spans windows is gathered piece by piece) while the reader fills the other buffer with the next window.  A
buffer goes back to the reader only once the last batch that needs it is gathered, so memory holds two
windows (``data.cache_bytes``: `epoch_order` sizes a window as half of it) and a batch.  The batches are
those of `DevicePlacement` for the same seed and epoch.  The held-out split is read the same way, in order.

A read error in the thread (`DataReadError`, `DataUnavailable`) is raised by the training loop as it was
raised; closing the batch iterator early stops the thread and drops the buffers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from menndl.data.arrays import DataUnavailable
from menndl.data.order import EpochOrder, Window, permutation
from menndl.data.splits import Split
from menndl.worker.placements.base import Batch, Placement
from menndl.worker.placements.staging import Staging

#: Seconds the reader and the training loop wait on each other before looking whether they should stop.
POLL_SECONDS = 0.05
#: Seconds `_Reader.close` waits for the thread to finish the read it is in.
JOIN_SECONDS = 60.0

Load = Callable[[np.ndarray, threading.Event], "np.ndarray | None"]


@dataclass(frozen=True)
class _Piece:
    """A run of the sequence of samples visited: read into a buffer at once.

    Attributes:
        count: Samples of the sequence it covers (and rows of the buffer it fills).
        load: Fills ``buffer[:count]``, stopping early when the event is set; returns the buffer row of each
            visited sample in order (None: in order already).
    """

    count: int
    load: Load


class _Reader:
    """A thread loading pieces, in order, into two buffers that the consumer hands back when done with them."""

    def __init__(self, pieces: list[_Piece], sample_shape: tuple[int, ...], dtype: np.dtype) -> None:
        rows = max((piece.count for piece in pieces), default=0)
        self.pieces = pieces
        self.free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(2):
            self.free.put(np.empty((rows, *sample_shape), dtype=dtype))
        self.ready: queue.Queue[tuple[_Piece, np.ndarray, np.ndarray | None] | BaseException] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="menndl-stream-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for piece in self.pieces:
                buffer = self._free_buffer()
                if buffer is None:
                    return
                local = piece.load(buffer, self.stop)
                if self.stop.is_set():
                    return
                self.ready.put((piece, buffer, local))
        except BaseException as exc:  # handed to the consumer, which raises it
            self.ready.put(exc)

    def _free_buffer(self) -> np.ndarray | None:
        while not self.stop.is_set():
            try:
                return self.free.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        return None

    def next(self) -> tuple[_Piece, np.ndarray, np.ndarray | None]:
        """The next piece loaded, its buffer and its local order; raises what the thread raised."""
        while True:
            try:
                item = self.ready.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not self.thread.is_alive() and self.ready.empty():
                    raise RuntimeError("the stream reader stopped before the data ran out") from None
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def release(self, buffer: np.ndarray) -> None:
        """Hand a buffer back to the thread: the consumer is done with the piece in it."""
        self.free.put(buffer)

    def close(self) -> None:
        """Stop the thread (it finishes the read it is in) and drop the buffers."""
        self.stop.set()
        self.thread.join(JOIN_SECONDS)
        for q in (self.free, self.ready):
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        self.pieces = []


class StreamPlacement(Placement):
    """Batches read from the file as training goes, two windows at a time.

    Attributes:
        cache_bytes: The bound on the window buffers (two windows of the training split, two pieces of the
            held-out split).
    """

    name = "stream"

    def __init__(self, train: Split, held: Split, device: torch.device, order: EpochOrder, *, cache_bytes: int) -> None:
        """Keep the splits' files open; nothing is read yet.

        Raises:
            DataUnavailable: a file behind the splits is gone.
        """
        super().__init__(train, held, device, order)
        self.cache_bytes = int(cache_bytes)
        self._check_present()

    def _check_present(self) -> None:
        for split in (self.train, self.held):
            if len(split) and not split.x.exists():
                raise DataUnavailable(
                    f"{split.x.where(0, len(split.x))}: the file is gone (data.placement = 'stream' reads it "
                    "while training)"
                )

    def epoch(self, windows: Sequence[Window], batch: int) -> Generator[Batch, None, None]:
        """Training batches in `batch_positions` order, read window by window by a thread."""
        self._check_present()
        if not windows:
            return
        order = permutation(list(windows))
        labels = np.ascontiguousarray(self.train.y)[order]
        cuts = [(first, min(len(order), first + batch)) for first in range(0, len(order) - 1, batch)]
        if not cuts:
            return
        pieces = [_Piece(len(w.order), self._window_load(w)) for w in windows]
        yield from self._batches(self.train, pieces, cuts, labels, batch)

    def held_out(self, batch: int) -> Generator[Batch, None, None]:
        """The held-out rows in order, read a piece of about ``cache_bytes / 2`` at a time by a thread."""
        if not self.n_held:
            return
        self._check_present()
        sample_bytes = max(1, int(np.prod(self.held.x.shape[1:], dtype=np.int64)) * self.held.x.memory_dtype.itemsize)
        rows = max(1, min(self.n_held, (self.cache_bytes // 2) // sample_bytes))
        pieces = [
            _Piece(min(self.n_held, first + rows) - first, self._rows_load(first, min(self.n_held, first + rows)))
            for first in range(0, self.n_held, rows)
        ]
        cuts = [(first, min(self.n_held, first + batch)) for first in range(0, self.n_held, batch)]
        yield from self._batches(self.held, pieces, cuts, np.ascontiguousarray(self.held.y), batch)

    def _window_load(self, window: Window) -> Load:
        """Reads a window's blocks (in file order) into a buffer; the local order maps its visit order there."""
        blocks = np.sort(window.blocks)
        x, rows_of = self.train.x, self.train.rows
        target = max(1, self.order.block_size * x.row_bytes)

        def load(buffer: np.ndarray, stop: threading.Event) -> np.ndarray | None:
            positions = []
            filled = 0
            for block in blocks.tolist():
                if stop.is_set():
                    return None
                block_positions = self.order.block_positions(block)
                count = len(block_positions)
                x.take(rows_of[block_positions], out=buffer[filled : filled + count], target_bytes=target)
                positions.append(block_positions)
                filled += count
            return np.searchsorted(np.concatenate(positions), window.order)

        return load

    def _rows_load(self, first: int, stop_at: int) -> Load:
        """Reads held-out positions ``first:stop_at`` into a buffer, in order."""
        x, rows = self.held.x, self.held.rows[first:stop_at]

        def load(buffer: np.ndarray, stop: threading.Event) -> np.ndarray | None:
            if not stop.is_set():
                x.take(rows, out=buffer[: len(rows)])
            return None

        return load

    def _batches(
        self, split: Split, pieces: list[_Piece], cuts: list[tuple[int, int]], labels: np.ndarray, batch: int
    ) -> Iterator[Batch]:
        """Gather the batches ``cuts`` of the visit sequence from the pieces as the reader loads them."""
        sample_shape, dtype = tuple(split.x.shape[1:]), split.x.memory_dtype
        staging = Staging(self.device, sample_shape, dtype, batch, labels)
        reader = _Reader(pieces, sample_shape, dtype)
        try:
            buffer: np.ndarray | None = None
            local: np.ndarray | None = None
            begin = end = 0
            for first, stop in cuts:
                x, y = staging.host(stop - first)
                y[...] = labels[first:stop]
                position = first
                while position < stop:
                    if position >= end:
                        if buffer is not None:
                            reader.release(buffer)
                            buffer = None
                        piece, buffer, local = reader.next()
                        begin, end = end, end + piece.count
                    assert buffer is not None
                    count = min(stop, end) - position
                    into = x[position - first : position - first + count]
                    at = position - begin
                    if local is None:
                        into[...] = buffer[at : at + count]
                    else:
                        np.take(buffer, local[at : at + count], axis=0, out=into)
                    position += count
                yield staging.send()
        finally:
            buffer = local = None
            reader.close()
            staging.close()
