"""Worker side: decode genomes, train them, report metrics.

Importing this package does not import torch; `menndl.worker.trainer` does.
"""

from __future__ import annotations

from menndl.worker.loop import ignore_stop_signals, run_worker, usable_cores

__all__ = ["ignore_stop_signals", "run_worker", "usable_cores"]
