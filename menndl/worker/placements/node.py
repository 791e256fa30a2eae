"""`NodePlacement`: one copy of the splits per node in shared memory, mapped read-only by every worker there.

The first worker of the node to want the copy writes it (`menndl.data.shared_copy`), reading the splits
block by block straight into the shared segment; the others wait for it and map it.  Each batch is gathered
from the mapped rows by the epoch's order, so a worker holds one shared copy and a batch, never a private
copy of the data.  The last worker to close removes the segment.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np
import torch

from menndl.data.order import EpochOrder, Window
from menndl.data.shared_copy import Part, SharedCopy, clean_stale_segments, open_shared_copy
from menndl.data.splits import Split
from menndl.worker.placements.base import Batch, Placement
from menndl.worker.placements.staging import Staging


def _part(name: str, split: Split) -> Part:
    """The split's samples as a part of the shared copy, filled block by block from its file."""

    def fill(out: np.ndarray) -> None:
        if len(split):
            split.x.take(split.rows, out=out)

    return Part(name, (len(split), *split.x.shape[1:]), split.x.memory_dtype, fill)


class NodePlacement(Placement):
    """Batches gathered from the node's shared, read-only copy of the training and held-out samples.

    Attributes:
        copy: The shared copy (``copy.wrote``: whether this worker wrote it).
    """

    name = "node"

    def __init__(self, train: Split, held: Split, device: torch.device, order: EpochOrder, *, node_key: str) -> None:
        """Map the node's copy, writing it when this worker is the node's first.

        Args:
            train: The split trained on.
            held: The split validated on.
            device: The training device.
            order: The epoch order of the training split.
            node_key: Names the copy: the same for every worker of the search on the same data.

        Raises:
            UserError: no room in shared memory, or the segment holds other data.
            DataReadError, DataUnavailable: the samples could not be read while writing the copy.
        """
        super().__init__(train, held, device, order)
        clean_stale_segments()
        self.copy: SharedCopy = open_shared_copy(node_key, [_part("train", train), _part("held", held)])
        self.x_train, self.x_held = self.copy.arrays
        self.y_train = np.ascontiguousarray(train.y)
        self.y_held = np.ascontiguousarray(held.y)
        self._staging: dict[str, tuple[int, Staging]] = {}

    @property
    def wrote(self) -> bool:
        """Whether this worker wrote the node's copy."""
        return self.copy.wrote

    def _staging_for(self, kind: str, batch: int) -> Staging:
        """Staging for ``train`` or ``held`` batches of ``batch`` samples (kept across epochs: pinned buffers are
        costly; a new batch size replaces it, an iterator still running keeps the one it has)."""
        kept = self._staging.get(kind)
        if kept is None or kept[0] != batch:
            x, y = (self.x_train, self.y_train) if kind == "train" else (self.x_held, self.y_held)
            kept = self._staging[kind] = (batch, Staging(self.device, x.shape[1:], x.dtype, batch, y))
        return kept[1]

    def epoch(self, windows: Sequence[Window], batch: int) -> Generator[Batch, None, None]:
        """Training batches gathered from the shared copy in `batch_positions` order."""
        staging = self._staging_for("train", batch)
        for positions in self.batch_positions(windows, batch):
            x, y = staging.host(len(positions))
            np.take(self.x_train, positions, axis=0, out=x)
            np.take(self.y_train, positions, axis=0, out=y)
            yield staging.send()

    def held_out(self, batch: int) -> Generator[Batch, None, None]:
        """Held-out rows in order, copied out of the shared copy."""
        staging = self._staging_for("held", batch)
        for first in range(0, self.n_held, batch):
            stop = min(self.n_held, first + batch)
            x, y = staging.host(stop - first)
            x[...] = self.x_held[first:stop]
            y[...] = self.y_held[first:stop]
            yield staging.send()

    def close(self) -> None:
        """Unmap the copy (removing it when this is the node's last worker) and drop the staging buffers."""
        for _, staging in self._staging.values():
            staging.close()
        self._staging = {}
        empty = np.zeros((0, *self.x_train.shape[1:]), dtype=self.x_train.dtype)
        self.x_train = self.x_held = empty
        self.copy.close()
