"""`Staging`: the host buffers a batch is gathered into, and its trip to the training device.

On the CPU every batch is a fresh array handed to torch as it is.  On a GPU a batch is gathered into one of
two pinned buffers and copied with ``non_blocking=True``; before a buffer is gathered into again the copy
that read it last is waited for (a CUDA event), so the host fills one buffer while the other is in flight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from menndl.worker.placements.base import Batch

SLOTS = 2


def torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype of a numpy dtype."""
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


class Staging:
    """Where batches of up to ``rows`` samples are assembled on the host before they go to ``device``."""

    def __init__(
        self,
        device: torch.device,
        sample_shape: tuple[int, ...],
        dtype: np.dtype,
        rows: int,
        labels: np.ndarray | None = None,
    ) -> None:
        """Pinned buffers on a GPU (allocated here), nothing on the CPU.

        ``labels`` (of the split, or any array of its label shape and dtype) sizes the label buffers: one
        int64 class label per sample when None.
        """
        self.device, self.sample_shape, self.dtype = device, tuple(sample_shape), np.dtype(dtype)
        self.label_shape = tuple(labels.shape[1:]) if labels is not None else ()
        self.label_dtype = labels.dtype if labels is not None else np.dtype(np.int64)
        self.cuda = device.type == "cuda"
        self._slots: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._events: list[Any] = [None] * SLOTS
        self._next = 0
        if self.cuda:
            rows = max(1, rows)
            for _ in range(SLOTS):
                x = torch.empty((rows, *self.sample_shape), dtype=torch_dtype(self.dtype), pin_memory=True)
                y = torch.empty((rows, *self.label_shape), dtype=torch_dtype(self.label_dtype), pin_memory=True)
                self._slots.append((x, y))
        self._pending: tuple[int, int] | None = None
        self._host: tuple[np.ndarray, np.ndarray] | None = None

    def host(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Host arrays ``(x, y)`` of ``count`` samples to gather the next batch into; then call `send`."""
        if not self.cuda:
            x = np.empty((count, *self.sample_shape), dtype=self.dtype)
            y = np.empty((count, *self.label_shape), dtype=self.label_dtype)
            self._pending = (-1, count)
            self._host = (x, y)
            return x, y
        slot = self._next
        event = self._events[slot]
        if event is not None:
            event.synchronize()  # the copy that last read this buffer is done
        x_pinned, y_pinned = self._slots[slot]
        if count > len(x_pinned):
            raise ValueError(f"a batch of {count} does not fit the staging buffer of {len(x_pinned)}")
        self._pending = (slot, count)
        return x_pinned[:count].numpy(), y_pinned[:count].numpy()

    def send(self) -> Batch:
        """The batch just gathered, on the device."""
        if self._pending is None:
            raise RuntimeError("send() without host()")
        slot, count = self._pending
        self._pending = None
        if not self.cuda:
            assert self._host is not None
            x, y = self._host
            self._host = None
            return torch.from_numpy(x), torch.from_numpy(y)
        x_pinned, y_pinned = self._slots[slot]
        x_device = x_pinned[:count].to(self.device, non_blocking=True)
        y_device = y_pinned[:count].to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self._events[slot] = event
        self._next = (slot + 1) % SLOTS
        return x_device, y_device

    def close(self) -> None:
        """Wait for the copies in flight and drop the pinned buffers."""
        for event in self._events:
            if event is not None:
                event.synchronize()
        self._events = [None] * SLOTS
        self._slots = []
