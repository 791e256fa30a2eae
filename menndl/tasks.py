"""What a network learns to predict: the tasks, the objectives each one has, and the losses it trains with.

The one place these are defined: the data check (``data.task``, inferred from the labels when ``auto``),
the job's check of its objectives and its loss against the task, the worker's training and validation,
and the library's choice of the column that ranks a search (its *score*) all read these tables.  Torch
free: the master reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

TASKS = ("classification", "regression")
"""Values of ``data.task`` besides ``auto``."""

SCORES: dict[str, str] = {"classification": "accuracy", "regression": "r2"}
"""Task -> the validation metric (a library column, larger is better) that ranks its candidates, keeps their
weights, seeds later searches and stops them early: the task's *score*."""

TASK_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "regression": ("r2", "mse"),
}
"""Task -> the validation metrics a worker measures for it (the other objectives fit every task)."""

LOSSES: dict[str, tuple[str, ...]] = {
    "classification": ("cross_entropy",),
    "regression": ("mse", "huber"),
}
"""Task -> the training losses it accepts; the first is ``training.loss = "auto"``."""


def task_score(task: str) -> str:
    """The column that ranks candidates of ``task`` (``accuracy`` for classification, ``r2`` for regression)."""
    return SCORES.get(task, "accuracy")


def foreign_objective(task: str, names: Sequence[str]) -> str | None:
    """The first of ``names`` that is a validation metric of another task than ``task`` (None when all fit)."""
    own = TASK_OBJECTIVES[task]
    others = {name for other, metrics in TASK_OBJECTIVES.items() if other != task for name in metrics}
    return next((name for name in names if name in others and name not in own), None)


def loss_for(task: str, loss: str) -> str:
    """The loss ``training.loss`` names for ``task`` (its default for ``auto``).

    Raises:
        ValueError: ``loss`` does not fit ``task`` (the message names the losses that do).
    """
    accepted = LOSSES[task]
    if loss == "auto":
        return accepted[0]
    if loss not in accepted:
        raise ValueError(f"training.loss = {loss!r} does not fit a {task} task; expected auto or {', '.join(accepted)}")
    return loss
