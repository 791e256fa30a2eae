"""The trainer's side of rungs and inherited weights, on real data: a network trained rung by rung from its
checkpoints is the network trained straight through; a lost checkpoint means training from scratch; a child
starts from its parent's weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from menndl.data import load_dataset
from menndl.genome import Genome
from menndl.job import TrainingConfig
from menndl.worker.checkpoint import load_checkpoint
from menndl.worker.trainer import Trainer

torch = pytest.importorskip("torch")

GENOME = {
    "features": [
        {"type": "conv", "filters": 8, "kernel": 3, "activation": "relu", "batch_norm": True, "dropout": 0.1},
        {"type": "pool", "kind": "max", "size": 2},
        {"type": "conv", "filters": 8, "kernel": 3, "activation": "relu", "batch_norm": False},
    ],
    "head": [{"type": "dense", "units": 16, "activation": "relu", "dropout": 0.2}],
    "train": {"learning_rate": 0.005, "batch_size": 64, "optimizer": "adam", "weight_decay": 0.0001,
              "schedule": "cosine"},
}  # fmt: skip


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    torch.set_num_threads(1)
    return Trainer(load_dataset("digits"), TrainingConfig(epochs=6, max_seconds=300), torch.device("cpu"))


def task(optimizer: str = "adam", **keys: object) -> dict[str, object]:
    genome = {**GENOME, "train": {**GENOME["train"], "optimizer": optimizer}}
    return {"task": 7, "genome": genome, "seed": 11, "return_weights": True, **keys}


def same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_rung_by_rung_is_straight_through(trainer: Trainer, tmp_path: Path, optimizer: str) -> None:
    straight = trainer.evaluate(task(optimizer, train_epochs=6, plan_epochs=6))
    assert straight["status"] == "ok", straight.get("error")
    first = trainer.evaluate(task(optimizer, train_epochs=2, plan_epochs=6, save_checkpoint=str(tmp_path / "7.h5")))
    assert first["status"] == "ok" and first["epochs"] == first["spent_epochs"] == 2
    saved = load_checkpoint(tmp_path / "7.h5")
    assert saved.epochs == 2 and saved.steps > 0 and saved.meta["id"] == 7
    second = trainer.evaluate(task(optimizer, train_epochs=4, plan_epochs=6,
                                   resume_from={"id": 7, "path": str(tmp_path / "7.h5")},
                                   save_checkpoint=str(tmp_path / "8.h5")))  # fmt: skip
    third = trainer.evaluate(task(optimizer, train_epochs=6, plan_epochs=6,
                                  resume_from={"id": 8, "path": str(tmp_path / "8.h5")}))  # fmt: skip
    assert second["inherited_from"] == 7 and third["inherited_from"] == 8 and third["inherited_layers"] == 5
    assert (second["epochs"], second["spent_epochs"], third["epochs"], third["spent_epochs"]) == (4, 2, 6, 2)
    assert third["train_seconds"] > third["spent_seconds"] > 0
    assert same_weights(third["weights"], straight["weights"])  # bit for bit
    assert third["accuracy"] == straight["accuracy"] and third["loss"] == straight["loss"]
    assert first["accuracy"] != straight["accuracy"]  # the rungs really differ


def test_a_lost_checkpoint_trains_from_scratch_and_says_so(trainer: Trainer, tmp_path: Path) -> None:
    result = trainer.evaluate(task(train_epochs=3, plan_epochs=6, resume_from={"id": 3, "path": str(tmp_path / "x")}))
    assert result["status"] == "ok" and result["epochs"] == result["spent_epochs"] == 3
    assert result["inherited_from"] == -1 and "trained from scratch: checkpoint of 3 unusable" in result["error"]
    fresh = trainer.evaluate(task(train_epochs=3, plan_epochs=6))
    assert same_weights(result["weights"], fresh["weights"])


def test_a_checkpoint_that_cannot_be_written_leaves_an_ok_row(trainer: Trainer, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = trainer.evaluate(task(train_epochs=1, plan_epochs=6, save_checkpoint=str(tmp_path / "file" / "1.h5")))
    assert result["status"] == "ok" and result["error"].startswith("checkpoint not written:")


def test_a_child_starts_from_its_parents_weights(trainer: Trainer, tmp_path: Path) -> None:
    parent = trainer.evaluate(task(train_epochs=6, plan_epochs=6, save_checkpoint=str(tmp_path / "p.h5")))
    child = Genome.from_dict({**GENOME, "train": {**GENOME["train"], "learning_rate": 0.001}})
    inherit = {"id": 5, "path": str(tmp_path / "p.h5"), "genome": Genome.from_dict(GENOME).to_json()}
    warm = trainer.evaluate({"task": 9, "genome": child.to_json(), "seed": 1, "train_epochs": 1, "plan_epochs": 6,
                             "inherit_from": inherit})  # fmt: skip
    cold = trainer.evaluate({"task": 9, "genome": child.to_json(), "seed": 1, "train_epochs": 1, "plan_epochs": 6})
    assert warm["inherited_from"] == 5 and warm["inherited_layers"] == 5 and cold["inherited_from"] == -1
    assert warm["spent_epochs"] == 1 and warm["accuracy"] > cold["accuracy"]
    assert warm["accuracy"] >= parent["accuracy"] - 0.05
