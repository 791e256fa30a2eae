"""`DevicePlacement`: each worker holds its splits, on the GPU when they fit in half its free memory."""

from __future__ import annotations

from collections.abc import Generator, Sequence

import torch

from menndl.data.order import EpochOrder, Window, permutation
from menndl.data.splits import Split
from menndl.worker.placements.base import Batch, Placement, labels_on
from menndl.worker.placements.staging import torch_dtype

DEVICE_MEMORY_SHARE = 0.5  # the data may take at most this share of the GPU's free memory


class DevicePlacement(Placement):
    """The splits read once (block by block: no second copy) and kept resident.

    On a GPU they live on the device when they fit in `DEVICE_MEMORY_SHARE` of its free memory, and batches
    are drawn by indexing them there; otherwise they stay in pinned host memory and each batch is copied
    asynchronously.
    """

    name = "device"

    def __init__(self, train: Split, held: Split, device: torch.device, order: EpochOrder) -> None:
        super().__init__(train, held, device, order)
        nbytes = (len(train) + len(held)) * max(1, train.x.row_bytes)
        self.home = device if fits_on(device, nbytes) else torch.device("cpu")
        pin = device.type == "cuda" and self.home.type == "cpu"
        self.x_train = self._resident(train, pin)
        self.x_held = self._resident(held, pin)
        self.y_train = labels_on(train, self.home)
        self.y_held = labels_on(held, self.home)

    def _resident(self, split: Split, pin: bool) -> torch.Tensor:
        """The split's samples read block by block into one (pinned) host tensor, then moved home."""
        shape = (len(split), *split.x.shape[1:])
        host = torch.empty(shape, dtype=torch_dtype(split.x.memory_dtype), pin_memory=pin)
        if len(split):
            split.x.take(split.rows, out=host.numpy())
        return host if self.home.type == "cpu" else host.to(self.home)

    def epoch(self, windows: Sequence[Window], batch: int) -> Generator[Batch, None, None]:
        """Training batches drawn by index where the data lives, copied to the device when that is elsewhere."""
        order = torch.from_numpy(permutation(list(windows))).to(self.home)
        for first in range(0, len(order) - 1, batch):
            index = order[first : first + batch]
            yield self._to_device(self.x_train[index], self.y_train[index])

    def held_out(self, batch: int) -> Generator[Batch, None, None]:
        """Held-out rows in order."""
        for first in range(0, self.n_held, batch):
            yield self._to_device(self.x_held[first : first + batch], self.y_held[first : first + batch])

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        if x.device == self.device:
            return x, y
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device), y.to(self.device)

    def close(self) -> None:
        """Drop the resident tensors."""
        empty = torch.empty(0)
        self.x_train = self.x_held = self.y_train = self.y_held = empty


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether ``nbytes`` of data fit in the device's share for resident data (always on the CPU)."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_SHARE * free
