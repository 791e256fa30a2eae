"""Segmentation masks: per-pixel losses and the confusion-matrix metrics, against independent references.

The metrics are fed in several uneven batches and compared with scikit-learn on the concatenated pixels; the
losses with `torch.nn.functional.cross_entropy` on the flattened pixels and a plain numpy soft Dice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, jaccard_score

from menndl.tasks import task_score
from menndl.worker.targets import DICE_SMOOTHING, SegmentationMasks, targets_for

CPU = torch.device("cpu")
IGNORE = 255
SPATIAL = {1: (37,), 2: (9, 11), 3: (4, 5, 6)}
BATCHES = (3, 1, 6, 2, 5)  # uneven batch sizes, 17 samples in all


def _data(
    spatial: tuple[int, ...], k: int, seed: int, *, ignore: bool = True, absent: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, K, *spatial)`` float32 that are right about 60 % of the time, and uint8 masks ``(N, *spatial)``
    with about 10 % of the pixels ``IGNORE`` (when ``ignore``); class ``absent`` neither occurs nor is predicted."""
    rng = np.random.default_rng(seed)
    n = sum(BATCHES)
    classes = [c for c in range(k) if c != absent]
    masks = rng.choice(classes, size=(n, *spatial)).astype(np.uint8)
    logits = rng.normal(size=(n, k, *spatial)).astype(np.float32)
    onehot = np.moveaxis(np.eye(k, dtype=np.float32)[masks], -1, 1)
    logits += 1.5 * onehot
    if absent is not None:
        logits[:, absent] = -50.0
    if ignore:
        masks[rng.random(masks.shape) < 0.1] = IGNORE
    return logits, masks


def _feed(kind: SegmentationMasks, logits: np.ndarray, masks: np.ndarray) -> tuple[dict[str, float], float]:
    """The metrics of ``kind`` summed over the batches `BATCHES`."""
    sums = kind.validation()
    first = 0
    for size in BATCHES:
        sums.add(torch.from_numpy(logits[first : first + size]), torch.from_numpy(masks[first : first + size]))
        first += size
    assert first == len(masks)
    return sums.metrics()


def _pixels(logits: np.ndarray, masks: np.ndarray, ignore: int | None = IGNORE) -> tuple[np.ndarray, np.ndarray]:
    """Flattened ``(P, K)`` logits and ``(P,)`` int64 labels of every pixel, ignored ones dropped when ``ignore``."""
    flat_logits = np.moveaxis(logits, 1, -1).reshape(-1, logits.shape[1])
    flat_masks = masks.reshape(-1).astype(np.int64)
    if ignore is None:
        return flat_logits, flat_masks
    keep = flat_masks != ignore
    return flat_logits[keep], flat_masks[keep]


def _cross_entropy(logits: np.ndarray, labels: np.ndarray, weight: list[float] | None = None) -> float:
    """`torch.nn.functional.cross_entropy` of flattened pixels (its mean is weighted by the true class)."""
    w = None if weight is None else torch.tensor(weight)
    return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), weight=w))


def _dice(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Soft Dice term of flattened pixels, in float64: 1 - mean_k (2 sum(p g) + eps) / (sum(p) + sum(g) + eps)."""
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    g = np.eye(k)[labels]
    scores = [
        (2.0 * (p[:, c] * g[:, c]).sum() + DICE_SMOOTHING) / (p[:, c].sum() + g[:, c].sum() + DICE_SMOOTHING)
        for c in range(k)
    ]
    return 1.0 - float(np.mean(scores))


@pytest.mark.parametrize("axes", [1, 2, 3])
def test_miou_and_pixel_accuracy_over_batches_equal_scikit_learn(axes: int) -> None:
    k = 5
    logits, masks = _data(SPATIAL[axes], k, seed=axes, absent=3)
    kind = SegmentationMasks(k, CPU, ignore_index=IGNORE)
    metrics, loss = _feed(kind, logits, masks)
    flat_logits, labels = _pixels(logits, masks)
    predicted = flat_logits.argmax(axis=1)
    present = sorted(set(labels.tolist()) | set(predicted.tolist()))
    assert 3 not in present and len(present) == k - 1  # the absent class is left out of the mean
    confusion = confusion_matrix(labels, predicted, labels=present)
    assert confusion.sum() == len(labels) < masks.size  # some pixels were ignored
    assert metrics["pixel_accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum(), abs=1e-12)
    expected = jaccard_score(labels, predicted, labels=present, average="macro")
    assert metrics["miou"] == pytest.approx(expected, abs=1e-12)
    assert 0.2 < metrics["miou"] < 0.9  # neither trivial nor perfect
    assert loss == pytest.approx(_cross_entropy(flat_logits, labels), rel=1e-5)


def test_a_class_that_is_only_predicted_counts_with_iou_zero() -> None:
    k = 3
    logits, masks = _data((20,), k, seed=7, ignore=False, absent=2)
    logits[0, 2, 0] = 100.0  # one pixel predicted as class 2, which no mask holds
    metrics, _ = _feed(SegmentationMasks(k, CPU), logits, masks)
    flat_logits, labels = _pixels(logits, masks, ignore=None)
    predicted = flat_logits.argmax(axis=1)
    assert metrics["miou"] == pytest.approx(jaccard_score(labels, predicted, labels=[0, 1, 2], average="macro"))
    iou = jaccard_score(labels, predicted, labels=[0, 1, 2], average=None)
    assert iou[2] == 0.0


def test_an_ignore_index_that_is_a_class_leaves_it_out_of_the_mean() -> None:
    k = 4
    logits, masks = _data((8, 8), k, seed=3, ignore=False)
    metrics, loss = _feed(SegmentationMasks(k, CPU, ignore_index=0), logits, masks)
    flat_logits, labels = _pixels(logits, masks, ignore=0)
    predicted = flat_logits.argmax(axis=1)
    assert metrics["pixel_accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert metrics["miou"] == pytest.approx(jaccard_score(labels, predicted, labels=[1, 2, 3], average="macro"))
    assert loss == pytest.approx(_cross_entropy(flat_logits, labels), rel=1e-5)


@pytest.mark.parametrize("ignore_index", [None, IGNORE, -1])
def test_class_weights_and_ignore_index_match_cross_entropy_on_flattened_pixels(ignore_index: int | None) -> None:
    k = 4
    weights = [0.5, 2.0, 1.0, 3.0]
    logits, masks = _data((6, 7), k, seed=11, ignore=ignore_index is not None)
    masks = masks.astype(np.int16)
    if ignore_index is not None:
        masks[masks == IGNORE] = ignore_index
    flat_logits, labels = _pixels(logits, masks, ignore=ignore_index)
    kind = SegmentationMasks(k, CPU, ignore_index=ignore_index, class_weights=weights)
    target = kind.prepare(torch.from_numpy(masks))
    loss = kind.loss(torch.from_numpy(logits), target)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(_cross_entropy(flat_logits, labels, weights), rel=1e-6)
    # the validation loss is the same weighted mean, over the whole split
    _, validation_loss = _feed(kind, logits, masks)
    assert validation_loss == pytest.approx(_cross_entropy(flat_logits, labels, weights), rel=1e-5)
    # and the weights change it
    assert float(SegmentationMasks(k, CPU, ignore_index=ignore_index).loss(torch.from_numpy(logits), target)) != (
        pytest.approx(float(loss), rel=1e-3)
    )


@pytest.mark.parametrize("axes", [1, 2, 3])
def test_dice_term_equals_a_plain_numpy_soft_dice(axes: int) -> None:
    k = 4
    weights = [1.0, 4.0, 0.25, 1.0]  # not applied to the Dice term
    logits, masks = _data(SPATIAL[axes], k, seed=20 + axes)
    kind = SegmentationMasks(k, CPU, "cross_entropy_dice", ignore_index=IGNORE, class_weights=weights)
    flat_logits, labels = _pixels(logits[:5], masks[:5])
    loss = kind.loss(torch.from_numpy(logits[:5]), kind.prepare(torch.from_numpy(masks[:5])))
    expected = _cross_entropy(flat_logits, labels, weights) + _dice(flat_logits, labels, k)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # over a split: the cross entropy's mean plus the Dice term of the sums over all its pixels
    _, validation_loss = _feed(kind, logits, masks)
    flat_logits, labels = _pixels(logits, masks)
    expected = _cross_entropy(flat_logits, labels, weights) + _dice(flat_logits, labels, k)
    assert validation_loss == pytest.approx(expected, rel=1e-5)


def test_dice_adds_a_positive_term_that_a_confident_right_prediction_nearly_removes() -> None:
    masks = torch.tensor([[0, 1, 1, 2, 2, 2]])
    right = 20.0 * torch.nn.functional.one_hot(masks, 3).movedim(-1, 1).float()
    plain, dice = SegmentationMasks(3, CPU), SegmentationMasks(3, CPU, "cross_entropy_dice")
    assert float(dice.loss(right, masks)) == pytest.approx(float(plain.loss(right, masks)), abs=1e-6)
    wrong = torch.zeros(1, 3, 6)
    assert float(dice.loss(wrong, masks)) > float(plain.loss(wrong, masks)) + 0.3


@pytest.mark.parametrize("loss", ["cross_entropy", "cross_entropy_dice"])
@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5]])
def test_an_all_ignored_batch_gives_zero_loss_with_a_finite_gradient(loss: str, weights: list[float] | None) -> None:
    kind = SegmentationMasks(3, CPU, loss, ignore_index=IGNORE, class_weights=weights)
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    value = kind.loss(logits, kind.prepare(torch.full((2, 4, 5), IGNORE, dtype=torch.uint8)))
    assert value.requires_grad and float(value.detach()) == 0.0
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert float(logits.grad.abs().max()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("loss", ["cross_entropy", "cross_entropy_dice"])
def test_half_precision_logits_are_computed_in_float32(dtype: torch.dtype, loss: str) -> None:
    k = 3
    logits, masks = _data((6, 6), k, seed=5)
    low = torch.from_numpy(logits).to(dtype).requires_grad_()
    kind = SegmentationMasks(k, CPU, loss, ignore_index=IGNORE)
    target = kind.prepare(torch.from_numpy(masks))
    value = kind.loss(low, target)
    assert value.dtype == torch.float32
    assert float(value.detach()) == pytest.approx(float(kind.loss(low.detach().float(), target)), rel=1e-6)
    value.backward()
    assert low.grad is not None and low.grad.dtype == dtype and torch.isfinite(low.grad.float()).all()
    metrics, validation_loss = _feed(kind, logits.astype(np.float16), masks)
    assert 0.0 < metrics["miou"] <= 1.0 and math.isfinite(validation_loss)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_prepare_gives_int64_masks_of_any_integer_dtype(dtype: torch.dtype) -> None:
    kind = SegmentationMasks(4, CPU)
    masks = torch.tensor([[0, 3, 1], [2, 2, 0]], dtype=dtype)
    prepared = kind.prepare(masks)
    assert prepared.dtype == torch.int64 and prepared.tolist() == masks.tolist()
    sums = kind.validation()
    sums.add(torch.randn(2, 4, 3), masks)  # the validation takes the masks as stored
    assert math.isfinite(sums.metrics()[0]["miou"])


@pytest.mark.parametrize("axes", [1, 2, 3])
def test_a_perfect_prediction_scores_one(axes: int) -> None:
    k = 4
    _, masks = _data(SPATIAL[axes], k, seed=30 + axes)
    valid = np.where(masks == IGNORE, 0, masks)
    logits = 10.0 * np.moveaxis(np.eye(k, dtype=np.float32)[valid], -1, 1)
    metrics, loss = _feed(SegmentationMasks(k, CPU, ignore_index=IGNORE), logits, masks)
    assert metrics == {"miou": 1.0, "pixel_accuracy": 1.0}
    assert 0.0 < loss < 1e-3


def test_nothing_added_or_only_ignored_pixels_give_nans() -> None:
    kind = SegmentationMasks(3, CPU, "cross_entropy_dice", ignore_index=IGNORE)
    empty = kind.validation()
    metrics, loss = empty.metrics()
    assert math.isnan(metrics["miou"]) and math.isnan(metrics["pixel_accuracy"]) and math.isnan(loss)
    ignored = kind.validation()
    ignored.add(torch.randn(2, 3, 5), torch.full((2, 5), IGNORE, dtype=torch.uint8))
    metrics, loss = ignored.metrics()
    assert math.isnan(metrics["miou"]) and math.isnan(metrics["pixel_accuracy"]) and math.isnan(loss)


def test_targets_for_segmentation() -> None:
    kind = targets_for("segmentation", CPU, num_classes=4, ignore_index=IGNORE, class_weights=[1, 1, 2, 2])
    assert isinstance(kind, SegmentationMasks)
    assert kind.score == task_score("segmentation") == "miou"
    assert kind.kind == "cross_entropy" and kind.num_classes == 4 and kind.ignore_index == IGNORE
    dice = targets_for("segmentation", CPU, num_classes=4, loss="cross_entropy_dice")
    assert isinstance(dice, SegmentationMasks) and dice.kind == "cross_entropy_dice"
    with pytest.raises(ValueError, match="does not fit a segmentation task"):
        targets_for("segmentation", CPU, num_classes=4, loss="mse")
    with pytest.raises(ValueError, match="does not fit a classification task"):
        targets_for("classification", CPU, loss="cross_entropy_dice")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 class"):
        targets_for("segmentation", CPU)  # num_classes left at 0
    with pytest.raises(ValueError, match="3 entries for 4 classes"):
        SegmentationMasks(4, CPU, class_weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        SegmentationMasks(2, CPU, class_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="non-negative"):
        SegmentationMasks(2, CPU, class_weights=[0.0, 0.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("loss", ["cross_entropy", "cross_entropy_dice"])
def test_validation_add_does_not_synchronise_on_cuda(loss: str) -> None:
    cuda = torch.device("cuda")
    kind = SegmentationMasks(5, cuda, loss, ignore_index=IGNORE, class_weights=[1.0] * 5)
    logits, masks = _data((16, 16), 5, seed=1)
    batches = [(torch.from_numpy(logits[i : i + 4]).to(cuda), torch.from_numpy(masks[i : i + 4]).to(cuda))
               for i in range(0, len(masks), 4)]  # fmt: skip
    sums = kind.validation()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for output, target in batches:
            sums.add(output, target)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu = SegmentationMasks(5, CPU, loss, ignore_index=IGNORE, class_weights=[1.0] * 5)
    metrics, validation_loss = sums.metrics()
    expected, expected_loss = _feed(cpu, logits, masks)
    assert metrics == pytest.approx(expected) and validation_loss == pytest.approx(expected_loss, rel=1e-5)
