"""`Placement`: batches of the training split and of a held-out split on the training device.

A placement hands out samples as stored in memory (`SampleArray.memory_dtype`: uint8 stays uint8), not
standardised: the trainer converts, standardises and augments each batch on the device.  Training batches
follow the `EpochOrder` windows the trainer draws at each epoch's start, the same in every placement, so a
candidate trains identically whichever placement holds its data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator, Sequence

import numpy as np
import torch

from menndl.data.order import EpochOrder, Window, permutation
from menndl.data.splits import Split

Batch = tuple[torch.Tensor, torch.Tensor]
Batches = Generator[Batch, None, None]


class Placement(ABC):
    """Batches of a training split and a held-out split.

    Attributes:
        name: ``device``, ``node`` or ``stream``.
        train: The split trained on.
        held: The split validated on (the validation split; the test split when retraining; may be empty).
        device: The training device: every batch is returned there.
        order: How training positions are grouped into blocks and windows.
    """

    name: str

    def __init__(self, train: Split, held: Split, device: torch.device, order: EpochOrder) -> None:
        self.train, self.held, self.device, self.order = train, held, device, order

    @property
    def n_train(self) -> int:
        """Samples in the training split."""
        return len(self.train)

    @property
    def n_held(self) -> int:
        """Samples in the held-out split."""
        return len(self.held)

    @staticmethod
    def batch_positions(windows: Sequence[Window], batch: int) -> Iterator[np.ndarray]:
        """The epoch's training batches as split positions: consecutive slices of the windows' orders joined.

        A final slice of fewer than two samples is dropped (batch norm needs two).
        """
        order = permutation(list(windows))
        for first in range(0, len(order) - 1, batch):
            yield order[first : first + batch]

    @abstractmethod
    def epoch(self, windows: Sequence[Window], batch: int) -> Generator[Batch, None, None]:
        """The epoch's training batches ``(x, y)`` on the device, in `batch_positions` order.

        Args:
            windows: ``self.order.windows(permute)``, drawn by the trainer at the epoch's start.
            batch: Samples per batch.

        The iterator may be closed early (the time budget); it then releases what it holds.
        """

    @abstractmethod
    def held_out(self, batch: int) -> Generator[Batch, None, None]:
        """The held-out split in order, ``batch`` samples at a time, on the device."""

    def close(self) -> None:
        """Release memory, files and shared segments held for this placement."""


def labels_on(split: Split, device: torch.device) -> torch.Tensor:
    """A split's labels on ``device``, as checked (int64 class labels, float32 targets; small: always resident)."""
    return torch.from_numpy(np.ascontiguousarray(split.y)).to(device)


def open_placement(
    name: str,
    train: Split,
    held: Split,
    device: torch.device,
    order: EpochOrder,
    *,
    cache_bytes: int,
    node_key: str = "",
) -> Placement:
    """The placement called ``name`` for these splits.

    Args:
        name: ``device``, ``node`` or ``stream``.
        train: The split trained on.
        held: The split validated on.
        device: The training device.
        order: `menndl.data.order.epoch_order` for the training split.
        cache_bytes: ``data.cache_bytes`` (the stream placement's bound).
        node_key: What names the node's shared copy (``node``): the same for every worker of the search on
            the same data, different for other data.

    Returns:
        The placement, its data in place.
    """
    if name == "device":
        from menndl.worker.placements.device import DevicePlacement

        return DevicePlacement(train, held, device, order)
    if name == "node":
        from menndl.worker.placements.node import NodePlacement

        return NodePlacement(train, held, device, order, node_key=node_key)
    if name == "stream":
        from menndl.worker.placements.stream import StreamPlacement

        return StreamPlacement(train, held, device, order, cache_bytes=cache_bytes)
    raise ValueError(f"unknown placement {name!r}")
