"""What a search can optimise, which way each goes, what a worker must measure for it, and how a library ranks by it.

The one place these are defined: the job's validation (`search.objectives`,
the ``max_*`` constraints, `library.seed_by`), the evolution's signs, Optuna's
study directions, the worker's measurements and the library's queries
(`top --by`, the Pareto front, plots) all read these tables.  Each objective
is a library column of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable

DIRECTIONS: dict[str, float] = {
    "accuracy": 1.0,
    "r2": 1.0,
    "mse": -1.0,
    "miou": 1.0,
    "pixel_accuracy": 1.0,
    "params": -1.0,
    "flops": -1.0,
    "train_seconds": -1.0,
    "latency": -1.0,
    "batch_latency": -1.0,
    "memory": -1.0,
    "train_memory": -1.0,
    "energy": -1.0,
    "train_energy": -1.0,
}
"""Objective name (a library column) -> +1.0 when larger is better, -1.0 when smaller is."""

DESCRIPTIONS: dict[str, str] = {
    "accuracy": "validation accuracy (fraction in [0, 1]; classification)",
    "r2": "validation coefficient of determination R², averaged over the targets (regression; 1 is perfect)",
    "mse": "validation mean squared error over samples and targets, in the targets' units (regression)",
    "miou": "validation mean intersection over union of the classes present (segmentation; 1 is perfect)",
    "pixel_accuracy": "validation fraction of pixels labelled right, ignored pixels left out (segmentation)",
    "params": "number of trainable parameters",
    "flops": "forward-pass floating point operations for one sample",
    "train_seconds": "wall-clock training time in seconds",
    "latency": "inference seconds per sample at batch 1: the median of timed runs after a warm-up, on the worker's "
    "device, in measure.precision",
    "batch_latency": "inference seconds per sample at measure.batch_size, measured as latency is",
    "memory": "peak device memory of inference at measure.batch_size, bytes (the CUDA allocator's peak on a GPU, "
    "torch's memory tracker on a CPU)",
    "train_memory": "peak device memory of one training step at the genome's batch size, bytes (measured as memory is)",
    "energy": "joules per inference sample at measure.batch_size (NVML on an NVIDIA GPU, RAPL on a CPU)",
    "train_energy": "joules per training sample over the candidate's training (NVML or RAPL)",
}
"""One line per objective: what its column holds."""

MEASUREMENTS: dict[str, str] = {
    "latency": "latency",
    "batch_latency": "latency",
    "memory": "memory",
    "train_memory": "memory",
    "energy": "energy",
    "train_energy": "energy",
}
"""Objective -> the measurement a worker makes for it (the others come from every training)."""

CONSTRAINTS: dict[str, str] = {"max_latency": "latency", "max_memory": "memory", "max_energy": "energy"}
"""``search.max_*`` limit measured on the worker -> the objective (column) it bounds."""

RANKINGS: dict[str, tuple[str, float]] = {
    "seconds": ("train_seconds", 1.0),
    **{name: (name, -direction) for name, direction in DIRECTIONS.items()},
}
"""``--by`` / ``seed_by`` name -> (column, sign): best first is ascending ``sign * value``."""


def study_direction(name: str) -> str:
    """Optuna's name for the direction of objective ``name``: ``"maximize"`` or ``"minimize"``."""
    return "maximize" if DIRECTIONS[name] > 0 else "minimize"


def measurements_needed(names: Iterable[str]) -> list[str]:
    """The measurements (``latency``, ``memory``, ``energy``) that objectives or limited columns ``names`` need."""
    kinds = {MEASUREMENTS[name] for name in names if name in MEASUREMENTS}
    return [kind for kind in ("latency", "memory", "energy") if kind in kinds]
