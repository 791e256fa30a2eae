"""What a network's output is trained and validated against, per task: class labels or regression targets.

A `Targets` turns a batch's labels as stored into what the loss compares the output with, gives the
training loss, and sums a held-out split's metrics batch by batch (`Validation`); the trainer knows no
task.  Regression targets are standardised with the training split's mean and standard deviation per
target: the network predicts standardised values, and the metrics (``mse``, ``r2``) are in the data's own
units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from menndl.tasks import loss_for, task_score

HUBER_DELTA = 1.0  # in standard deviations of the target


class Validation:
    """Sums of one held-out pass; `add` each batch, then `metrics`."""

    def add(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: the network's float32 output and the labels as stored."""
        raise NotImplementedError

    def metrics(self) -> tuple[dict[str, float], float]:
        """``(metrics by objective name, mean loss)`` over what was added (NaNs when nothing was)."""
        raise NotImplementedError


class Targets:
    """The task's loss and metrics (see the module docstring).

    Attributes:
        score: The metric that ranks candidates (`menndl.tasks.SCORES`).
    """

    score = "accuracy"

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        """A batch's labels as the loss takes them."""
        return target

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch (``target`` from `prepare`)."""
        raise NotImplementedError

    def validation(self) -> Validation:
        """A fresh held-out pass."""
        raise NotImplementedError


class ClassLabels(Targets):
    """Classification: cross entropy, validation accuracy."""

    def __init__(self) -> None:
        self._loss = nn.CrossEntropyLoss()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross entropy of the logits."""
        return self._loss(output, target)

    def validation(self) -> Validation:
        """Counts correct predictions and sums the cross entropy."""
        return _ClassValidation()


class _ClassValidation(Validation):
    def __init__(self) -> None:
        self.correct: torch.Tensor | int = 0
        self.loss: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, output: torch.Tensor, target: torch.Tensor) -> None:
        self.loss = self.loss + nn.functional.cross_entropy(output, target, reduction="sum")
        self.correct = self.correct + (output.argmax(dim=1) == target).sum()
        self.count += int(target.shape[0])

    def metrics(self) -> tuple[dict[str, float], float]:
        if not self.count:
            return {"accuracy": math.nan}, math.nan
        return {"accuracy": float(self.correct) / self.count}, float(self.loss) / self.count


class RegressionTargets(Targets):
    """Regression: MSE (or Huber) on standardised targets; validation ``r2`` and ``mse``.

    ``r2`` is the coefficient of determination of each target on the held-out split (1 - residual sum of
    squares / total sum of squares about the split's own mean), averaged over the targets as
    scikit-learn's ``r2_score`` does by default; a constant target counts 1 when predicted exactly, else 0.
    ``mse`` is the mean squared error over samples and targets, in the targets' units.
    """

    score = task_score("regression")

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device, loss: str = "auto") -> None:
        """Standardise with the training split's ``mean`` and ``std`` per target; ``loss`` is ``training.loss``."""
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=device)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=device)
        self.kind = loss_for("regression", loss)

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        """Targets ``(B,)`` or ``(B, T)`` as standardised ``(B, T)`` float32."""
        return (target.reshape(target.shape[0], -1).float() - self.mean) / self.std

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error (or Huber with delta `HUBER_DELTA`) of the standardised targets."""
        output = output.float()
        if self.kind == "huber":
            return nn.functional.huber_loss(output, target, delta=HUBER_DELTA)
        return nn.functional.mse_loss(output, target)

    def validation(self) -> Validation:
        """Sums squared errors and the targets' moments per target, in float64."""
        return _RegressionValidation(self)


class _RegressionValidation(Validation):
    def __init__(self, targets: RegressionTargets) -> None:
        self.targets = targets
        self.count = 0
        self.sums: list[torch.Tensor] = []  # loss, squared error per target, target sum, target square sum

    def add(self, output: torch.Tensor, target: torch.Tensor) -> None:
        standard = self.targets.prepare(target)
        loss = self.targets.loss(output, standard) * standard.numel()
        y = target.reshape(target.shape[0], -1).double()
        predicted = output.double() * self.targets.std.double() + self.targets.mean.double()
        parts = [loss.double().reshape(1), ((predicted - y) ** 2).sum(0), y.sum(0), (y * y).sum(0)]
        self.sums = parts if not self.sums else [a + b for a, b in zip(self.sums, parts)]
        self.count += int(target.shape[0])

    def metrics(self) -> tuple[dict[str, float], float]:
        if not self.count:
            return {"r2": math.nan, "mse": math.nan}, math.nan
        loss, error, total, squares = (part.cpu() for part in self.sums)
        n = self.count
        spread = (squares - total * total / n).clamp(min=0.0)
        exact = error <= 1e-12 * torch.clamp(squares, min=1.0)
        r2 = torch.where(spread > 0, 1.0 - error / torch.where(spread > 0, spread, 1.0), exact.double())
        targets = error.numel()
        return {"r2": float(r2.mean()), "mse": float(error.sum()) / (n * targets)}, float(loss) / (n * targets)


def targets_for(task: str, device: torch.device, *, mean: Sequence[float] = (), std: Sequence[float] = (),
                loss: str = "auto") -> Targets:  # fmt: skip
    """The `Targets` of ``task`` on ``device`` (``mean`` and ``std`` per regression target).

    Raises:
        ValueError: ``loss`` does not fit ``task``.
    """
    if task == "regression":
        return RegressionTargets(mean, std, device, loss)
    loss_for(task, loss)
    return ClassLabels()
