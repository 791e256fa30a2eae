"""A library writer that keeps nothing: to measure the master without the HDF5 cost (``simulate --no-library``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class NullWriter:
    """A library writer that keeps nothing: to measure the master without the HDF5 cost."""

    def __init__(self, path: str | Path = "<no library>") -> None:
        self.path = Path(path)
        self.records = 0

    def append(self, record: Mapping[str, Any]) -> None:
        """Count the record, store nothing."""
        self.records += 1

    def task_started(self, task: Mapping[str, Any]) -> None:
        """Nothing to journal."""

    def commit(self) -> None:
        """Nothing to write."""

    def tick(self) -> None:
        """Nothing to flush."""

    def offer_weights(self, eval_id: int, accuracy: float, arrays: Mapping[str, Any]) -> bool:
        """Keep no weights."""
        return False

    def set_pareto(self, ids: Sequence[int]) -> None:
        """Nothing to rewrite."""

    def set_session(self, stop_reason: str, search_seconds: float) -> None:
        """Nothing to note (a real writer keeps why the run ended and its search time)."""

    def close(self) -> None:
        """Nothing to close."""
