"""Failures are data: a candidate that raises, diverges, overruns or runs out of memory is a result.

Real training on the real digits data.  Faults that cannot be provoked with a
real genome on a CPU are injected through the trainer's ``build`` hook: the
decoded model is wrapped in a module whose forward raises
``torch.OutOfMemoryError`` (what CUDA raises) or sleeps past the hard limit.
The worker loop is driven through an in-memory channel, in this process.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

import pytest
from memory_channel import MemoryChannel

from menndl.data import load_dataset
from menndl.genome import Genome, InputSpec, SearchSpace, random_genome
from menndl.genome.decode import build_model
from menndl.job import TrainingConfig
from menndl.transport.base import Message
from menndl.worker.loop import run_worker

torch = pytest.importorskip("torch")
from menndl.worker.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.timeout(120)


class Faulty(torch.nn.Module):
    """The decoded model, with a fault on its forward pass."""

    def __init__(self, model: torch.nn.Module, fault: str) -> None:
        super().__init__()
        self.model, self.fault = model, fault

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB (injected by the test)")
        if self.fault == "hang":
            time.sleep(30)  # far past the hard limit; the alarm interrupts it
        if self.fault == "slow":
            time.sleep(1.5)  # one step longer than the whole hard limit
        return self.model(x)


class FaultInjector:
    """A ``build`` hook: the genome's first conv's filter count picks the fault (for this test only)."""

    FAULTS = {13: "oom", 17: "hang", 19: "slow"}

    def __call__(self, genome: Genome, spec: InputSpec) -> torch.nn.Module:
        model = build_model(genome, spec)
        filters = next((b.filters for b in genome.features if hasattr(b, "filters")), None)
        fault = self.FAULTS.get(filters) if filters is not None else None
        return Faulty(model, fault) if fault else model


def genome_dict(seed: int, *, filters: int | None = None, **train: Any) -> dict[str, Any]:
    """A real random genome of the digits space, optionally with a given first conv and training settings."""
    spec = InputSpec(shape=(1, 8, 8), num_classes=10)
    for attempt in range(100):
        genome = random_genome(random.Random(seed * 1000 + attempt), SearchSpace(max_features=2), spec).to_dict()
        convs = [block for block in genome["features"] if block["type"] == "conv"]
        if convs:
            break
    if filters is not None:
        convs[0]["filters"] = filters
    genome["train"].update(train)
    return genome


# Training settings under which a small digits network surely learns in 2 epochs (the random draw may not).
LEARNS: dict[str, Any] = {"learning_rate": 3e-3, "optimizer": "adam", "schedule": "constant", "budget": 1.0}

FAILING_TASKS = [
    ({"features": [{"type": "lstm"}], "head": [], "train": {}}, "failed"),  # decoding raises
    (genome_dict(1, learning_rate=1e8, optimizer="sgd"), "nan"),  # really diverges
    (genome_dict(2, filters=17), "timeout"),
    (genome_dict(3, filters=13), "oom"),
]


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits")


def test_each_fault_is_recorded_and_the_worker_trains_the_next_candidate(digits) -> None:
    def make_trainer(setup: Mapping[str, Any], *, rank: int, local_rank: int, threads: int) -> Trainer:
        training = TrainingConfig(epochs=2, max_seconds=1)
        return Trainer(digits, training, torch.device("cpu"), build=FaultInjector(), overrun_limit=4)

    tasks: list[Message | None] = []
    for genome, _ in FAILING_TASKS:
        tasks.append({"type": "task", "task": len(tasks), "genome": genome, "seed": 0})
        tasks.append({"type": "task", "task": len(tasks), "genome": genome_dict(9, **LEARNS), "seed": 0})
    channel = MemoryChannel([{"type": "setup"}, *tasks, None])
    run_worker(channel, make_evaluator=make_trainer)

    assert channel.sent[0]["type"] == "ready" and channel.sent[0]["local_rank"] == 0
    results = channel.sent[1:]
    assert [r["type"] for r in results] == ["result"] * len(tasks)
    assert [r["task"] for r in results] == list(range(len(tasks)))
    for (_, status), failed, after in zip(FAILING_TASKS, results[0::2], results[1::2]):
        assert failed["status"] == status, failed.get("error")
        assert "Traceback" in failed["error"]
        assert after["status"] == "ok" and after["accuracy"] > 0.2, after.get("error")  # chance: 0.1
        assert after["host"] and after["device"] == "cpu"
    by_status = {r["status"]: r for r in results[0::2]}
    assert "OutOfMemoryError" in by_status["oom"]["error"]
    assert "hard limit" in by_status["timeout"]["error"]
    assert by_status["nan"]["epochs"] == 0 and "non-finite" in by_status["nan"]["error"]


def test_oom_releases_the_candidate(digits) -> None:
    """After an OOM nothing of the failed candidate stays referenced (on a GPU: its memory is freed)."""
    trainer = Trainer(digits, TrainingConfig(epochs=1, max_seconds=5), torch.device("cpu"), build=FaultInjector())
    import gc
    import weakref

    built: list[weakref.ref] = []

    def build(genome: Genome, spec: InputSpec) -> torch.nn.Module:
        model = FaultInjector()(genome, spec)
        built.append(weakref.ref(model))
        return model

    trainer.build = build
    assert trainer.evaluate({"genome": genome_dict(3, filters=13), "seed": 0})["status"] == "oom"
    gc.collect()
    assert built and built[0]() is None


def test_weights_come_back_as_plain_float32_arrays_that_reload(digits) -> None:
    import numpy as np

    trainer = Trainer(digits, TrainingConfig(epochs=1, max_seconds=5), torch.device("cpu"))
    genome = genome_dict(4)
    result = trainer.evaluate({"genome": genome, "seed": 0, "return_weights": True})
    assert result["status"] == "ok"
    weights = result["weights"]
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous for a in weights.values())
    model = build_model(Genome.from_dict(genome), trainer.spec)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in weights.items()})
    model.eval()
    with torch.no_grad():
        predicted = model(trainer.standardise(trainer.data.x_held)).argmax(dim=1)
    assert (predicted == trainer.data.y_held).float().mean().item() == pytest.approx(result["accuracy"])
    assert "weights" not in trainer.evaluate({"genome": genome, "seed": 0})


def test_off_the_main_thread_the_step_clock_catches_an_overrun(digits) -> None:
    """Where no alarm can be used (a thread), the check after each step still turns an overrun into a timeout."""
    import threading

    trainer = Trainer(
        digits, TrainingConfig(epochs=1, max_seconds=0.2), torch.device("cpu"), build=FaultInjector(), overrun_limit=1
    )
    results: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: results.append(trainer.evaluate({"genome": genome_dict(5, filters=19),
                                                                               "seed": 0})))  # fmt: skip
    thread.start()
    thread.join(timeout=60)
    assert results and results[0]["status"] == "timeout", results
    assert "one training step ran past the hard limit" in results[0]["error"]


def test_a_worker_whose_device_broke_reports_fatal_after_the_result() -> None:
    """Loop logic with a stand-in trainer: a failure that leaves the device unusable ends the worker cleanly."""

    class BrokenDevice:
        device_name, precision = "cuda:0 (stand-in)", "bf16"

        def evaluate(self, task: Mapping[str, Any]) -> dict[str, Any]:
            return {"status": "failed", "error": "CUDA error: an illegal memory access was encountered"}

        def device_ok(self) -> bool:
            return False

        def close(self) -> None:
            pass

    channel = MemoryChannel([{"type": "setup"}, {"type": "task", "task": 7, "genome": {}, "seed": 0},
                             {"type": "task", "task": 8, "genome": {}, "seed": 0}, None])  # fmt: skip
    run_worker(channel, make_evaluator=lambda setup, **_: BrokenDevice())
    assert [m["type"] for m in channel.sent] == ["ready", "result", "fatal"]
    assert channel.sent[1]["task"] == 7 and "stopped working" in channel.sent[2]["error"]
    assert not channel.inbox  # it drained the queue up to the stop message
