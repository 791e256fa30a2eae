"""The numpy non-dominated sort and crowding distances agree with DEAP's (the reference) on any input."""

from __future__ import annotations

import numpy as np
from deap import base, tools
from hypothesis import given, settings
from hypothesis import strategies as st

from menndl.master.nondominated import (
    crowding_distances,
    dominated_by,
    dominated_by_any,
    first_front,
    front_ranks,
    no_worse_than,
    nsga2_order,
)


class _Individual:
    fitness: base.Fitness


def deap_fronts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front index and crowding distance of each row by DEAP (every objective minimised)."""
    fitness_class = type("F", (base.Fitness,), {"weights": (-1.0,) * values.shape[1]})
    individuals = []
    for row in values:
        individual = _Individual()
        individual.fitness = fitness_class(tuple(row))
        individuals.append(individual)
    position = {id(individual): i for i, individual in enumerate(individuals)}
    ranks, crowding = np.zeros(len(values), dtype=int), np.zeros(len(values))
    for rank, front in enumerate(tools.sortNondominated(individuals, len(individuals))):
        tools.emo.assignCrowdingDist(front)
        for individual in front:
            ranks[position[id(individual)]] = rank
            crowding[position[id(individual)]] = individual.fitness.crowding_dist
    return ranks, crowding


@settings(max_examples=60, deadline=None)
@given(
    objectives=st.integers(1, 6),
    rows=st.integers(1, 60),
    levels=st.integers(2, 6),
    seed=st.integers(0, 2**31),
)
def test_fronts_equal_deap_with_ties(objectives: int, rows: int, levels: int, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, levels, (rows, objectives)).astype(float)
    ranks = deap_fronts(values)[0]
    assert np.array_equal(front_ranks(values), ranks)
    assert np.array_equal(first_front(values), ranks == 0)


@settings(max_examples=40, deadline=None)
@given(objectives=st.integers(1, 6), rows=st.integers(0, 400), levels=st.integers(2, 1000), seed=st.integers(0, 2**31))
def test_first_front_is_front_zero(objectives: int, rows: int, levels: int, seed: int) -> None:
    values = np.random.default_rng(seed).integers(0, levels, (rows, objectives)).astype(float)
    assert np.array_equal(first_front(values), front_ranks(values) == 0)


@settings(max_examples=30, deadline=None)
@given(objectives=st.integers(2, 4), rows=st.integers(3, 150), seed=st.integers(0, 2**31))
def test_crowding_equals_deap_on_distinct_values(objectives: int, rows: int, seed: int) -> None:
    values = np.random.default_rng(seed).random((rows, objectives))
    ranks, crowding = deap_fronts(values)
    assert np.allclose(crowding_distances(values, front_ranks(values)), crowding)


def test_dominated_by_any_and_truncation_order() -> None:
    columns = np.array([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0]])  # objectives x rows: (1,1) (2,1) (1,1)
    assert dominated_by_any(columns, np.array([2.0, 1.0])).tolist() == [True, False, True]
    assert not dominated_by_any(columns, np.array([1.0, 1.0])).any()  # equal is not dominating
    order = nsga2_order(np.array([1, 0, 0, 2]), np.array([5.0, 1.0, np.inf, 0.0]))
    assert order.tolist() == [2, 1, 0, 3]


def test_empty_and_large_inputs() -> None:
    assert front_ranks(np.empty((0, 3))).tolist() == []
    values = np.random.default_rng(0).random((3000, 3))
    ranks = front_ranks(values)
    first = values[ranks == 0]
    assert not any(dominated_by_any(first.T, point).any() for point in first)
    for point, rank in zip(values[:50], ranks[:50]):  # a row's front is one more than its best dominator's
        dominated = dominated_by_any(values.T, point)
        assert rank == (ranks[dominated].max() + 1 if dominated.any() else 0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 60), st.integers(1, 4), st.integers(0, 2**16))
def test_dominated_by_mirrors_dominated_by_any(objectives: int, rows: int, levels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    columns = rng.integers(0, levels, (objectives, rows)).astype(float)  # ties on purpose
    point = rng.integers(0, levels, objectives).astype(float)
    brute = np.array([all(point <= columns[:, i]) and any(point < columns[:, i]) for i in range(rows)])
    assert np.array_equal(dominated_by(columns, point), brute)
    assert np.array_equal(dominated_by(columns, point), dominated_by_any(-columns, -point))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 60), st.integers(1, 4), st.integers(0, 2**16))
def test_no_worse_than_is_dominated_by_any_into_buffers(objectives: int, rows: int, levels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    columns = rng.integers(0, levels, (objectives, rows)).astype(float)  # ties (and equal columns) on purpose
    point = tuple(rng.integers(0, levels, objectives).astype(float).tolist())
    out, scratch = np.ones(rows, dtype=bool), np.ones(rows, dtype=bool)  # stale contents must not matter
    no_worse_than(columns, point, out, scratch)
    assert np.array_equal(out, dominated_by_any(columns, np.asarray(point)))


@settings(max_examples=8, deadline=None)
@given(
    objectives=st.integers(4, 6),
    rows=st.integers(1000, 2600),
    levels=st.sampled_from([3, 8, 1000]),
    seed=st.integers(0, 2**31),
)
def test_fronts_across_bitset_blocks(objectives: int, rows: int, levels: int, seed: int) -> None:
    """More rows than one bitset block: every row's front is one more than its worst dominator's (0: none)."""
    values = np.random.default_rng(seed).integers(0, levels, (rows, objectives)).astype(float)
    ranks = front_ranks(values)
    for start in range(0, rows, 500):  # the dominance matrix, 500 rows at a time
        point = values[start : start + 500, None, :]
        dominated = np.all(values[None] <= point, axis=2) & np.any(values[None] < point, axis=2)
        worst = np.where(dominated, ranks[None], -1).max(axis=1)
        assert np.array_equal(ranks[start : start + 500], worst + 1)
    assert np.array_equal(first_front(values), ranks == 0)
