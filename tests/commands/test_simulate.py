"""The simulated transport and its virtual clock, the simulated evaluator and its evaluation-time models,
and ``menndl simulate``."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pytest
from conftest import run_menndl

from menndl.errors import UserError
from menndl.genome import InputSpec
from menndl.library import LibraryWriter
from menndl.transport.simulated import SimulatedTransport, VirtualClock
from menndl.worker.simulated import SimulatedEvaluator, parse_eval_time, synthetic_accuracy, synthetic_metrics

pytestmark = pytest.mark.timeout(120)

SPEC = InputSpec(shape=(1, 8, 8), num_classes=10)


def test_eval_time_models() -> None:
    rng = random.Random(0)
    assert parse_eval_time("fixed:2.5").sample(rng) == 2.5
    lognormal = parse_eval_time("lognormal:60")
    draws = [lognormal.sample(rng) for _ in range(20000)]
    assert abs(sum(draws) / len(draws) - 60) < 2 and min(draws) > 0  # MEAN is the mean, not the median
    assert parse_eval_time("lognormal:60:1.0").sigma == 1.0


def test_eval_time_replayed_from_a_library(tmp_path: Path) -> None:
    with LibraryWriter(tmp_path / "lib.h5", job_text="") as writer:
        for i, seconds in enumerate([3.0, 5.0]):
            writer.append({"id": i, "genome": "{}", "status": "ok", "accuracy": 0.5, "train_seconds": seconds})
        writer.append({"id": 2, "genome": "{}", "status": "failed", "train_seconds": 99.0})
    model = parse_eval_time(f"library:{tmp_path / 'lib.h5'}")
    assert {model.sample(random.Random(i)) for i in range(50)} == {3.0, 5.0}


@pytest.mark.parametrize(
    "text", ["fixed", "fixed:-1", "fixed:nan", "lognormal:0", "lognormal:5:x", "gamma:3", "library:"]
)
def test_bad_eval_time_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError, match="--eval-time"):
        parse_eval_time(text)


def test_virtual_clock_jumps_to_the_next_result_and_charges_master_time() -> None:
    from menndl.genome import random_genome
    from menndl.genome.space import SearchSpace

    clock = VirtualClock()
    transport = SimulatedTransport(2, SimulatedEvaluator(parse_eval_time("fixed:100"), SPEC), clock=clock, latency=0.5)
    assert transport.start({"type": "setup"}) == [1, 2]
    genome = random_genome(random.Random(0), SearchSpace(), SPEC).to_dict()
    for task in (0, 1):
        transport.send(1, {"type": "task", "task": task, "genome": genome, "seed": 1})
    kinds = [transport.receive(1.0) for _ in range(2)]
    assert [event[1]["type"] for event in kinds if event] == ["ready", "ready"]
    assert transport.receive(10.0) is None and 10 < clock() < 12  # nothing within the timeout: time moved on
    worker, result = transport.receive(1000.0)  # type: ignore[misc]
    assert (worker, result["task"], result["status"]) == (1, 0, "ok")
    assert 101 <= clock() < 101.5 and result["busy_seconds"] == 100
    assert 0.5 <= result["idle_seconds"] < 0.6  # the task's trip to the worker
    worker, result = transport.receive(1000.0)  # type: ignore[misc]
    assert result["task"] == 1 and 201 <= clock() < 201.5  # queued behind task 0 on the same worker
    task = {"type": "task", "task": 1, "genome": genome, "seed": 1}
    assert {key: result[key] for key in synthetic_metrics(task, SPEC, 100)} == synthetic_metrics(task, SPEC, 100)


class SlowAnswers(SimulatedEvaluator):
    """A simulated evaluator that takes real time to build each result."""

    def evaluate(self, task):
        time.sleep(0.3)
        return super().evaluate(task)


def test_the_evaluators_work_is_not_charged_to_the_master_and_a_hanging_task_never_returns() -> None:
    from menndl.genome import random_genome
    from menndl.genome.space import SearchSpace

    clock = VirtualClock()
    evaluator = SlowAnswers(parse_eval_time("fixed:10"), SPEC, hang_tasks=frozenset({1}))
    transport = SimulatedTransport(2, evaluator, clock=clock)
    transport.start({"type": "setup"})
    genome = random_genome(random.Random(0), SearchSpace(), SPEC).to_dict()
    for worker, task in ((1, 0), (2, 1)):
        transport.send(worker, {"type": "task", "task": task, "genome": genome, "seed": 1})
    assert [transport.receive(1.0)[1]["type"] for _ in range(2)] == ["ready", "ready"]  # type: ignore[index]
    worker, result = transport.receive(100.0)  # type: ignore[misc]
    assert (worker, result["task"], result["train_seconds"]) == (1, 0, 10)
    assert 10 <= clock() < 10.2  # the 0.3 s the evaluator took is the transport's, not the master's
    assert transport.receive(1000.0) is None and 1010 <= clock() < 1010.2  # task 1 hangs: nothing comes back
    assert transport.busy_seconds == 10


def test_simulated_evaluator_draws_times_in_send_order_cut_at_max_seconds() -> None:
    model = parse_eval_time("lognormal:60:1.0")
    evaluator = SimulatedEvaluator(model, SPEC, seed=7, max_seconds=100)
    rng = random.Random(7)
    expected = [min(model.sample(rng), 100) for _ in range(50)]
    assert [evaluator.duration({"task": task}) for task in range(50)] == expected  # as the transport drew them
    assert max(expected) == 100 and min(expected) < 100
    assert SimulatedEvaluator(model, SPEC, hang_tasks=frozenset({3})).duration({"task": 3}) == math.inf


def test_synthetic_metrics_grow_with_size_and_are_fixed_by_the_genome() -> None:
    from menndl.genome import random_genome
    from menndl.genome.space import SearchSpace

    rng = random.Random(3)
    genomes = [random_genome(rng, SearchSpace(), SPEC).to_json() for _ in range(200)]
    results = [synthetic_metrics({"task": i, "genome": g, "seed": i}, SPEC, 1.5) for i, g in enumerate(genomes)]
    assert all(0.5 <= r["accuracy"] <= 0.999 and r["train_seconds"] == 1.5 and r["status"] == "ok" for r in results)
    by_size = sorted(results, key=lambda r: r["params"])
    small, large = by_size[:50], by_size[-50:]
    assert sum(r["accuracy"] for r in large) > sum(r["accuracy"] for r in small)  # larger models do better
    again = synthetic_metrics({"task": 99, "genome": genomes[0], "seed": 5}, SPEC, 1.5)
    assert again["accuracy"] == results[0]["accuracy"]  # the genome fixes it, not the task or seed
    assert synthetic_accuracy("a", 10**9) != synthetic_accuracy("b", 10**9)  # noise by key
    light = synthetic_metrics({"task": 0, "genome": "not parsed", "seed": 12345}, SPEC, 0.1, light=True)
    assert light["params"] == 1000 + 12345 and light["accuracy"] == synthetic_accuracy("12345", light["params"])


def test_simulate_command_json(tmp_path: Path) -> None:
    job = tmp_path / "sim.toml"
    job.write_text("[search]\npopulation = 8\nevaluations = 300\n[training]\nmax_seconds = 600\n")
    out = run_menndl(["simulate", str(job), "--workers", "40", "--eval-time", "lognormal:60", "--json"], timeout=100)
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures["evaluations"] == 300 and figures["workers"] == 40
    assert 0.9 < figures["utilization"] <= 1.0  # a tiny master against 60 s evaluations
    assert 0 < figures["master_seconds_per_result"] < 0.1
    assert 0.3 < figures["results_per_second"] < 1.0  # about 40 workers / 60 s
    assert figures["time_to_budget"] > 300 * 60 / 40 * 0.8


def test_simulate_bad_arguments_one_line(tmp_path: Path) -> None:
    job = tmp_path / "sim.toml"
    job.write_text("[search]\nevaluations = 10\n")
    out = run_menndl(["simulate", str(job), "--workers", "4", "--eval-time", "weibull:3"], timeout=60)
    assert out.returncode == 2 and "menndl: error: --eval-time" in out.stderr and "Traceback" not in out.stderr
    out = run_menndl(["simulate", str(job), "--workers", "0", "--eval-time", "fixed:1"], timeout=60)
    assert out.returncode == 2 and "--workers" in out.stderr


def test_simulate_without_library_writes_nothing(tmp_path: Path) -> None:
    job = tmp_path / "sim.toml"
    job.write_text("[search]\npopulation = 8\nevaluations = 100\n[training]\nmax_seconds = 600\n")
    out = run_menndl(
        ["simulate", str(job), "--workers", "10", "--eval-time", "fixed:5", "--no-library", "--json"], timeout=100
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert figures["evaluations"] == 100 and figures["library"] == "none"
    assert not list(tmp_path.glob("*.h5*"))
