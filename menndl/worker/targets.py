"""What a network's output is trained and validated against, per task: class labels, regression targets or
segmentation masks.

A `Targets` turns a batch's labels as stored into what the loss compares the output with, gives the
training loss, and sums a held-out split's metrics batch by batch (`Validation`); the trainer knows no
task.  Regression targets are standardised with the training split's mean and standard deviation per
target: the network predicts standardised values, and the metrics (``mse``, ``r2``) are in the data's own
units.  Segmentation masks hold one integer class per pixel (1, 2 or 3 spatial axes, an optional ignore
label): the network predicts per-pixel logits, trained with a per-pixel cross entropy (and optionally a soft
Dice term) and validated by the mean intersection over union (``miou``) and the pixel accuracy, both from
a confusion matrix summed over the whole held-out split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from menndl.tasks import loss_for, task_score

HUBER_DELTA = 1.0  # in standard deviations of the target
DICE_SMOOTHING = 1.0  # eps of the soft Dice term: (2 * intersection + eps) / (predicted + true + eps)


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


class SegmentationMasks(Targets):
    """Semantic segmentation: per-pixel cross entropy (optionally plus soft Dice); validation ``miou`` and
    ``pixel_accuracy``.

    The network's output is logits ``(B, K, *spatial)`` with 1, 2 or 3 spatial axes; the masks as stored are
    integers ``(B, *spatial)`` of any integer dtype, each pixel a class in ``0 .. K - 1`` or ``ignore_index``.
    Ignored pixels count in neither the loss nor the metrics.

    The cross entropy is the mean over the batch's non-ignored pixels, weighted by ``class_weights`` of each
    pixel's true class as `torch.nn.functional.cross_entropy` weighs it (sum of ``w[y] * nll`` over sum of
    ``w[y]``).  ``cross_entropy_dice`` adds, with weight 1, the soft Dice term ``1 - mean_k (2 * sum(p_k * g_k)
    + eps) / (sum(p_k) + sum(g_k) + eps)``, ``p`` the softmax probabilities, ``g`` the one-hot masks, the sums
    over the batch's non-ignored pixels, ``eps`` = `DICE_SMOOTHING`, without class weights.  Everything is
    computed in float32 whatever the output's precision; a batch whose every pixel is ignored has loss 0 (with
    a zero gradient).

    ``miou`` is the mean, over the classes that occur in the held-out split's masks or predictions, of
    ``IoU_k = TP_k / (TP_k + FP_k + FN_k)`` (classes absent from both are left out, as torchmetrics and
    mmsegmentation do; so is ``ignore_index`` when it is a class index, as torchmetrics does), and
    ``pixel_accuracy`` the share of non-ignored pixels whose predicted class (the logits' argmax) is right.
    The validation loss is the training loss over the whole split at once (the Dice term from sums over the
    split).
    """

    score = task_score("segmentation")

    def __init__(
        self,
        num_classes: int,
        device: torch.device,
        loss: str = "auto",
        ignore_index: int | None = None,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        """``num_classes`` classes K, on ``device``; ``loss`` is ``training.loss``.

        Args:
            num_classes: Number of classes K (the output's channels), at least 1.
            device: Where the output and the masks are.
            loss: ``auto``, ``cross_entropy`` or ``cross_entropy_dice``.
            ignore_index: Mask value of the pixels to ignore (None: none is).
            class_weights: K non-negative weights of the cross entropy per true class (None: all 1).

        Raises:
            ValueError: ``loss`` does not fit segmentation, ``num_classes`` is below 1, or ``class_weights``
                are not K finite non-negative numbers with a positive sum.
        """
        self.kind = loss_for("segmentation", loss)
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"a segmentation task needs at least 1 class, got num_classes = {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.weight: torch.Tensor | None = None
        if class_weights is not None:
            weights = [float(w) for w in class_weights]
            if len(weights) != self.num_classes:
                raise ValueError(f"class_weights has {len(weights)} entries for {self.num_classes} classes")
            if not all(math.isfinite(w) and w >= 0.0 for w in weights) or not sum(weights) > 0.0:
                raise ValueError(f"class_weights must be finite, non-negative and not all 0, got {weights}")
            self.weight = torch.tensor(weights, dtype=torch.float32, device=device)

    def prepare(self, target: torch.Tensor) -> torch.Tensor:
        """Masks ``(B, *spatial)`` of any integer dtype as int64."""
        return target.long()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean per-pixel cross entropy of the logits (plus the soft Dice term), in float32."""
        parts = self._parts(output, target)
        loss = parts.cross_entropy / torch.where(parts.weight > 0, parts.weight, 1.0)
        if self.kind == "cross_entropy_dice":
            loss = loss + _dice_term(parts.intersection, parts.predicted, parts.true)
        return loss

    def validation(self) -> Validation:
        """Sums a confusion matrix, the cross entropy (and the Dice sums) over the held-out split, on the device."""
        return _SegmentationValidation(self)

    def _parts(self, output: torch.Tensor, target: torch.Tensor, argmax: bool = False) -> _Sums:
        """A batch's sums: weighted cross entropy, its weight, the Dice sums per class (when the loss has Dice)
        and the flat confusion-matrix cell and count of every pixel (when ``argmax``)."""
        k = self.num_classes
        logits = output.float()
        target = target.long()
        ignore = -100 if self.ignore_index is None else self.ignore_index  # -100: cross_entropy's default
        nll = nn.functional.cross_entropy(logits, target, weight=self.weight, ignore_index=ignore, reduction="none")
        valid = None if self.ignore_index is None else target != self.ignore_index
        safe = target if valid is None else torch.where(valid, target, 0)
        if self.weight is not None:
            pixel_weight = self.weight[safe]
            weight = (pixel_weight if valid is None else pixel_weight * valid).sum()
        elif valid is None:
            weight = torch.full((), float(target.numel()), device=logits.device)  # a fill, no copy
        else:
            weight = valid.sum().float()
        sums = _Sums(nll.sum(), weight)
        if self.kind == "cross_entropy_dice":
            p = torch.softmax(logits, dim=1)
            axes = [0, *range(2, logits.dim())]
            classes = torch.arange(k, device=logits.device).view(1, k, *([1] * (logits.dim() - 2)))
            g = safe.unsqueeze(1) == classes  # (B, K, *spatial) one-hot
            if valid is not None:
                g = g & valid.unsqueeze(1)
                p = p * valid.unsqueeze(1)
            sums.intersection = (p * g).sum(axes)
            sums.predicted = p.sum(axes)
            sums.true = g.sum(axes).float()
        if argmax:
            sums.cells = (safe * k + logits.argmax(dim=1)).reshape(-1)
            sums.counts = None if valid is None else valid.reshape(-1).long()
        return sums


class _Sums:
    """One batch's sums (see `SegmentationMasks._parts`)."""

    def __init__(self, cross_entropy: torch.Tensor, weight: torch.Tensor) -> None:
        self.cross_entropy = cross_entropy
        self.weight = weight
        self.intersection = self.predicted = self.true = torch.zeros(())
        self.cells = torch.zeros(0, dtype=torch.long)
        self.counts: torch.Tensor | None = None


def _dice_term(intersection: torch.Tensor, predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """``1 - mean_k (2 I_k + eps) / (P_k + G_k + eps)`` from the sums per class."""
    return 1.0 - ((2.0 * intersection + DICE_SMOOTHING) / (predicted + true + DICE_SMOOTHING)).mean()


class _SegmentationValidation(Validation):
    def __init__(self, targets: SegmentationMasks) -> None:
        self.targets = targets
        self.batches = 0
        self.confusion: torch.Tensor | None = None  # (K * K,) int64, row (true class) major
        self.sums: list[torch.Tensor] = []  # cross entropy, its weight, then the Dice sums per class (float64)

    def add(self, output: torch.Tensor, target: torch.Tensor) -> None:
        k = self.targets.num_classes
        parts = self.targets._parts(output, target, argmax=True)
        if self.confusion is None:
            self.confusion = torch.zeros(k * k, dtype=torch.long, device=output.device)
        # scatter_add_ is torch.bincount(cells, counts, minlength=K * K) without the host sync that bincount
        # needs on CUDA to size its output
        counts = torch.ones_like(parts.cells) if parts.counts is None else parts.counts
        self.confusion.scatter_add_(0, parts.cells, counts)
        new = [parts.cross_entropy.double().reshape(1), parts.weight.double().reshape(1)]
        if self.targets.kind == "cross_entropy_dice":
            new += [parts.intersection.double(), parts.predicted.double(), parts.true.double()]
        self.sums = new if not self.sums else [a + b for a, b in zip(self.sums, new)]
        self.batches += 1

    def metrics(self) -> tuple[dict[str, float], float]:
        nothing = {"miou": math.nan, "pixel_accuracy": math.nan}, math.nan
        if not self.batches or self.confusion is None:
            return nothing
        k = self.targets.num_classes
        host = torch.cat([self.confusion.double(), *self.sums]).cpu()  # the one device-to-host copy
        confusion = host[: k * k].reshape(k, k)
        cross_entropy, weight = float(host[k * k]), float(host[k * k + 1])
        pixels = float(confusion.sum())
        if pixels == 0:
            return nothing
        hits = confusion.diagonal()
        union = confusion.sum(0) + confusion.sum(1) - hits
        present = union > 0
        ignore = self.targets.ignore_index
        if ignore is not None and 0 <= ignore < k:
            present[ignore] = False
        iou = hits[present] / union[present]
        miou = float(iou.mean()) if iou.numel() else math.nan
        loss = cross_entropy / weight if weight > 0 else math.nan
        if self.targets.kind == "cross_entropy_dice":
            intersection, predicted, true = host[k * k + 2 :].reshape(3, k)
            loss += float(_dice_term(intersection, predicted, true))
        return {"miou": miou, "pixel_accuracy": float(hits.sum()) / pixels}, loss


def targets_for(task: str, device: torch.device, *, mean: Sequence[float] = (), std: Sequence[float] = (),
                loss: str = "auto", num_classes: int = 0, ignore_index: int | None = None,
                class_weights: Sequence[float] | None = None) -> Targets:  # fmt: skip
    """The `Targets` of ``task`` on ``device``.

    Args:
        task: ``classification``, ``regression`` or ``segmentation`` (`menndl.tasks.TASKS`).
        device: Where the outputs and the labels are.
        mean: Regression: the training split's mean per target.
        std: Regression: the training split's standard deviation per target.
        loss: ``training.loss`` (``auto``: the task's default).
        num_classes: Segmentation: the number of classes (the output's channels).
        ignore_index: Segmentation: the mask value of the pixels to ignore (None: none is).
        class_weights: Segmentation: the cross entropy's weight per class (None: all 1).

    Raises:
        ValueError: ``loss`` does not fit ``task``, or a segmentation argument is out of range.
    """
    if task == "regression":
        return RegressionTargets(mean, std, device, loss)
    if task == "segmentation":
        return SegmentationMasks(num_classes, device, loss, ignore_index, class_weights)
    loss_for(task, loss)
    return ClassLabels()
