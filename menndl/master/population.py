"""The population that selection draws parents from, ranked as NSGA-II ranks it, and the all-time Pareto front.

Every ``rerank_interval`` results (and whenever the population has doubled
since, while it grows) the whole population is re-ranked with a fast
non-dominated sort (`menndl.master.nondominated`), crowding distances are
recomputed and the population is cut back to its size (NSGA-II truncation,
or the oldest members out with ``aging``).  In between, a result told since
gets its front against the population as then ranked (one more than its worst
dominator's there; one vectorised dominance test, done the first time a
tournament draws it), so every rank a tournament compares refers to the same
population.  The Pareto front over all evaluations is brought up to date in
batches (one non-dominated sort of the front and the results told since).
Plain Python + numpy: no torch, no MPI.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from menndl.master import survival
from menndl.master.nondominated import crowding_distances, first_front, front_ranks, no_worse_than, nsga2_order
from menndl.objectives import DIRECTIONS

if TYPE_CHECKING:
    from menndl.master.candidate import Candidate

UNRANKED = -1  # a member told since the last re-ranking whose rank nobody has needed yet
FRONT_BATCH = 4096  # results told before the all-time Pareto front is brought up to date unasked


def default_rerank_interval(population_size: int) -> int:
    """Results between full re-rankings: a fifth of the population, but at least 32 (or the population).

    A re-ranking has a fixed cost of numpy calls even for a few dozen members;
    re-ranking after every few results would dominate the master's time at
    small populations (docs/scaling.md).
    """
    return max(population_size // 5, min(population_size, 32))


@dataclass(eq=False)
class Member:
    """An evaluated candidate as selection sees it."""

    candidate: Candidate
    metrics: dict[str, Any]
    values: tuple[float, ...] = ()  # objectives, each to be minimised
    rank: int = field(default=0)  # as of the last `Population.members` (selection keeps its own lists)
    crowding: float = field(default=0.0)


class Population:
    """Successful evaluations ranked by (front, crowding distance), cut back to ``size``; the all-time front."""

    def __init__(self, objectives: Sequence[str], size: int, rerank_interval: int | None = None,
                 aging: bool = False, selection: str = "nsga2", reference_points: np.ndarray | None = None,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        """An empty population.

        Args:
            objectives: names from `menndl.objectives.DIRECTIONS`.
            size: members kept at each re-ranking.
            rerank_interval: results between full re-rankings (default `default_rerank_interval`).
            aging: regularized evolution: the oldest members leave instead of the worst.
            selection: who survives a re-ranking (``nsga2``, ``nsga3``, ``spea2``: `menndl.master.survival`);
                tournaments compare front ranks, then crowding distance (``nsga2``, ``spea2``) or how few
                members share the member's reference direction (``nsga3``).
            reference_points: NSGA-III's (points x objectives; default `survival.reference_points`).
            rng: draws the seeds of NSGA-III's random niching (the search's generator, so a resume repeats it).
        """
        self.objectives = tuple(objectives)
        self.size, self.aging = size, aging
        self.selection = selection
        if selection == "nsga3" and reference_points is None:
            reference_points = survival.reference_points(len(self.objectives), size)
        self.reference_points = reference_points
        self._rng = rng or random.Random(0)
        # The tie-break of a member told since the last re-ranking: never ahead of a ranked one (crowding >= 0;
        # NSGA-III's negated niche counts are <= 0)
        self._unknown_crowding = -math.inf if selection == "nsga3" else 0.0
        self.rerank_interval = max(1, rerank_interval or default_rerank_interval(size))
        self._signs = tuple(-DIRECTIONS[name] for name in self.objectives)  # Python floats: values stay plain floats
        self._members: list[Member] = []
        # objectives x members, column-major for fast dominance tests; columns [0, len(members)) are in use
        self._store = np.empty((len(self.objectives), size + self.rerank_interval + 1))
        # The last re-ranking: members [0, ranked) were ranked then (stored worst front first unless aging);
        # their ranks as an array (aging: `_rank_at` takes the worst of its dominators' ranks) and dominance
        # masks for `_rank_at`.  Members told since are stored after them, unranked until a tournament draws them.
        self._ranked = 0
        self._ranks = np.zeros(0, dtype=np.int64)
        self._scratch = np.empty((2, 0), dtype=bool)
        # Each member's front rank and crowding distance, by position: what tournaments read.  Plain lists
        # rebuilt at each re-ranking from its arrays (no pass over thousands of scattered member objects).
        self._rank_of: list[int] = []
        self._crowding_of: list[float] = []
        self._since_rerank = 0
        # The all-time Pareto front as of the last `_fold_front`, and the results told since, with their
        # objectives as rows (a fold reads arrays, not thousands of scattered member objects)
        self._front: list[Member] = []
        self._front_values = np.empty((0, len(self.objectives)))
        self._unfolded: list[Member] = []
        self._unfolded_values = np.empty((FRONT_BATCH, len(self.objectives)))

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> list[Member]:
        """The current parents (including those told since the last re-ranking, ranked), in no promised order.

        Each member's ``rank`` and ``crowding`` are set to the values selection uses now.
        """
        for index in range(self._ranked, len(self._members)):
            self._rank_at(index)
        for member, rank, distance in zip(self._members, self._rank_of, self._crowding_of):
            member.rank, member.crowding = rank, distance
        return list(self._members)

    @property
    def front(self) -> list[Member]:
        """Non-dominated members among every successful evaluation so far, in the order they were told."""
        self._fold_front()
        return list(self._front)

    @property
    def front_size(self) -> int:
        """How many members `front` has (without copying it)."""
        self._fold_front()
        return len(self._front)

    @property
    def since_rerank(self) -> int:
        """Results told since the last full re-ranking (0 right after one)."""
        return self._since_rerank

    @property
    def unfolded(self) -> int:
        """Results told since the all-time front was last brought up to date."""
        return len(self._unfolded)

    def add(self, candidate: Candidate, metrics: dict[str, Any]) -> None:
        """Take one successful evaluation in; re-rank when due."""
        values = self._minimised(metrics)
        member = Member(candidate, metrics, values, UNRANKED)
        count = len(self._members)
        if count == self._store.shape[1]:  # grow the preallocated array (amortised, no copy per result)
            grown = np.empty((len(self.objectives), 2 * count + 16))
            grown[:, :count] = self._store
            self._store = grown
        store = self._store
        for row, value in enumerate(values):  # scalar stores: cheaper than one strided column assignment
            store[row, count] = value
        self._members.append(member)
        self._rank_of.append(UNRANKED)
        self._crowding_of.append(self._unknown_crowding)
        self._since_rerank += 1
        if self._since_rerank >= self.rerank_interval or count >= 2 * self._ranked:  # (or grown twofold)
            self._rerank()
        unfolded = self._unfolded_values[len(self._unfolded)]
        for column, value in enumerate(values):
            unfolded[column] = value
        self._unfolded.append(member)
        if len(self._unfolded) == FRONT_BATCH:
            self._fold_front()

    def tournament(self, rng: random.Random) -> Member:
        """Binary tournament: lower front rank wins, then larger crowding distance."""
        if len(self._members) == 1:
            return self._members[0]
        count = len(self._members)
        i = int(rng.random() * count)  # two distinct members, uniformly (cheaper than rng.sample)
        j = int(rng.random() * (count - 1))
        j += j >= i
        rank_i, rank_j = self._rank_at(i), self._rank_at(j)
        if rank_i != rank_j:
            return self._members[i if rank_i < rank_j else j]
        crowding_i, crowding_j = self._crowding_of[i], self._crowding_of[j]
        if crowding_i != crowding_j:
            return self._members[i if crowding_i > crowding_j else j]
        return self._members[i if rng.random() < 0.5 else j]

    def restore(self, evaluations: Sequence[tuple[Candidate, dict[str, Any]]]) -> None:
        """Start again from these successful evaluations (in id order): ranked, cut back, front exact."""
        self._members, self._front, self._unfolded = [], [], []
        self._front_values = np.empty((0, len(self.objectives)))
        self._rank_of, self._crowding_of = [], []
        self._ranked, self._since_rerank = 0, 0
        ok = [Member(candidate, metrics, self._minimised(metrics)) for candidate, metrics in evaluations]
        if ok:
            everything = np.array([member.values for member in ok])
            first = first_front(everything)
            self._front = [member for member, kept in zip(ok, first.tolist()) if kept]
            self._front_values = everything[first]
            self._members = ok
            self._store = np.ascontiguousarray(everything.T)
            self._rerank()

    def _minimised(self, metrics: dict[str, Any]) -> tuple[float, ...]:
        """The objectives of ``metrics``, each turned into a value to minimise."""
        return tuple(float(metrics[name]) * sign for name, sign in zip(self.objectives, self._signs))

    def _rank_at(self, index: int) -> int:
        """The rank of the member stored at ``index``, computed now if nobody needed it before.

        A member told since the last re-ranking gets its front against the
        population as then ranked: one more than its worst dominator's there.
        """
        rank = self._rank_of[index]
        if rank != UNRANKED:
            return rank
        ranked = self._ranked
        worst = -1
        if ranked:
            no_worse = self._scratch[0, :ranked]
            no_worse_than(self._store[:, :ranked], self._members[index].values, no_worse, self._scratch[1, :ranked])
            if not self.aging:  # stored worst front first: the first dominator is the worst (no index list)
                first = int(no_worse.argmax())
                if no_worse[first]:
                    worst = self._rank_of[first]
            elif no_worse.any():
                worst = int(self._ranks[no_worse].max())
        self._rank_of[index] = worst + 1
        return worst + 1

    def _rerank(self) -> None:
        """Exact fronts and crowding distances for everyone; cut the population back to its size."""
        self._since_rerank = 0
        members = self._members
        values = self._store[:, : len(members)].T
        excess = len(members) - self.size
        if self.aging:  # members stay in the order they were told: the oldest go, the rest are ranked
            if excess > 0:
                members, values = members[excess:], values[excess:]
            ranks = front_ranks(values)
            crowding = crowding_distances(values, ranks)
        elif self.selection != "nsga2":  # NSGA-III or SPEA2 (from DEAP); stored worst front first
            ranks = front_ranks(values)
            if self.selection == "nsga3":
                assert self.reference_points is not None
                kept, crowding = survival.nsga3_survivors(values, ranks, self.size, self.reference_points, self._rng)
                ranks = ranks[kept]  # whole fronts and part of the next: survivors keep their fronts
            else:
                kept, crowding = survival.spea2_survivors(values, self.size)
                ranks = front_ranks(values[kept])  # an archive need not hold whole fronts: ranked among itself
            order = np.lexsort((-crowding, ranks))[::-1]
            kept = kept[order]
            members = [members[i] for i in kept.tolist()]
            values, ranks, crowding = values[kept], ranks[order], crowding[order]
        else:  # NSGA-II truncation: the worst fronts are cut, so survivors keep their fronts; stored worst first
            ranks = front_ranks(values)
            crowding = crowding_distances(values, ranks)
            order = nsga2_order(ranks, crowding)[: self.size][::-1]  # (see `_rank_at`)
            members = [members[i] for i in order.tolist()]
            values, ranks, crowding = values[order], ranks[order], crowding[order]
            if excess > 0:  # crowding is within a front: only the worst kept one (stored first) may have lost members
                boundary = ranks == ranks[0]
                crowding[boundary] = crowding_distances(values[boundary], ranks[boundary])
        self._members = members
        self._store = np.empty((values.shape[1], max(len(values), self.size) + self.rerank_interval + 1))
        self._store[:, : len(values)] = values.T
        self._ranked, self._ranks = len(values), ranks
        self._scratch = np.empty((2, len(values)), dtype=bool)
        self._rank_of, self._crowding_of = ranks.tolist(), crowding.tolist()

    def _fold_front(self) -> None:
        """Bring the all-time Pareto front up to date: the first front of itself and the results told since.

        One non-dominated sort per batch instead of a dominance test per result; a point equal to a
        front point joins it (it is not dominated).
        """
        if not self._unfolded:
            return
        count = len(self._front)
        values = np.concatenate([self._front_values, self._unfolded_values[: len(self._unfolded)]])
        kept = np.flatnonzero(first_front(values))
        front, unfolded = self._front, self._unfolded
        self._front = [front[i] if i < count else unfolded[i - count] for i in kept.tolist()]
        self._front_values = values[kept]
        self._unfolded = []
