"""Early stopping of hopeless candidates: the master's side (plain Python, no torch).

Workers validate each candidate at fixed fractions of its training budget
(the *checkpoints*, e.g. 25% and 50%) and report those accuracies with the
result.  The master keeps, per checkpoint, the sorted accuracies it has seen
there and puts a threshold (a quantile, the median by default) into each
task; a worker stops a candidate whose accuracy at a checkpoint is below it
and reports ``stopped-early`` with the partial accuracy.  This is the median
stopping rule (Golovin et al., "Google Vizier", 2017) with asynchronous
workers: each task carries the thresholds known when it was sent.

Cost per result: one ``bisect.insort`` per checkpoint; per task: one list index.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class EarlyStopping:
    """Per-checkpoint accuracy history and the stop thresholds derived from it."""

    def __init__(self, fractions: Sequence[float], quantile: float = 0.5, min_results: int = 8) -> None:
        """Set up an empty history.

        Args:
            fractions: the checkpoints, as fractions of the training budget in (0, 1).
            quantile: candidates below this quantile of the accuracies seen at a
                checkpoint are stopped (0.5: the median).
            min_results: no threshold at a checkpoint before this many accuracies.

        Raises:
            ValueError: a fraction outside (0, 1), a quantile outside [0, 1], or min_results < 1.
        """
        if any(not 0.0 < f < 1.0 for f in fractions):
            raise ValueError(f"early-stopping fractions must be in (0, 1), got {list(fractions)}")
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"early-stopping quantile must be in [0, 1], got {quantile}")
        if min_results < 1:
            raise ValueError(f"early-stopping min_results must be >= 1, got {min_results}")
        self.fractions = tuple(sorted(set(float(f) for f in fractions)))
        self.quantile = quantile
        self.min_results = min_results
        self._seen: dict[float, list[float]] = {f: [] for f in self.fractions}

    def observe(self, checkpoints: Iterable[Sequence[float]] | None) -> None:
        """Add a result's ``checkpoints`` (``[[fraction, accuracy], ...]``) to the history.

        Fractions the master does not use and non-finite accuracies are ignored.
        """
        if not isinstance(checkpoints, (list, tuple)):
            return
        for entry in checkpoints:
            if not isinstance(entry, (list, tuple)):
                continue
            try:
                fraction, accuracy = float(entry[0]), float(entry[1])
            except (TypeError, ValueError, IndexError):
                continue
            seen = self._seen.get(fraction)
            if seen is not None and math.isfinite(accuracy):
                bisect.insort(seen, accuracy)

    def restore(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Refill the history from library rows (their ``checkpoints`` field, JSON text or a list)."""
        import json

        for record in records:
            value = record.get("checkpoints")
            if isinstance(value, str):
                try:
                    value = json.loads(value) if value else None
                except ValueError:
                    continue
            self.observe(value)

    def threshold(self, fraction: float) -> float | None:
        """The accuracy below which a candidate stops at ``fraction``; None while too little is known."""
        seen = self._seen.get(fraction)
        if not seen or len(seen) < self.min_results:
            return None
        position = min(len(seen) - 1, max(0, math.ceil(self.quantile * len(seen)) - 1))
        return seen[position]

    def thresholds(self) -> list[list[float]]:
        """What a task carries: ``[[fraction, threshold], ...]`` for every checkpoint with enough history."""
        pairs = []
        for fraction in self.fractions:
            value = self.threshold(fraction)
            if value is not None:
                pairs.append([fraction, value])
        return pairs

    def counts(self) -> dict[float, int]:
        """How many accuracies each checkpoint has seen."""
        return {fraction: len(seen) for fraction, seen in self._seen.items()}
