"""The trainer on a real regression dataset: it learns, reports R² and MSE, and stops early by R²."""

from __future__ import annotations

import random

import pytest
import torch

from menndl.data import load_dataset
from menndl.genome import SearchSpace, count_params
from menndl.genome.sampling import random_genome
from menndl.job import TrainingConfig
from menndl.worker.trainer import Trainer

SPACE = SearchSpace(max_features=3, learning_rate=(3e-3, 1e-2), schedules=("constant",), filters=(8, 16))


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    torch.set_num_threads(1)
    return Trainer(load_dataset("oscillator1d"), TrainingConfig(epochs=3, max_seconds=30), torch.device("cpu"))


def test_a_random_network_learns_the_oscillator(trainer: Trainer) -> None:
    assert trainer.spec.num_classes == 3 and trainer.spec.task == "regression"
    genome = random_genome(random.Random(3), SPACE, trainer.spec)
    result = trainer.evaluate({"genome": genome.to_dict(), "seed": 1})
    assert result["status"] == "ok", result.get("error")
    assert result["params"] == count_params(genome, trainer.spec)
    assert 0.3 < result["r2"] < 1.0  # predicting the mean scores 0
    # the targets' variances are 3.0, 1.0 and 0.19: an R² of 0.3 leaves an MSE well under their mean
    assert 0.0 < result["mse"] < 0.7 * (1.741**2 + 1.015**2 + 0.432**2) / 3
    assert "accuracy" not in result and result["loss"] > 0


def test_early_stopping_compares_r2(trainer: Trainer) -> None:
    genome = random_genome(random.Random(4), SPACE, trainer.spec)
    task = {"genome": genome.to_dict(), "seed": 2, "checkpoints": [0.3], "stop_below": [[0.3, 1.5]]}  # R² <= 1
    result = trainer.evaluate(task)
    assert result["status"] == "stopped-early", result.get("error")
    (fraction, score), = result["checkpoints"]
    assert fraction == 0.3 and score == result["r2"] and result["epochs"] == 1
