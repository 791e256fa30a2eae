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


def anytime_best(accuracies: Sequence[float]) -> list[float]:
    """Best accuracy after each evaluation (NaN, e.g. a failure, counts as no improvement; NaN until a success)."""
    values = np.asarray(accuracies, dtype=float)
    filled = np.where(np.isnan(values), -np.inf, values)
    best = np.maximum.accumulate(filled) if len(filled) else filled
    return [math.nan if math.isinf(v) else float(v) for v in best]
