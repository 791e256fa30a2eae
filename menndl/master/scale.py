"""Figures of a search's scaling, shared by ``menndl simulate`` and ``menndl bench scheduler``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from menndl.master.search import SearchResult


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


def search_figures(result: SearchResult, workers: int) -> dict[str, Any]:
    """Utilization, master cost and throughput of a finished search (``nan`` where undefined)."""
    evaluations = max(result.evaluations, 1)
    elapsed = result.elapsed if result.elapsed > 0 else math.nan
    busy = sum(result.worker_busy.values())
    return {
        "workers": workers,
        "evaluations": result.evaluations,
        "utilization": result.utilization,
        "master_seconds_per_result": result.master_seconds / evaluations,
        "master_load": result.master_seconds / elapsed,
        "longest_master_turn_seconds": result.longest_turn,  # e.g. an HDF5 batch written in the loop
        "master_turns_over_10ms": result.stalls,
        "results_per_second": result.evaluations / elapsed,
        "time_to_budget": result.elapsed,
        "worker_busy_seconds": busy,
        "timeouts": result.timeouts,
        "stop_reason": result.stop_reason,
    }


def print_figures(figures: Mapping[str, Any], as_json: bool) -> None:
    """One JSON object, or aligned ``name: value`` lines."""
    if as_json:
        print(json.dumps(figures, default=lambda value: None if value is None else str(value)))
        return
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown}")
