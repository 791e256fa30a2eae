"""The figures of a finished search's scaling, shared by ``menndl simulate`` and ``menndl bench scheduler``."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from menndl.master.search import SearchResult


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
