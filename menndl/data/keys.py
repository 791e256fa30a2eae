"""`DataKeys`: where a dataset file keeps its arrays (no imports beyond the standard library)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataKeys:
    """Where the arrays are in a dataset file: HDF5 dataset paths, or ``.npy`` file stems.

    Attributes:
        x: Samples.
        y: Labels of ``x``.
        x_val: Given validation samples (used when present).
        y_val: Their labels.
        x_test: Given test samples (used when present).
        y_test: Their labels.
    """

    x: str = "x"
    y: str = "y"
    x_val: str = "x_val"
    y_val: str = "y_val"
    x_test: str = "x_test"
    y_test: str = "y_test"

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """``(samples key, labels key)`` of the training, validation and test arrays."""
        return (self.x, self.y), (self.x_val, self.y_val), (self.x_test, self.y_test)
