"""Worker side: build an evaluator from the setup message (train, sleep or simulated), evaluate tasks.

Importing this package does not import torch; `menndl.worker.trainer` does.
"""

from __future__ import annotations

from menndl.worker.evaluator import EVALUATORS, Evaluator, build_evaluator
from menndl.worker.loop import ignore_stop_signals, run_worker, usable_cores, worker_main

__all__ = ["EVALUATORS", "Evaluator", "build_evaluator", "ignore_stop_signals", "run_worker", "usable_cores",
           "worker_main"]  # fmt: skip
