"""What a search can optimise, which way each goes, and how a library ranks by it.

The one place these are defined: the job's validation (`search.objectives`,
`library.seed_by`), the evolution's signs, Optuna's study directions and the
library's queries (`top --by`, the Pareto front) all read these tables.
"""

from __future__ import annotations

DIRECTIONS: dict[str, float] = {"accuracy": 1.0, "params": -1.0, "flops": -1.0, "train_seconds": -1.0}
"""Objective name (a library column) -> +1.0 when larger is better, -1.0 when smaller is."""

RANKINGS: dict[str, tuple[str, float]] = {
    "accuracy": ("accuracy", -1.0),
    "params": ("params", 1.0),
    "flops": ("flops", 1.0),
    "seconds": ("train_seconds", 1.0),
}
"""``--by`` / ``seed_by`` name -> (column, sign): best first is ascending ``sign * value``."""


def study_direction(name: str) -> str:
    """Optuna's name for the direction of objective ``name``: ``"maximize"`` or ``"minimize"``."""
    return "maximize" if DIRECTIONS[name] > 0 else "minimize"
