"""What a network learns to predict: the tasks, the objectives each one has, and the losses it trains with.

The one place these are defined: the data check (``data.task``, inferred from the labels when ``auto``),
the job's check of its objectives and its loss against the task, the worker's training and validation,
and the library's choice of the column that ranks a search (its *score*) all read these tables.  Torch
free: the master reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

TASKS = ("classification", "regression", "segmentation")
"""Values of ``data.task`` besides ``auto``."""

SCORES: dict[str, str] = {"classification": "accuracy", "regression": "r2", "segmentation": "miou"}
"""Task -> the validation metric (a library column, larger is better) that ranks its candidates, keeps their
weights, seeds later searches and stops them early: the task's *score*."""

TASK_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "regression": ("r2", "mse"),
    "segmentation": ("miou", "pixel_accuracy"),
}
"""Task -> the validation metrics a worker measures for it (the other objectives fit every task)."""

LOSSES: dict[str, tuple[str, ...]] = {
    "classification": ("cross_entropy",),
    "regression": ("mse", "huber"),
    "segmentation": ("cross_entropy", "cross_entropy_dice"),
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


def class_weights_for(setting: Sequence[float] | str, class_pixels: Sequence[int]) -> tuple[float, ...] | None:
    """The per-class loss weights ``training.class_weights`` asks for, for masks with ``class_pixels`` per class.

    ``()`` is none (None); ``"balanced"`` weighs each class by ``pixels / (classes * its pixels)``, as
    scikit-learn's ``compute_class_weight("balanced")`` does (a class with no training pixel gets 1); a
    list gives one weight per class.

    Raises:
        ValueError: a list whose length is not the class count.
    """
    if isinstance(setting, str):
        total, classes = sum(class_pixels), len(class_pixels)
        return tuple(total / (classes * n) if n else 1.0 for n in class_pixels)
    if not setting:
        return None
    if len(setting) != len(class_pixels):
        raise ValueError(f"training.class_weights has {len(setting)} weights but the masks have "
                         f"{len(class_pixels)} classes; expected one weight per class")  # fmt: skip
    return tuple(float(w) for w in setting)
