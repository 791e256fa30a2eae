"""NSGA-III and SPEA2 survival (`menndl.master.survival`) against DEAP, and the population that uses them."""

from __future__ import annotations

import random

import numpy as np
import pytest
from deap import base, tools
from deap.tools import emo
from hypothesis import given, settings
from hypothesis import strategies as st

from menndl.genome import ConvBlock, Genome, TrainParams
from menndl.master import survival
from menndl.master.candidate import Candidate
from menndl.master.nondominated import first_front, front_ranks
from menndl.master.population import Population

pytestmark = pytest.mark.timeout(120)


def random_values(seed: int, rows: int, objectives: int, levels: int) -> np.ndarray:
    """Rows x objectives to minimise: uniform floats (``levels`` 0) or integers in [0, levels) (ties)."""
    rng = np.random.default_rng(seed)
    if levels:
        return rng.integers(0, levels, (rows, objectives)).astype(float)
    return rng.random((rows, objectives)) * rng.choice([1.0, 1e5], objectives)  # objectives of any scale


@settings(max_examples=150, deadline=None)
@given(
    objectives=st.integers(2, 5),
    rows=st.integers(1, 90),
    size_fraction=st.floats(0.05, 1.2),
    levels=st.sampled_from([0, 0, 3, 8]),
    seed=st.integers(0, 2**31),
)
def test_nsga3_keeps_size_rows_whole_fronts_first(
    objectives: int, rows: int, size_fraction: float, levels: int, seed: int
) -> None:
    values = random_values(seed, rows, objectives, levels)
    size = max(1, int(rows * size_fraction))
    ranks = front_ranks(values)
    points = survival.reference_points(objectives, size)
    kept, crowding = survival.nsga3_survivors(values, ranks, size, points, random.Random(seed))
    assert len(kept) == min(size, rows) and len(set(kept.tolist())) == len(kept)
    assert kept.min() >= 0 and kept.max() < rows
    assert crowding.shape == kept.shape and np.all(crowding <= -1)  # minus its niche's count, itself included
    if rows <= size:
        assert sorted(kept.tolist()) == list(range(rows))
        return
    critical = np.sort(ranks)[size - 1]
    chosen = np.zeros(rows, dtype=bool)
    chosen[kept] = True
    assert np.all(chosen[ranks < critical])  # every row of the fronts before the critical one
    assert not np.any(chosen[ranks > critical])  # and none after it


def test_nsga3_leaves_numpy_and_python_generators_alone_and_repeats_with_its_seed() -> None:
    values = random_values(3, 120, 3, 0)
    ranks = front_ranks(values)
    points = survival.reference_points(3, 40)
    np.random.seed(11)
    expected_next = np.random.random()
    np.random.seed(11)
    first, _ = survival.nsga3_survivors(values, ranks, 40, points, random.Random(5))
    assert np.random.random() == expected_next  # numpy's global generator left as it was
    again, _ = survival.nsga3_survivors(values, ranks, 40, points, random.Random(5))
    assert np.array_equal(first, again)


@settings(max_examples=100, deadline=None)
@given(objectives=st.integers(2, 5), rows=st.integers(1, 80), divisions=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_associate_equals_deap(objectives: int, rows: int, divisions: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    fitnesses = rng.random((rows, objectives)) * 3 - 0.5
    points = np.asarray(tools.uniform_reference_points(objectives, divisions))
    best = fitnesses.min(axis=0)
    intercepts = best + rng.random(objectives) * 2 + 0.1
    niches, distances = survival.associate(fitnesses, points, best, intercepts)
    want_niches, want_distances = emo.associate_to_niche(fitnesses, points, best, intercepts)
    assert np.array_equal(niches, want_niches)
    assert np.allclose(distances, want_distances, rtol=0, atol=1e-9)


def test_associate_equals_deap_for_rows_on_the_reference_lines() -> None:
    """Rows on a reference line: the same niches; distances near 0 differ by the formula's rounding only.

    ``sqrt(|f|^2 - (f . w)^2)`` cancels for a row on the line through ``w``: about 1e-8 where DEAP's
    explicit projection gives about 1e-16 (the nearest row of an empty niche is picked from these).
    """
    rng = np.random.default_rng(7)
    for objectives, divisions in [(2, 5), (3, 4), (4, 3), (5, 2)]:
        points = np.asarray(tools.uniform_reference_points(objectives, divisions))
        fitnesses = points[rng.integers(0, len(points), 60)] * rng.uniform(0.1, 3.0, (60, 1))
        zero, one = np.zeros(objectives), np.ones(objectives)
        niches, distances = survival.associate(fitnesses, points, zero, one)
        want_niches, want_distances = emo.associate_to_niche(fitnesses, points, zero, one)
        assert np.array_equal(niches, want_niches)
        assert np.allclose(distances, want_distances, rtol=0, atol=1e-6)


def niche_of(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The reference direction nearest each row (rows already normalised: ideal 0, intercepts 1)."""
    zero = np.zeros(values.shape[1])
    return emo.associate_to_niche(values, points, zero, np.ones(values.shape[1]))[0]


def test_nsga3_spreads_an_all_non_dominated_population_over_the_reference_directions() -> None:
    """A line of 2 objectives: 10 points spread along it, 90 clustered in the middle; keep 10."""
    rng = np.random.default_rng(0)
    spread = np.linspace(0.0, 1.0, 10)
    cluster = 0.5 + rng.uniform(-0.03, 0.03, 90)
    first = np.concatenate([spread, cluster])
    values = np.stack([first, 1.0 - first], axis=1)  # f1 + f2 = 1: nobody dominates anybody
    ranks = front_ranks(values)
    assert np.all(ranks == 0)  # the critical front is the whole population
    size = 10
    points = survival.reference_points(2, size)
    assert len(points) == 10
    niches = niche_of(values, points)
    kept, _ = survival.nsga3_survivors(values, ranks, size, points, random.Random(1))
    assert len(kept) == size
    chosen = len(set(niches[kept].tolist()))
    baseline = len(set(niches[np.random.default_rng(2).choice(len(values), size, replace=False)].tolist()))
    assert chosen >= baseline
    assert chosen == len(points) > baseline  # one survivor per direction; a random subset bunches up


def test_nsga3_spreads_over_the_three_objective_simplex() -> None:
    rng = np.random.default_rng(4)
    corners = np.eye(3)
    cluster = rng.dirichlet([40.0, 40.0, 40.0], 300)  # near the centre of the simplex
    values = np.concatenate([corners, rng.dirichlet([1.0, 1.0, 1.0], 30), cluster])
    ranks = front_ranks(values)
    assert np.all(ranks == 0)
    size = 30
    points = survival.reference_points(3, size)  # 28 points (6 divisions)
    niches = niche_of(values, points)
    kept, _ = survival.nsga3_survivors(values, ranks, size, points, random.Random(0))
    subset = np.random.default_rng(0).choice(len(values), size, replace=False)
    assert len(set(niches[kept].tolist())) > len(set(niches[subset].tolist()))


class _Individual:
    """What DEAP's selSPEA2 reads: a fitness."""

    fitness: base.Fitness


def deap_spea2(values: np.ndarray, size: int) -> set[int]:
    """The rows DEAP's selSPEA2 keeps of ``values`` (every objective minimised)."""
    fitness_class = type("F", (base.Fitness,), {"weights": (-1.0,) * values.shape[1]})
    individuals = []
    for row in values:
        individual = _Individual()
        individual.fitness = fitness_class(tuple(row))
        individuals.append(individual)
    position = {id(individual): i for i, individual in enumerate(individuals)}
    return {position[id(individual)] for individual in tools.selSPEA2(individuals, size)}


@settings(max_examples=60, deadline=None)
@given(objectives=st.integers(2, 5), rows=st.integers(2, 70), size_fraction=st.floats(0.1, 0.95),
       seed=st.integers(0, 2**31))  # fmt: skip
def test_spea2_keeps_what_deap_keeps(objectives: int, rows: int, size_fraction: float, seed: int) -> None:
    values = random_values(seed, rows, objectives, 0)
    size = max(1, int(rows * size_fraction))
    kept, crowding = survival.spea2_survivors(values, size)
    assert len(kept) == size and crowding.shape == kept.shape
    assert set(kept.tolist()) == deap_spea2(values, size)
    assert np.array_equal(kept, np.sort(kept))


def test_spea2_keeps_everything_that_fits() -> None:
    values = random_values(1, 12, 3, 0)
    kept, crowding = survival.spea2_survivors(values, 12)
    assert kept.tolist() == list(range(12)) and len(crowding) == 12


@pytest.mark.parametrize(
    "objectives, population, divisions, points",
    [(2, 16, 15, 16), (4, 16, 2, 10), (4, 10000, 7, 120), (3, 91, 12, 91)],
)
def test_default_divisions(objectives: int, population: int, divisions: int, points: int) -> None:
    assert survival.default_divisions(objectives, population) == divisions
    assert survival.reference_point_count(objectives, divisions) == points
    reference = survival.reference_points(objectives, population)
    assert reference.shape == (points, objectives)
    assert len(tools.uniform_reference_points(objectives, divisions)) == points
    assert np.allclose(reference.sum(axis=1), 1.0)  # on the unit simplex


def test_reference_points_from_the_job_win() -> None:
    given_points = [[1.0, 0.0], [0.3, 0.7]]
    assert survival.reference_points(2, 50, None, given_points).tolist() == given_points
    assert survival.reference_points(2, 50, 4).shape == (5, 2)


SPEC_TRAIN = TrainParams(learning_rate=0.001, batch_size=32, optimizer="adam", weight_decay=0.0)
GENOME = Genome((ConvBlock(8, 3, "relu", True),), (), SPEC_TRAIN)
OBJECTIVES = ("accuracy", "params", "train_seconds", "latency")


@pytest.mark.parametrize("selection", ["nsga3", "spea2"])
def test_population_of_four_objectives_stays_bounded_and_its_front_is_exact(selection: str) -> None:
    size = 50
    population = Population(OBJECTIVES, size, selection=selection, rng=random.Random(3))
    rng = random.Random(9)
    told: list[tuple[int, tuple[float, ...]]] = []
    for i in range(500):
        metrics = {"status": "ok", "accuracy": rng.random(), "params": rng.randrange(100, 100_000),
                   "train_seconds": rng.uniform(1, 30), "latency": rng.uniform(1e-4, 1e-2)}  # fmt: skip
        population.add(Candidate(i, GENOME, (), "random", i), metrics)
        told.append((i, (-metrics["accuracy"], metrics["params"], metrics["train_seconds"], metrics["latency"])))
        assert len(population) <= size + population.rerank_interval
        if i % 25 == 0 and len(population) > 1:
            ids = {id(member) for member in population.members}
            for _ in range(10):
                assert id(population.tournament(rng)) in ids
    assert len(population) >= size
    values = np.array([v for _, v in told])
    expected = {told[k][0] for k in np.flatnonzero(front_ranks(values) == 0)}
    assert {member.candidate.id for member in population.front} == expected
    assert population.front_size == len(expected) > 10
    members = population.members
    assert all(member.rank >= 0 for member in members)
    member_values = np.array([m.values for m in members])
    assert set(np.flatnonzero(first_front(member_values)).tolist()) <= {
        k for k, m in enumerate(members) if m.rank == 0
    }  # a member nobody in the population dominates is never ranked behind


@pytest.mark.parametrize("selection", ["nsga3", "spea2"])
def test_population_tournaments_prefer_the_first_front(selection: str) -> None:
    population = Population(("accuracy", "params"), 20, rerank_interval=5, selection=selection, rng=random.Random(1))
    rng = random.Random(4)
    for i in range(200):
        metrics = {"status": "ok", "accuracy": rng.random(), "params": rng.randrange(100, 10_000)}
        population.add(Candidate(i, GENOME, (), "random", i), metrics)
    members = population.members
    best = {id(m) for m in members if m.rank == 0}
    wins = sum(id(population.tournament(rng)) in best for _ in range(400))
    share = len(best) / len(members)
    assert wins / 400 > share  # a binary tournament picks the first front more often than a uniform draw


@settings(max_examples=200, deadline=None)
@given(candidates=st.integers(1, 60), niches=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_niche_picks_agree_with_deaps_niching(candidates: int, niches: int, seed: int) -> None:
    """The same levels and niches as DEAP's loop; only the choice among equals at the last level is random."""
    rng = np.random.default_rng(seed)
    of = rng.integers(0, niches, candidates)
    distances = rng.random(candidates)
    counts = rng.integers(0, 3, niches) * (rng.random(niches) < 0.6)
    take = int(rng.integers(1, candidates + 1))
    mine = survival.niche_picks(of, distances, counts, take, seed)
    assert len(set(mine.tolist())) == take == len(mine)
    theirs = counts.copy()
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        emo.niching(list(range(candidates)), take, of, distances, theirs)
    finally:
        np.random.set_state(state)
    ours = counts + np.bincount(of[mine], minlength=niches)

    def levels(final: np.ndarray) -> list[int]:
        return sorted(level for j in range(niches) for level in range(int(counts[j]), int(final[j])))

    assert levels(ours) == levels(theirs)  # as many picks at every level
    last = levels(ours)[-1]
    assert np.array_equal(np.minimum(ours, last), np.minimum(theirs, last))  # below the last level: the same niches
    for niche in np.flatnonzero((counts == 0) & (ours > 0)):  # an empty niche gets its closest candidate first
        members = np.flatnonzero(of == niche)
        assert members[np.argmin(distances[members])] in mine.tolist()
