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


# A small network with batch norm, dropout and a dense head, and the figures `Trainer.evaluate` gave for it on the
# digits (CPU, fp32, one thread) with the search's own loop before `Trainer.fit` existed (d31ae8b): the fit loop
# shared with `menndl train` must train the search's candidates exactly as that loop did.
PINNED_GENOME = {
    "features": [{"type": "conv", "filters": 4, "kernel": 3, "activation": "relu", "batch_norm": True, "dropout": 0.1},
                 {"type": "pool", "kind": "max", "size": 2}],  # fmt: skip
    "head": [{"type": "dense", "units": 16, "activation": "relu", "dropout": 0.2}],
    "train": {"learning_rate": 0.05, "batch_size": 32, "optimizer": "sgd", "momentum": 0.9,
              "weight_decay": 1e-4, "schedule": "cosine", "budget": 1.0},  # fmt: skip
}
PINNED_ADAM = {**PINNED_GENOME, "train": {**PINNED_GENOME["train"], "optimizer": "adam", "learning_rate": 3e-3,
                                          "schedule": "constant"}}  # fmt: skip


@pytest.mark.parametrize(
    "epochs, genome, task, expected",
    [
        (1, PINNED_GENOME, {"seed": 7},
         {"accuracy": 0.6979166666666666, "loss": 1.2301656934950087, "train_loss": 1.728331036037869, "epochs": 1}),
        (2, PINNED_ADAM, {"seed": 11, "checkpoints": [0.5], "stop_below": [[0.5, 0.0]]},
         {"accuracy": 0.84375, "loss": 1.0501426060994465, "train_loss": 1.5087961620754666, "epochs": 2,
          "checkpoints": [[0.5, 0.5208333333333334]]}),
    ],
)  # fmt: skip
def test_the_search_trains_as_before(epochs: int, genome: dict, task: dict, expected: dict) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(load_dataset("digits"), TrainingConfig(epochs=epochs, max_seconds=1000), torch.device("cpu"))
    result = trainer.evaluate({"genome": genome, **task})
    assert result["status"] == "ok", result.get("error")
    assert result["params"] == 1254 and result["epochs"] == expected["epochs"]
    assert result["accuracy"] == expected["accuracy"]  # the same predictions, to the sample
    assert result.get("checkpoints") == expected.get("checkpoints")
    for key in ("loss", "train_loss"):
        assert result[key] == pytest.approx(expected[key], rel=1e-6)
