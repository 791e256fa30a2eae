"""Early stopping: the master's history and thresholds, and a hopeless candidate stopped by a real worker."""

from __future__ import annotations

import json
import random

import pytest

from menndl.genome import InputSpec, SearchSpace, random_genome
from menndl.job import TrainingConfig, parse_job
from menndl.master.stopping import EarlyStopping
from menndl.protocol import task_message


def test_threshold_is_the_median_once_enough_results_are_in() -> None:
    stopping = EarlyStopping([0.25, 0.5], quantile=0.5, min_results=3)
    stopping.observe([[0.25, 0.2], [0.5, 0.3]])
    stopping.observe([[0.25, 0.6]])
    assert stopping.thresholds() == []  # two values: not enough
    stopping.observe([[0.25, 0.4], [0.5, float("nan")], [0.75, 0.9], ["bad"]])  # ignored: NaN, unknown, malformed
    assert stopping.thresholds() == [[0.25, 0.4]]
    assert stopping.counts() == {0.25: 3, 0.5: 1}
    stopping.observe(None)  # a failed candidate reports no checkpoints


def test_quantile_and_restore_from_library_rows() -> None:
    stopping = EarlyStopping([0.5], quantile=0.25, min_results=1)
    stopping.restore([{"checkpoints": "[[0.5, 0.8]]"}, {"checkpoints": [[0.5, 0.2]]}, {"checkpoints": ""},
                      {"checkpoints": "[[0.5, 0.6]]"}, {"checkpoints": "[[0.5, 0.4]]"}])  # fmt: skip
    assert stopping.threshold(0.5) == 0.2


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        EarlyStopping([1.5])
    with pytest.raises(ValueError):
        EarlyStopping([0.5], quantile=2)
    with pytest.raises(ValueError):
        EarlyStopping([0.5], min_results=0)


def test_job_keys_are_validated() -> None:
    from menndl.errors import UserError

    job = parse_job("[search]\nevaluations = 4\n[training]\nearly_stopping = true\nearly_stopping_fractions = [0.3]\n")
    assert job.training.early_stopping and job.training.early_stopping_fractions == (0.3,)
    with pytest.raises(UserError, match="early_stopping_fractions"):
        parse_job("[search]\nevaluations = 4\n[training]\nearly_stopping_fractions = [1.0]\n")
    with pytest.raises(UserError, match="channels_last"):
        parse_job("[search]\nevaluations = 4\n[training]\nchannels_last = 'yes'\n")


@pytest.fixture(scope="module")
def trainer():
    torch = pytest.importorskip("torch")
    from menndl.data import load_dataset
    from menndl.worker.trainer import Trainer

    torch.set_num_threads(1)
    return Trainer(load_dataset("digits"), TrainingConfig(epochs=4, max_seconds=30), torch.device("cpu"))


def _genome(trainer, learning_rate: float) -> dict:
    genome = random_genome(random.Random(5), SearchSpace(max_features=2), InputSpec((1, 8, 8), 10)).to_dict()
    genome["train"].update(learning_rate=learning_rate, optimizer="adam")
    return genome


def test_a_hopeless_candidate_is_stopped_early_with_its_partial_accuracy(trainer) -> None:
    hopeless = _genome(trainer, 1e-7)  # learns nothing in four epochs
    task = task_message(1, hopeless, 0, checkpoints=[0.25, 0.5], stop_below=[[0.25, 0.5]])
    result = trainer.evaluate(task)
    assert result["status"] == "stopped-early", result.get("error")
    assert result["epochs"] == 1  # stopped at the first checkpoint, not after four epochs
    assert result["checkpoints"] == [[0.25, result["accuracy"]]]
    assert result["accuracy"] < 0.5 and result["params"] > 0 and result["train_seconds"] > 0


def test_a_good_candidate_passes_its_checkpoints(trainer) -> None:
    task = task_message(2, _genome(trainer, 3e-3), 0, checkpoints=[0.25, 0.5], stop_below=[[0.25, 0.3], [0.5, 0.3]])
    result = trainer.evaluate(task)
    assert result["status"] == "ok" and result["epochs"] == 4
    assert [fraction for fraction, _ in result["checkpoints"]] == [0.25, 0.5]
    assert all(accuracy >= 0.3 for _, accuracy in result["checkpoints"])
    assert result["samples_per_second"] > 0 and result["latency_seconds"] > 0 and result["peak_memory_bytes"] > 0


def test_the_master_puts_thresholds_into_tasks_and_stores_worker_metrics(tmp_path) -> None:
    """The master loop over an in-memory transport: checkpoints in, thresholds out, metrics and status stored."""
    from collections import deque

    from menndl.library import Library, LibraryWriter
    from menndl.master.search import Search
    from menndl.transport.base import MasterTransport

    class Answering(MasterTransport):
        def __init__(self) -> None:
            self.outbox: deque = deque()
            self.tasks: list[dict] = []

        description = "answering"

        def start(self, setup):
            return [1, 2]

        def send(self, worker, message):
            if message is None:
                return
            self.tasks.append(message)
            accuracy = (message["task"] % 10) / 10
            stopped = any(accuracy < threshold for _, threshold in message.get("stop_below", []))
            self.outbox.append((worker, {"type": "result", "task": message["task"],
                                         "status": "stopped-early" if stopped else "ok", "accuracy": accuracy,
                                         "train_seconds": 1.0, "checkpoints": [[0.5, accuracy]],
                                         "samples_per_second": 1000.0, "peak_memory_bytes": 123,
                                         "latency_seconds": 1e-4, "precision": "bf16", "local_rank": 0}))  # fmt: skip

        def receive(self, timeout):
            return self.outbox.popleft() if self.outbox else None

        def close(self, abandon=False):
            pass

    job = parse_job(
        "[search]\nevaluations = 20\npopulation = 4\n[training]\nearly_stopping = true\n"
        "early_stopping_fractions = [0.5]\nearly_stopping_min_results = 5\n"
    )
    transport = Answering()
    writer = LibraryWriter(tmp_path / "lib.h5", job_text=job.text)
    result = Search(job, InputSpec((1, 8, 8), 10), "f", transport, writer).run()
    assert all(task["checkpoints"] == [0.5] for task in transport.tasks)
    assert transport.tasks[0]["stop_below"] == []  # nothing known yet
    assert any(task["stop_below"] for task in transport.tasks[5:])
    with Library.open(tmp_path / "lib.h5") as library:
        records = list(library.records())
    statuses = {record["status"] for record in records}
    assert statuses == {"ok", "stopped-early"}
    assert result.failed == 0  # stopped early is not a failure
    record = records[-1]
    assert record["samples_per_second"] == 1000.0 and record["peak_memory_bytes"] == 123
    assert record["precision"] == "bf16" and json.loads(record["checkpoints"]) == [[0.5, record["accuracy"]]]


def test_check_describes_early_stopping(tmp_path) -> None:
    from conftest import TINY_JOB, run_menndl

    job = tmp_path / "job.toml"
    job.write_text(TINY_JOB.format(source="digits") + "early_stopping = true\nearly_stopping_fractions = [0.3]\n")
    out = run_menndl(["check", str(job)], timeout=120)
    assert out.returncode == 0, out.stderr
    assert "stopping: below the 0.5 quantile at 0.3 of the budget, after 8 results" in out.stdout
