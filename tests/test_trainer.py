"""The worker's trainer on real data: trains, measures, and turns failures into results."""

from __future__ import annotations

import random

import pytest

from menndl.data import load_dataset
from menndl.genome import InputSpec, SearchSpace, count_params, random_genome
from menndl.job import TrainingConfig
from menndl.worker.trainer import Trainer, choose_precision

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    torch.set_num_threads(1)
    data = load_dataset("digits")
    return Trainer(data, TrainingConfig(epochs=3, max_seconds=20), torch.device("cpu"))


def test_trains_a_random_genome_well_above_chance(trainer: Trainer) -> None:
    space = SearchSpace(max_features=3, learning_rate=(3e-3, 1e-2), schedules=("constant",))  # 3 epochs suffice
    genome = random_genome(random.Random(5), space, trainer.spec)
    result = trainer.evaluate({"genome": genome.to_dict(), "seed": 1})
    assert result["status"] == "ok", result.get("error")
    assert result["params"] == count_params(genome, trainer.spec)
    assert result["epochs"] == 3 and result["train_seconds"] > 0
    assert result["accuracy"] > 0.5  # ten classes: chance is 0.1
    assert result["loss"] > 0


def test_same_seed_same_result(trainer: Trainer) -> None:
    genome = random_genome(random.Random(6), SearchSpace(max_features=2), trainer.spec).to_dict()
    first = trainer.evaluate({"genome": genome, "seed": 3})
    second = trainer.evaluate({"genome": genome, "seed": 3})
    assert first["accuracy"] == second["accuracy"] and first["loss"] == second["loss"]


def test_time_budget_cuts_training_short() -> None:
    data = load_dataset("digits")
    trainer = Trainer(data, TrainingConfig(epochs=1000, max_seconds=0.5), torch.device("cpu"))
    genome = random_genome(random.Random(1), SearchSpace(max_features=2), trainer.spec)
    result = trainer.evaluate({"genome": genome.to_dict(), "seed": 0})
    assert result["status"] == "ok" and result["epochs"] < 1000 and result["train_seconds"] < 5


def test_failure_is_a_result_and_the_trainer_goes_on(trainer: Trainer) -> None:
    bad = trainer.evaluate({"genome": {"features": [{"type": "lstm"}], "head": [], "train": {}}, "seed": 0})
    assert bad["status"] == "failed" and "lstm" in bad["error"] and "Traceback" in bad["error"]
    genome = random_genome(random.Random(2), SearchSpace(max_features=2), trainer.spec)
    assert trainer.evaluate({"genome": genome.to_dict(), "seed": 0})["status"] == "ok"


def test_precision_choice() -> None:
    assert choose_precision("auto", torch.device("cpu")) == "fp32"
    assert choose_precision("bf16", torch.device("cpu")) == "bf16"


def test_input_spec_matches_data(trainer: Trainer) -> None:
    assert trainer.spec == InputSpec(shape=(1, 8, 8), num_classes=10)


@pytest.mark.parametrize("precision, channels_last", [("fp16", "off"), ("bf16", "on")])
def test_mixed_precision_paths_train_on_the_cpu(precision: str, channels_last: str) -> None:
    """The GPU code paths (fp16 autocast with a GradScaler; bf16 in channels_last) run and learn on the CPU too."""
    data = load_dataset("digits")
    training = TrainingConfig(epochs=2, max_seconds=20, precision=precision, channels_last=channels_last)
    trainer = Trainer(data, training, torch.device("cpu"))
    assert trainer.precision == precision and trainer.channels_last == (channels_last == "on")
    genome = {
        "features": [{"type": "conv", "filters": 4, "kernel": 3, "activation": "relu", "batch_norm": True}],
        "head": [],
        "train": {"learning_rate": 0.01, "batch_size": 64, "optimizer": "adam", "weight_decay": 0.0},
    }
    result = trainer.evaluate({"genome": genome, "seed": 0})
    assert result["status"] == "ok", result.get("error")
    assert result["precision"] == precision and result["accuracy"] > 0.5
