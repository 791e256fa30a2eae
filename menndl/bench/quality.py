"""Measures of a search's outcome: the anytime curve and the hypervolume over (accuracy, parameters).

Plain Python + numpy.  ``benchmarks/search_quality.py`` compares strategies with these.  The
hypervolume is taken in a fixed box so that runs, seeds and strategies compare: accuracy in
``[0, 1]`` (higher is better) against a size score ``1 - log10(params / min) / log10(max / min)``
in ``[0, 1]`` (smaller models score higher; ``min``/``max`` default to 100 and 1,000,000
parameters).  A point outside the box on the size axis counts as the box's edge (size score 0 or 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

SIZE_RANGE: tuple[float, float] = (1e2, 1e6)  # parameters that score 1 and 0 on the size axis


def size_score(params: float, size_range: tuple[float, float] = SIZE_RANGE) -> float:
    """``1 - log10(params / low) / log10(high / low)``, clipped to ``[0, 1]``: 1 for tiny models, 0 for huge ones."""
    low, high = size_range
    if not 0 < low < high:
        raise ValueError(f"size_range: expected 0 < low < high, got {size_range}")
    if params <= low:
        return 1.0
    return max(0.0, 1.0 - math.log10(params / low) / math.log10(high / low))


def hypervolume(points: Iterable[tuple[float, float]], size_range: tuple[float, float] = SIZE_RANGE) -> float:
    """Area of the unit box dominated by ``(accuracy, params)`` points (both axes scored in ``[0, 1]``).

    Args:
        points: (validation accuracy in [0, 1], parameter count) of each successful evaluation;
            NaN accuracies are skipped.
        size_range: parameter counts that score 1 and 0 on the size axis.

    Returns:
        The dominated area, in ``[0, 1]``: 0 for no points; 1 only for a perfect, tiny model.
    """
    scored = sorted(
        ((min(max(float(a), 0.0), 1.0), size_score(float(p), size_range)) for a, p in points if not math.isnan(a)),
        key=lambda point: (-point[0], -point[1]),
    )
    area, best_size = 0.0, 0.0
    for accuracy, size in scored:  # by accuracy, highest first: each point adds the strip its size score wins
        if size > best_size:
            area += accuracy * (size - best_size)
            best_size = size
    return area


LOG_RANGES: dict[str, tuple[float, float]] = {
    "params": SIZE_RANGE,
    "flops": (1e3, 1e9),
    "train_seconds": (0.1, 100.0),
    "latency": (1e-5, 1e-2),
    "batch_latency": (1e-7, 1e-3),
    "memory": (1e4, 1e10),
    "train_memory": (1e4, 1e10),
    "energy": (1e-6, 1.0),
    "train_energy": (1e-6, 1.0),
}
"""The fixed box of the many-objective hypervolume: each minimised objective scored on a log scale from its low
(score 0, best) to its high (score 1); accuracy scores ``1 - accuracy``."""


def objective_scores(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of objective ``name`` scored in ``[0, 1]``, 0 best (see `LOG_RANGES`)."""
    values = np.asarray(values, dtype=float)
    if name == "accuracy":
        return np.clip(1.0 - values, 0.0, 1.0)
    low, high = LOG_RANGES[name]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.log10(np.maximum(values, 1e-300) / low) / math.log10(high / low), 0.0, 1.0)


def hypervolume_nd(columns: dict[str, np.ndarray]) -> float:
    """Hypervolume of any number of objectives in the unit box (`objective_scores`, reference point all ones).

    Args:
        columns: objective name -> its values, one per successful evaluation (rows with a NaN are left out).

    Returns:
        The dominated volume in ``[0, 1]`` (exact, by moocore, which DEAP's indicators use).
    """
    import moocore

    scored = np.stack([objective_scores(name, values) for name, values in columns.items()], axis=1)
    scored = scored[np.all(np.isfinite(scored), axis=1)]
    if not len(scored):
        return 0.0
    return float(moocore.hypervolume(scored, ref=np.ones(scored.shape[1])))


def anytime_best(accuracies: Sequence[float]) -> list[float]:
    """Best accuracy after each evaluation (NaN, e.g. a failure, counts as no improvement; NaN until a success)."""
    values = np.asarray(accuracies, dtype=float)
    filled = np.where(np.isnan(values), -np.inf, values)
    best = np.maximum.accumulate(filled) if len(filled) else filled
    return [math.nan if math.isinf(v) else float(v) for v in best]
