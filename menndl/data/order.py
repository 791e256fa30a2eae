"""The order training samples are visited in: shuffled blocks, shuffled again within a window of blocks.

Every placement visits the training split in the same order for the same draws, so the three placements
train a candidate identically.  The order is built for the placement that reads from the file:
the split's positions are cut into blocks of consecutive positions (consecutive rows of the file, read in
one go), the blocks are shuffled, and the positions of each window of ``window`` blocks (what the reader
holds at once) are shuffled together.  When one window holds the whole split it is a plain permutation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from menndl.data.arrays import READ_BYTES


@dataclass(frozen=True)
class Window:
    """One window of an epoch: the blocks read together, and the order their positions are visited in.

    Attributes:
        blocks: Block numbers (block ``b`` holds split positions ``b * block_size`` onwards).
        order: Split positions, a permutation of the positions of ``blocks``.
    """

    blocks: np.ndarray
    order: np.ndarray


@dataclass(frozen=True)
class EpochOrder:
    """How the training split's positions are grouped: the same for every placement.

    Attributes:
        size: Positions in the split.
        block_size: Positions per block.
        window_blocks: Blocks per window.
    """

    size: int
    block_size: int
    window_blocks: int

    def __post_init__(self) -> None:
        if self.size < 0 or self.block_size < 1 or self.window_blocks < 1:
            raise ValueError(f"bad epoch order {self}")

    @property
    def blocks(self) -> int:
        """Number of blocks."""
        return -(-self.size // self.block_size)

    def block_positions(self, block: int) -> np.ndarray:
        """The split positions of block ``block``."""
        return np.arange(block * self.block_size, min(self.size, (block + 1) * self.block_size), dtype=np.int64)

    def windows(self, permute: Callable[[int], np.ndarray]) -> list[Window]:
        """An epoch's windows in the order they are visited.

        Args:
            permute: ``permute(k)`` is a random permutation of ``range(k)``: the trainer passes torch's
                ``randperm`` on its global generator (seeded with the candidate's seed), so an epoch of one
                window is exactly ``randperm(size)``, as a plain resident loop would draw it.

        Returns:
            Windows whose orders together are a permutation of ``range(size)``.
        """
        if self.blocks <= self.window_blocks:  # one window: a plain permutation, no block shuffle drawn
            return [Window(np.arange(self.blocks, dtype=np.int64), np.asarray(permute(self.size), dtype=np.int64))]
        blocks = np.asarray(permute(self.blocks), dtype=np.int64)
        out = []
        for first in range(0, len(blocks), self.window_blocks):
            chosen = blocks[first : first + self.window_blocks]
            positions = np.concatenate([self.block_positions(int(b)) for b in chosen])
            out.append(Window(chosen, positions[np.asarray(permute(len(positions)), dtype=np.int64)]))
        return out


def seeded_permute(seed: int, epoch: int) -> Callable[[int], np.ndarray]:
    """A ``permute`` for `EpochOrder.windows` from numpy, for code without torch (tests, benchmarks)."""
    rng = np.random.default_rng([int(seed) % 2**63, int(epoch)])
    return rng.permutation


def permutation(windows: list[Window]) -> np.ndarray:
    """The whole epoch's order: the windows' orders one after another."""
    return np.concatenate([w.order for w in windows]) if windows else np.zeros(0, dtype=np.int64)


def epoch_order(size: int, sample_bytes: int, cache_bytes: int, read_bytes: int = READ_BYTES) -> EpochOrder:
    """The grouping every placement uses for a training split.

    Args:
        size: Samples in the split.
        sample_bytes: Bytes of one sample in memory.
        cache_bytes: ``data.cache_bytes``: a streaming worker holds two windows, so a window is half of it.
        read_bytes: Bytes per block (one read).

    Returns:
        Blocks of about ``read_bytes``, windows of about ``cache_bytes / 2`` (at least one block each).
    """
    sample_bytes = max(1, sample_bytes)
    block = max(1, min(max(1, size), read_bytes // sample_bytes))
    window = max(1, (cache_bytes // 2) // (block * sample_bytes))
    return EpochOrder(size, block, window)
