"""Losses and validation metrics per task, against scikit-learn's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_squared_error, r2_score

from menndl.tasks import foreign_objective, loss_for, task_score
from menndl.worker.targets import ClassLabels, RegressionTargets, targets_for

CPU = torch.device("cpu")


@pytest.mark.parametrize("targets", [1, 3])
def test_r2_and_mse_summed_over_batches_equal_scikit_learn(targets: int) -> None:
    rng = np.random.default_rng(targets)
    y = rng.normal(size=(257, targets)) * rng.uniform(0.1, 10, targets) + rng.normal(size=targets) * 5
    predicted = y + rng.normal(size=y.shape) * rng.uniform(0.1, 3, targets)
    mean, std = y[:100].mean(0), y[:100].std(0)
    kind = RegressionTargets(mean.tolist(), std.tolist(), CPU)
    sums = kind.validation()
    stored = y[:, 0] if targets == 1 else y  # (N,) targets as a file may hold them
    for first in range(0, len(y), 64):
        output = torch.tensor((predicted[first : first + 64] - mean) / std, dtype=torch.float32)
        sums.add(output, torch.tensor(stored[first : first + 64], dtype=torch.float32))
    metrics, loss = sums.metrics()
    y32 = y.astype(np.float32).astype(np.float64)
    assert metrics["r2"] == pytest.approx(r2_score(y32, predicted), abs=1e-5)
    assert metrics["mse"] == pytest.approx(mean_squared_error(y32, predicted), rel=1e-5)
    assert loss == pytest.approx(float(np.mean(((predicted - y32) / std) ** 2)), rel=1e-4)


def test_a_constant_target_counts_one_only_when_predicted_exactly() -> None:
    kind = RegressionTargets([2.0], [1.0], CPU)
    exact = kind.validation()
    exact.add(torch.zeros(8, 1), torch.full((8,), 2.0))
    assert exact.metrics()[0]["r2"] == 1.0
    off = kind.validation()
    off.add(torch.ones(8, 1), torch.full((8,), 2.0))
    assert off.metrics()[0]["r2"] == 0.0 and off.metrics()[0]["mse"] == pytest.approx(1.0)


def test_nothing_added_gives_nans() -> None:
    metrics, loss = RegressionTargets([0.0], [1.0], CPU).validation().metrics()
    assert math.isnan(metrics["r2"]) and math.isnan(metrics["mse"]) and math.isnan(loss)
    assert math.isnan(ClassLabels().validation().metrics()[0]["accuracy"])


def test_huber_is_the_option_and_is_gentler_on_outliers() -> None:
    output, target = torch.zeros(4, 1), torch.tensor([[0.0], [0.0], [0.0], [10.0]])
    mse = RegressionTargets([0.0], [1.0], CPU).loss(output, target)
    huber = RegressionTargets([0.0], [1.0], CPU, "huber").loss(output, target)
    assert float(mse) == pytest.approx(25.0) and float(huber) == pytest.approx((10.0 - 0.5) / 4)


def test_classification_accuracy_and_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = torch.tensor([0, 1, 1])
    sums = targets_for("classification", CPU).validation()
    sums.add(logits[:2], labels[:2])
    sums.add(logits[2:], labels[2:])
    metrics, loss = sums.metrics()
    assert metrics == {"accuracy": pytest.approx(2 / 3)}
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))


def test_task_tables() -> None:
    assert task_score("classification") == "accuracy" and task_score("regression") == "r2"
    assert foreign_objective("regression", ["accuracy", "params"]) == "accuracy"
    assert foreign_objective("classification", ["params", "mse"]) == "mse"
    assert foreign_objective("regression", ["r2", "mse", "latency"]) is None
    assert loss_for("regression", "auto") == "mse" and loss_for("classification", "auto") == "cross_entropy"
    with pytest.raises(ValueError, match="training.loss = 'huber' does not fit a classification task"):
        loss_for("classification", "huber")
    with pytest.raises(ValueError, match="regression"):
        targets_for("regression", CPU, mean=[0.0], std=[1.0], loss="cross_entropy")


def test_class_weights_for_balanced_matches_scikit_learn_and_lists_are_checked() -> None:
    from sklearn.utils.class_weight import compute_class_weight

    from menndl.tasks import class_weights_for

    labels = np.repeat(np.arange(4), [700, 200, 80, 20])
    expected = compute_class_weight("balanced", classes=np.arange(4), y=labels)
    assert class_weights_for("balanced", np.bincount(labels).tolist()) == pytest.approx(expected)
    assert class_weights_for("balanced", [10, 0, 30]) == pytest.approx((40 / 30, 1.0, 40 / 90))  # absent class: 1
    assert class_weights_for((), [1, 2]) is None and class_weights_for((1, 2.5), [1, 2]) == (1.0, 2.5)
    with pytest.raises(ValueError, match="has 2 weights but the masks have 3 classes"):
        class_weights_for((1.0, 2.0), [1, 2, 3])
