"""``menndl train`` on a real library from a tiny digits search: the search's own fit loop, weights, failures."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_menndl

from menndl import cli
from menndl.data import load_dataset
from menndl.genome import Genome, InputSpec
from menndl.genome.decode import build_model
from menndl.job import TrainingConfig

torch = pytest.importorskip("torch")
from menndl.worker.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.timeout(300)

JOB = """
name = "retrain"
seed = 2

[data]
source = "digits"

[search]
population = 2
evaluations = 2

[space]
max_features = 2
max_head = 1
filters = [4, 8]
dense_units = [8, 16]

[training]
epochs = 1
max_seconds = 5
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library from a real 2-evaluation search on the digits (1 epoch each)."""
    folder = tmp_path_factory.mktemp("retrain")
    job = folder / "job.toml"
    job.write_text(JOB)
    path = folder / "lib.h5"
    done = run_menndl(["run", str(job), "--library", str(path), "--workers", "1"], timeout=240)
    assert done.returncode == 0, done.stderr
    return path


def _with_train(library: Path, folder: Path, **train: object) -> Path:
    """A copy of ``library`` whose evaluation 0 has these training settings."""
    copy = folder / "edited.h5"
    shutil.copy(library, copy)
    with h5py.File(copy, "r+") as f:
        column = f["evaluations"]["genome"]
        genome = json.loads(column[0])
        genome["train"].update(train)
        column[0] = json.dumps(genome)
    return copy


def _genome(library: Path, eval_id: int) -> Genome:
    with h5py.File(library, "r") as f:
        return Genome.from_json(f["evaluations"]["genome"][eval_id].decode())


def test_weights_load_safely_and_reproduce_the_printed_test_accuracy(library: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    argv = ["train", str(library), "0", "--epochs", "2", "--seed", "3", "-o", str(weights), "--json", "--device", "cpu"]
    done = run_menndl(argv, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["epochs"] == 2 and result["precision"] == "fp32" and result["test_samples"] == 359
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]  # no temporary file left beside it

    state = torch.load(weights, weights_only=True)
    model = build_model(_genome(library, 0), InputSpec((1, 8, 8), 10))
    model.load_state_dict(state)
    model.eval()
    data = load_dataset("digits")
    mean = torch.tensor(result["input_mean"]).reshape(1, -1, 1, 1)
    std = torch.tensor(result["input_std"]).reshape(1, -1, 1, 1)
    with torch.no_grad():
        predicted = model((torch.from_numpy(data.test.read()) - mean) / std).argmax(dim=1).numpy()
    assert float(np.mean(predicted == data.test.y)) == pytest.approx(result["test_accuracy"], abs=1e-12)
    assert result["params"] == sum(t.numel() for t in model.parameters())


def test_a_diverging_training_is_one_line_exit_1_and_no_weights(library: Path, tmp_path: Path) -> None:
    diverging = _with_train(library, tmp_path, optimizer="sgd", learning_rate=1e8, batch_size=32, momentum=0.9)
    weights = tmp_path / "w.pt"
    argv = ["train", str(diverging), "0", "--epochs", "2", "-o", str(weights), "--device", "cpu"]
    done = run_menndl(argv, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("menndl: error: train: evaluation 0"), done.stderr
    assert "diverged" in lines[0] and "non-finite" in lines[0] and "no weights written" in lines[0]
    assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edited.h5"]  # neither the weights nor a temporary file


def test_out_of_memory_is_one_line_exit_1_and_leaves_an_older_weights_file_alone(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def out_of_memory(self: Trainer, *args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB (injected by the test)")

    monkeypatch.setattr(Trainer, "fit", out_of_memory)
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights of an earlier training")
    status = cli.main(["train", str(library), "1", "--epochs", "1", "-o", str(weights), "--device", "cpu"])
    captured = capsys.readouterr()
    assert status == 1 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "ran out of memory on cpu" in lines[0] and "80.00 GiB" in lines[0], captured.err
    assert weights.read_bytes() == b"weights of an earlier training"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_evaluate_and_train_run_the_same_fit_loop(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a copy: both call `Trainer.fit`, and ``menndl train`` has no training step of its own."""
    import menndl.commands.train

    calls: list[dict[str, object]] = []
    fit = Trainer.fit

    def spy(self: Trainer, *args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return fit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "fit", spy)
    trainer = Trainer(load_dataset("digits"), TrainingConfig(epochs=1, max_seconds=10), torch.device("cpu"))
    genome = _genome(library, 0)
    assert trainer.evaluate({"genome": genome.to_dict(), "seed": 0})["status"] == "ok"
    assert len(calls) == 1 and calls[0]["hard_end"] < float("inf")  # the search: a budget and a hard limit

    weights = tmp_path / "w.pt"
    argv = ["train", str(library), "0", "--epochs", "1", "-o", str(weights), "--device", "cpu", "--json"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert len(calls) == 2 and calls[1]["epochs"] == 1 and calls[1]["max_seconds"] == float("inf")
    assert weights.is_file()
    source = inspect.getsource(menndl.commands.train)
    assert ".backward(" not in source and ".step(" not in source and "randperm" not in source


def test_max_seconds_ends_the_training_early(library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w.pt"
    argv = ["train", str(library), "0", "--epochs", "100000", "--max-seconds", "0.3", "-o", str(weights), "--json",
            "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["epochs"] < 100000 and result["seconds"] < 30 and weights.is_file()


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_bad_max_seconds_is_one_line_exit_2(
    library: Path, tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["train", str(library), "0", "--max-seconds", value, "-o", str(tmp_path / "w.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "--max-seconds" in err[0]
    assert not any(tmp_path.iterdir())
