"""Asynchronous NSGA-II: ask/tell without a generation barrier, no duplicate genomes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from menndl.genome import InputSpec, SearchSpace, check
from menndl.master.evolution import Evolution
from menndl.master.nondominated import crowding_distances, front_ranks

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
        assert len(evo.population) < 6 + evo.rerank_interval  # cut back to 6 at every re-ranking


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


def test_constraints_are_enforced_before_anything_is_proposed() -> None:
    from menndl.genome import count_flops, count_params

    evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params"), population_size=4,
                    crossover_probability=0.5, seed=0, max_params=5000, max_flops=200000)  # fmt: skip
    for step in range(40):
        candidate = evo.ask()
        assert count_params(candidate.genome, SPEC) <= 5000 and count_flops(candidate.genome, SPEC) <= 200000
        evo.tell(candidate, fake_metrics(candidate, accuracy=(step % 5) / 5))


def test_impossible_constraint_exhausts_instead_of_looping() -> None:
    import pytest

    from menndl.master.evolution import SpaceExhausted

    evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy",), population_size=2,
                    crossover_probability=0.5, seed=0, max_params=1)  # fmt: skip
    with pytest.raises(SpaceExhausted):
        evo.ask()


def test_aging_keeps_the_most_recent_members() -> None:
    evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params"), population_size=5,
                    crossover_probability=0.5, seed=0, aging=True, rerank_interval=1)  # fmt: skip
    told = []
    for step in range(30):
        candidate = evo.ask()
        evo.tell(candidate, fake_metrics(candidate, accuracy=0.99 if step == 0 else 0.1))  # the first is the best
        told.append(candidate.id)
    assert sorted(m.candidate.id for m in evo.population) == told[-5:]  # the best, oldest one aged out


def test_nsga2_truncation_keeps_the_best_front() -> None:
    evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params"), population_size=5,
                    crossover_probability=0.5, seed=0, rerank_interval=3)  # fmt: skip
    best = None
    for step in range(30):
        candidate = evo.ask()
        first = step == 0
        evo.tell(candidate, {"status": "ok", "accuracy": 0.99 if first else 0.1, "params": 10 if first else 10**6})
        best = best if best is not None else candidate.id
    population = evo.population
    assert best in {m.candidate.id for m in population} and len(population) <= 5 + 3
    assert min(population, key=lambda m: m.rank).candidate.id == best


def _rows(evo: Evolution, candidates, metrics) -> list[dict]:
    rows = []
    for candidate, metric in zip(candidates, metrics):
        rows.append({"id": candidate.id, "genome": candidate.genome.to_json(), "hash": candidate.genome.hash,
                     "parents": list(candidate.parents), "operator": candidate.operator, "seed": candidate.seed,
                     **metric})  # fmt: skip
    return rows


def test_restore_rebuilds_population_front_seen_ids_and_random_state() -> None:
    original = make(seed=5, population=6)
    candidates, metrics = [], []
    for step in range(25):
        candidate = original.ask()
        metric = fake_metrics(candidate, accuracy=(step * 37 % 11) / 11) if step % 6 else {"status": "failed"}
        original.tell(candidate, metric)
        candidates.append(candidate)
        metrics.append(metric)
    rows = _rows(original, candidates, metrics)
    state = original.rng_state()
    resumed = make(seed=99, population=6)
    resumed.restore(rows, next_id=original.next_id, rng_state=state)
    assert {m.candidate.id for m in resumed.front} == {m.candidate.id for m in original.front}
    assert len(resumed.population) == 6 and all(m.metrics["status"] == "ok" for m in resumed.population)
    assert resumed.rng_state() == state and resumed.next_id == 25
    seen = {row["hash"] for row in rows}
    for _ in range(30):
        child = resumed.ask()
        assert child.genome.hash not in seen and child.id >= 25 and child.operator != "random"
        seen.add(child.genome.hash)
        resumed.tell(child, fake_metrics(child, 0.5))


def test_rng_state_round_trips_through_json() -> None:
    evo = make(seed=1)
    state = evo.rng_state()
    json.loads(state)
    first = [evo.ask().seed for _ in range(3)]
    again = make(seed=2)
    again.restore([], next_id=0, rng_state=state)
    assert [again.ask().seed for _ in range(3)] == first


@pytest.mark.parametrize("ties, aging", [(False, False), (True, False), (False, True), (True, True)])
def test_told_member_ranks_one_past_its_worst_dominator_in_the_last_ranking(ties: bool, aging: bool) -> None:
    """Between re-rankings a told member's rank is its front against the population as last re-ranked."""
    import random

    evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params", "train_seconds"),
                    population_size=20, crossover_probability=0.5, seed=0, rerank_interval=15, aging=aging)  # fmt: skip
    rng = random.Random(1)
    ranking: list[tuple[tuple[float, ...], int]] = []  # (values, rank) of the population as last re-ranked
    checked = 0
    for _ in range(300 if ties else 120):
        candidate = evo.ask()
        if ties:  # equal first objectives (the sorted prefix's edge), duplicates
            metrics = {"status": "ok", "accuracy": rng.choice([0.5, 0.6, 0.7]), "params": rng.randrange(1000, 1004),
                       "train_seconds": rng.choice([1.0, 2.0])}  # fmt: skip
        else:
            metrics = {"status": "ok", "accuracy": rng.random(), "params": rng.randrange(1000, 9000),
                       "train_seconds": rng.random()}  # fmt: skip
        evo.tell(candidate, metrics)
        population = evo.population
        if evo.ranking.since_rerank == 0:  # just re-ranked: this is the ranking the next results are ranked against
            values = np.array([m.values for m in population])
            brute = front_ranks(values)
            assert [m.rank for m in population] == brute.tolist()
            if not ties:  # (with ties, which of two equal points gets the larger gap is a matter of order)
                assert np.array_equal([m.crowding for m in population], crowding_distances(values, brute))
            ranking = [(m.values, m.rank) for m in population]
            continue
        told = next(m for m in population if m.candidate.id == candidate.id)
        dominators = [rank for values, rank in ranking
                      if all(a <= b for a, b in zip(values, told.values)) and values != told.values]  # fmt: skip
        assert told.rank == (max(dominators) + 1 if dominators else 0)
        checked += 1
    assert checked > 50


def test_ranks_computed_when_drawn_equal_ranks_computed_when_told() -> None:
    """A member's rank is needed only when a tournament draws it; computing it then gives the rank it had when told."""
    import random

    def run(look_every_step: bool) -> tuple[list[int], dict[int, int]]:
        evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params", "train_seconds"),
                        population_size=30, crossover_probability=0.5, seed=4, rerank_interval=25)  # fmt: skip
        rng = random.Random(2)
        ids = []
        for _ in range(170):
            candidate = evo.ask()
            ids.append(candidate.id * 1000 + len(candidate.parents) * 100 + sum(candidate.parents) % 100)
            metrics = {"status": "ok", "accuracy": round(rng.random(), 1), "params": rng.randrange(1000, 1010),
                       "train_seconds": rng.choice([1.0, 2.0])}  # fmt: skip  (ties and duplicates on purpose)
            evo.tell(candidate, metrics)
            if look_every_step:
                assert evo.population  # ranks everyone at once, as the eager rule did
        return ids, {m.candidate.id: m.rank for m in evo.population}

    lazy_ids, lazy_ranks = run(False)
    eager_ids, eager_ranks = run(True)
    assert lazy_ids == eager_ids  # same parents drawn: every tournament saw the same ranks
    assert lazy_ranks == eager_ranks and min(lazy_ranks.values()) == 0 and max(lazy_ranks.values()) > 0


@pytest.mark.parametrize("population, aging", [(12, False), (150, False), (150, True)])
def test_front_after_many_results_is_the_non_dominated_set_of_everything_told(population: int, aging: bool) -> None:
    """With and without aging, with re-rankings that cut the population: the front is over everything told."""
    import random

    import numpy as np

    from menndl.master.nondominated import front_ranks

    evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params", "train_seconds"),
                    population_size=population, crossover_probability=0.5, seed=5, aging=aging)  # fmt: skip
    rng = random.Random(7)
    told = []
    for _ in range(600):
        candidate = evo.ask()
        metrics = {"status": "ok", "accuracy": round(rng.random(), 2), "params": rng.randrange(100, 140),
                   "train_seconds": rng.choice([1.0, 2.0, 3.0])}  # fmt: skip
        evo.tell(candidate, metrics)
        told.append((candidate.id, (-metrics["accuracy"], metrics["params"], metrics["train_seconds"])))
    values = np.array([v for _, v in told])
    first = {told[i][0] for i in np.flatnonzero(front_ranks(values) == 0)}
    kept = {m.candidate.id for m in evo.front}
    assert kept <= first  # never a dominated member; of equal points, the first one told is kept
    assert {told_values for i, told_values in told if i in kept} == {v for i, v in told if i in first}
    assert evo.front_size == len(kept) >= 3


def test_front_unread_is_folded_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Results wait for the front in a bounded batch, even when nobody reads the front."""
    import random

    from menndl.master import population

    monkeypatch.setattr(population, "FRONT_BATCH", 16)
    evo = Evolution(space=SearchSpace(), spec=SPEC, objectives=("accuracy", "params"),
                    population_size=10, crossover_probability=0.5, seed=3)  # fmt: skip
    rng = random.Random(3)
    told = []
    for _ in range(100):
        candidate = evo.ask()
        metrics = {"status": "ok", "accuracy": rng.random(), "params": rng.randrange(100, 10000)}
        evo.tell(candidate, metrics)
        told.append((candidate.id, (-metrics["accuracy"], metrics["params"])))
        assert evo.ranking.unfolded < 16
    first = {told[i][0] for i in np.flatnonzero(front_ranks(np.array([v for _, v in told])) == 0)}
    assert {m.candidate.id for m in evo.front} == first and not evo.ranking.unfolded
