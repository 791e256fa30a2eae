"""The worker's evaluator interface: the setup message picks the implementation; the real worker loop runs it.

The loop runs in this process over an in-memory channel; the sleep and
simulated evaluators report the one synthetic formula
(`menndl.worker.simulated.synthetic_metrics`).
"""

from __future__ import annotations

import random

import pytest
from memory_channel import MemoryChannel

from menndl.genome import InputSpec, SearchSpace, random_genome
from menndl.transport.base import Message
from menndl.worker import EVALUATORS, Evaluator, build_evaluator, run_worker
from menndl.worker.evaluator import evaluator_class
from menndl.worker.simulated import SimulatedEvaluator, synthetic_metrics
from menndl.worker.sleep import SleepEvaluator

pytestmark = pytest.mark.timeout(60)

SPEC = InputSpec(shape=(1, 8, 8), num_classes=10)


def tasks(count: int) -> list[Message | None]:
    rng = random.Random(1)
    return [{"type": "task", "task": i, "genome": random_genome(rng, SearchSpace(), SPEC).to_json(), "seed": i}
            for i in range(count)]  # fmt: skip


def test_every_evaluator_implements_the_interface() -> None:
    assert set(EVALUATORS) == {"train", "sleep", "simulated"}
    assert evaluator_class("sleep") is SleepEvaluator and evaluator_class("simulated") is SimulatedEvaluator
    torch = pytest.importorskip("torch")  # noqa: F841  (the trainer needs it)
    from menndl.worker.trainer import Trainer

    assert evaluator_class("train") is Trainer
    assert all(issubclass(evaluator_class(name), Evaluator) for name in EVALUATORS)
    with pytest.raises(ValueError, match="unknown evaluator 'nope'"):
        evaluator_class("nope")


def test_the_sleep_evaluator_in_the_worker_loop_reports_the_synthetic_metrics() -> None:
    work = tasks(3)
    setup = {"type": "setup", "evaluator": "sleep", "sleep": {"seconds": 0.05, "input_shape": [1, 8, 8]}}
    channel = MemoryChannel(rank=3, messages=[setup, *work, None])
    run_worker(channel)
    ready, *results = channel.sent
    assert ready["type"] == "ready" and (ready["device"], ready["precision"], ready["rank"]) == ("sleep", "none", 3)
    assert [r["task"] for r in results] == [0, 1, 2]
    for task, result in zip(work, results):
        assert task is not None
        expected = synthetic_metrics(task, SPEC, 0.05)
        assert {key: result[key] for key in expected} == expected
        assert result["busy_seconds"] >= 0.05


def test_the_simulated_evaluator_in_the_worker_loop_answers_at_once_with_its_drawn_time() -> None:
    setup = {"type": "setup", "evaluator": "simulated", "simulated": {"eval_time": "fixed:30", "max_seconds": 20}}
    channel = MemoryChannel(rank=3, messages=[setup, *tasks(2), None])
    run_worker(channel)
    results = channel.sent[1:]
    assert [r["train_seconds"] for r in results] == [20, 20]  # drawn, cut at max_seconds, not slept
    assert all(r["status"] == "ok" and r["busy_seconds"] < 5 and r["device"] == "virtual" for r in results)


def test_an_evaluator_the_setup_cannot_build_is_fatal_and_the_worker_waits_for_stop() -> None:
    channel = MemoryChannel(rank=3, messages=[{"type": "setup", "evaluator": "nope"}, *tasks(1), None])
    run_worker(channel)
    assert [m["type"] for m in channel.sent] == ["fatal"]
    assert "unknown evaluator 'nope'" in channel.sent[0]["error"] and not channel.inbox


def test_build_evaluator_passes_where_the_worker_runs() -> None:
    setup = {"evaluator": "sleep", "sleep": {"seconds": 0.0, "hang_on_setup": [5]}}
    evaluator = build_evaluator(setup, rank=4, local_rank=0, threads=1)  # only rank 5 would hang here
    assert isinstance(evaluator, SleepEvaluator) and evaluator.seconds == 0.0
