"""Asynchronous NSGA-II: ask/tell without a generation barrier, no duplicate genomes."""

from __future__ import annotations

import json

from menndl.genome import InputSpec, SearchSpace, check
from menndl.master.evolution import Evolution

SPEC = InputSpec(shape=(1, 8, 8), num_classes=10)


def make(seed: int = 0, population: int = 6) -> Evolution:
    return Evolution(
        space=SearchSpace(),
        spec=SPEC,
        objectives=("accuracy", "params"),
        population_size=population,
        crossover_probability=0.5,
        seed=seed,
    )


def fake_metrics(candidate, accuracy: float) -> dict:
    from menndl.genome import count_params

    return {"status": "ok", "accuracy": accuracy, "params": count_params(candidate.genome, SPEC)}


def test_first_candidates_are_random_then_children_of_evaluated_parents() -> None:
    evo = make()
    first = [evo.ask() for _ in range(6)]
    assert [c.operator for c in first] == ["random"] * 6 and [c.id for c in first] == list(range(6))
    for i, candidate in enumerate(first):
        evo.tell(candidate, fake_metrics(candidate, accuracy=i / 10))
    told = {c.id for c in first}
    for _ in range(40):
        child = evo.ask()
        assert child.operator != "random" and child.parents and set(child.parents) <= told
        check(child.genome, evo.space, SPEC)
        evo.tell(child, fake_metrics(child, accuracy=0.5))
        told.add(child.id)
        assert len(evo.population) <= 6


def test_asks_never_repeat_a_genome() -> None:
    evo = make(population=4)
    seen = set()
    for step in range(80):
        candidate = evo.ask()
        assert candidate.genome.hash not in seen
        seen.add(candidate.genome.hash)
        evo.tell(candidate, fake_metrics(candidate, accuracy=(step % 7) / 7))


def test_failures_do_not_enter_the_population() -> None:
    evo = make(population=2)
    a, b = evo.ask(), evo.ask()
    evo.tell(a, {"status": "failed", "error": "boom"})
    evo.tell(b, fake_metrics(b, 0.9))
    assert [m.candidate.id for m in evo.population] == [b.id]
    assert evo.ask().parents == (b.id,)  # breeding continues from what succeeded


def test_front_keeps_only_non_dominated() -> None:
    evo = make(population=4)
    cands = [evo.ask() for _ in range(4)]
    metrics = [(0.9, 1000), (0.8, 500), (0.7, 2000), (0.95, 5000)]  # (0.7, 2000) is dominated
    for cand, (acc, params) in zip(cands, metrics):
        evo.tell(cand, {"status": "ok", "accuracy": acc, "params": params})
    front = sorted((m.metrics["accuracy"], m.metrics["params"]) for m in evo.front)
    assert front == [(0.8, 500), (0.9, 1000), (0.95, 5000)]


def test_same_seed_same_search() -> None:
    def trace(seed: int) -> list[str]:
        evo, out = make(seed), []
        for step in range(20):
            c = evo.ask()
            out.append(json.dumps([c.genome.hash, c.parents, c.operator, c.seed]))
            evo.tell(c, fake_metrics(c, accuracy=(step * 37 % 11) / 11))
        return out

    assert trace(3) == trace(3) and trace(3) != trace(4)
