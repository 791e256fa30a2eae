"""Who survives a re-ranking of the population under NSGA-III (reference points) and SPEA2, both from DEAP.

NSGA-II's truncation (front, then crowding distance) lives in `menndl.master.population`.  For many
objectives crowding distance stops separating solutions (most of the population is non-dominated);
NSGA-III keeps the fronts that fit and fills the rest from the critical front by niching around
reference points (Deb and Jain, 2014), SPEA2 by strength and nearest-neighbour density (Zitzler et al.,
2001).  The non-dominated sort is menndl's (`menndl.master.nondominated`: numpy, fast at 10,000 members;
DEAP's sorts compare every pair in Python); the extreme points, intercepts and niching are DEAP's
(`deap.tools.emo`), as are `selSPEA2` and the Das-Dennis reference points; the association to reference
lines is DEAP's formula as one matrix product (`associate`).  All objectives are minimised.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from menndl.master.nondominated import crowding_distances, front_ranks

DEFAULT_MAX_REFERENCE_POINTS = 120  # default reference points at most (4 objectives: 7 divisions, 120 points)


def reference_point_count(objectives: int, divisions: int) -> int:
    """How many Das-Dennis points ``divisions`` gives: C(divisions + objectives - 1, objectives - 1)."""
    return math.comb(divisions + objectives - 1, objectives - 1)


def default_divisions(objectives: int, population: int) -> int:
    """The most divisions whose points number at most the population and `DEFAULT_MAX_REFERENCE_POINTS` (>= 1)."""
    limit = max(objectives, min(population, DEFAULT_MAX_REFERENCE_POINTS))
    divisions = 1
    if objectives < 2:  # one objective: one point whatever the divisions
        return divisions
    while reference_point_count(objectives, divisions + 1) <= limit:
        divisions += 1
    return divisions


def reference_points(
    objectives: int, population: int, divisions: int | None = None, points: Sequence[Sequence[float]] = ()
) -> np.ndarray:
    """NSGA-III's reference points: the job's own ``points``, else DEAP's uniform ones with ``divisions``.

    Returns:
        points x objectives.
    """
    if points:
        return np.asarray(points, dtype=float)
    from deap import tools  # (imported only by a search that selects with DEAP: the master starts fast)

    return np.asarray(
        tools.uniform_reference_points(objectives, divisions or default_divisions(objectives, population))
    )


def nsga3_survivors(
    values: np.ndarray, ranks: np.ndarray, size: int, points: np.ndarray, rng: random.Random
) -> tuple[np.ndarray, np.ndarray]:
    """NSGA-III's survivors of ``values`` (rows x objectives, minimised, with their front ``ranks``).

    Whole fronts are kept while they fit; the rest come from the critical front by `niche_picks` (seeded
    from ``rng``; numpy's global generator is not touched).

    Returns:
        The kept rows' indices, and for each its niche's survivor count negated (a tournament's tie-break:
        members of sparse niches win).
    """
    from deap.tools import emo

    count = len(values)
    if count <= size:
        kept = np.arange(count)
        critical = np.empty(0, dtype=np.int64)
    else:
        order = np.argsort(ranks, kind="stable")
        boundary = ranks[order[size - 1]]  # the critical front
        kept = order[ranks[order] < boundary]
        critical = order[ranks[order] == boundary]
    considered = np.concatenate([kept, critical])
    fitnesses = values[considered]
    low, span = fitnesses.min(axis=0), np.ptp(fitnesses, axis=0)
    fitnesses = (fitnesses - low) / np.where(span > 0, span, 1.0)  # objectives of any scale (params ~1e5, accuracy ~1)
    best, worst = fitnesses.min(axis=0), fitnesses.max(axis=0)
    extreme = emo.find_extreme_points(fitnesses, best)
    first = fitnesses[ranks[considered] == ranks[considered].min()]
    intercepts = emo.find_intercepts(extreme, best, worst, first.max(axis=0))
    niches, distances = associate(fitnesses, points, best, intercepts)
    whole = len(kept)  # rows of the fronts kept whole; the critical front's rows follow them in `niches`
    counts = np.bincount(niches[:whole], minlength=len(points)).astype(np.int64)
    niche_of_kept = niches[:whole]
    if len(critical) and whole < size:
        picked = niche_picks(niches[whole:], distances[whole:], counts, size - whole, rng.randrange(2**32))
        counts += np.bincount(niches[whole + picked], minlength=len(points))
        kept = np.concatenate([kept, critical[picked]])
        niche_of_kept = np.concatenate([niche_of_kept, niches[whole + picked]])
    return kept, -counts[niche_of_kept].astype(float)


def niche_picks(niches: np.ndarray, distances: np.ndarray, counts: np.ndarray, take: int, seed: int) -> np.ndarray:
    """Which ``take`` candidates NSGA-III's niching picks (Deb and Jain's Algorithm 4, DEAP's ``niching``).

    DEAP's loop, in rounds: among the niches that still have candidates, those with the fewest members so
    far each get one, in random order, the closest candidate to the reference line for a niche still empty,
    a random one otherwise.  The same picks in one sort: a niche with ``c`` members so far offers its
    candidates at levels ``c, c + 1, ...`` (closest first when ``c`` is 0, otherwise in random order), and
    candidates are taken by level, at random within one.  DEAP's loop scans the critical front once per
    pick: 90 ms a re-ranking at population 10,000, against a few here (docs/scaling.md).

    Args:
        niches, distances: each candidate's reference direction and its distance to it.
        counts: members of each niche among the survivors so far (not changed).
        take: how many to pick (at most the candidates).
        seed: seeds the random choices.

    Returns:
        Indices into ``niches``, in the order picked.
    """
    generator = np.random.default_rng(seed)
    count = len(niches)
    by_distance = np.lexsort((distances, niches))  # per niche, closest first
    first_of_niche = np.r_[True, niches[by_distance][1:] != niches[by_distance][:-1]]
    closest = np.zeros(count, dtype=bool)
    closest[by_distance[first_of_niche]] = True
    closest &= counts[niches] == 0  # the closest candidate goes first only into an empty niche
    within = np.lexsort((generator.random(count), ~closest, niches))  # per niche: its offer order
    grouped = niches[within]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    position = np.arange(count) - np.repeat(starts, np.diff(np.r_[starts, count]))
    level = counts[grouped] + position
    return within[np.lexsort((generator.random(count), level))][:take]


def associate(
    fitnesses: np.ndarray, points: np.ndarray, best: np.ndarray, intercepts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest reference line and its distance to it, after normalisation by ``best`` and ``intercepts``.

    DEAP's ``associate_to_niche`` (Deb and Jain's Algorithm 3), as one matrix product: the perpendicular
    distance to the line through a point ``w`` is ``sqrt(|f|^2 - (f . w / |w|)^2)``.  DEAP builds rows x points x
    objectives arrays: 54 ms a re-ranking at 12,000 rows and 120 points, against a few here.
    """
    normalised = (fitnesses - best) / (intercepts - best + np.finfo(float).eps)
    directions = points / np.linalg.norm(points, axis=1, keepdims=True)
    along = normalised @ directions.T  # (rows and directions are >= 0: the nearest line has the largest)
    niches = along.argmax(axis=1)
    squared = np.einsum("ij,ij->i", normalised, normalised) - along[np.arange(len(niches)), niches] ** 2
    return niches, np.sqrt(np.maximum(squared, 0.0))


class _Individual:
    """What DEAP's selSPEA2 reads: a fitness, and the row it stands for."""

    __slots__ = ("fitness", "row")

    def __init__(self, fitness: Any, row: int) -> None:
        self.fitness, self.row = fitness, row


def spea2_survivors(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """SPEA2's archive of ``values`` (rows x objectives, minimised) by DEAP's `selSPEA2`.

    Returns:
        The kept rows' indices, and each one's crowding distance among them (a tournament's tie-break).
    """
    if len(values) <= size:
        kept = np.arange(len(values))
    else:
        from deap import base, tools

        fitness_class = type("MinimisedFitness", (base.Fitness,), {"weights": (-1.0,) * values.shape[1]})
        individuals = [_Individual(fitness_class(tuple(row)), i) for i, row in enumerate(values.tolist())]
        kept = np.asarray(sorted(individual.row for individual in tools.selSPEA2(individuals, size)), dtype=np.int64)
    survivors = values[kept]
    return kept, crowding_distances(survivors, front_ranks(survivors))
