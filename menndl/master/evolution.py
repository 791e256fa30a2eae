"""Asynchronous steady-state NSGA-II: `ask` for a child, `tell` a result.

No generation barrier: every finished evaluation joins the population at once
and the freed worker gets the next child.  The first ``population_size``
candidates are random; after that, children come from binary tournaments on
(front rank, crowding distance) followed by crossover or one mutation.

Cost per result stays small at large populations.  Every ``rerank_interval``
results (and whenever the population has doubled since, while it grows) the
whole population is re-ranked with a fast non-dominated sort
(`menndl.master.nondominated`), crowding distances are recomputed and the
population is cut back to its size (NSGA-II truncation, or the oldest members
out with ``aging``).  In between, tournaments use that ranking: a result told
since gets its front against the population as then ranked (one more than its
worst dominator's there; one vectorised dominance test, done the first time a
tournament draws it, so most results cost none), so every rank a tournament
compares refers to the same population.  The Pareto front over all evaluations
is brought up to date in batches (one non-dominated sort of the front and the
results told since), when it is read or when a batch is full.  Plain Python +
numpy: no torch, no MPI.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from menndl.genome import Genome, InputSpec, SearchSpace, count_flops, count_params, crossover, mutate, random_genome
from menndl.job import STRATEGIES
from menndl.master.nondominated import crowding_distances, first_front, front_ranks, no_worse_than, nsga2_order
from menndl.objectives import DIRECTIONS

if TYPE_CHECKING:
    from menndl.master.optuna_strategy import OptunaProposer

UNRANKED = -1  # a member told since the last re-ranking whose rank nobody has needed yet
PROPOSAL_TRIES = 50  # children tried before falling back to random genomes
MAX_PROPOSALS = 2000  # proposals tried in all before the search space counts as exhausted
FRONT_BATCH = 4096  # results told before the all-time Pareto front is brought up to date unasked
INITIAL_PICKS = 8  # random-start genomes chosen per batch ...
INITIAL_DRAWS = 32  # ... from this many random genomes, spread evenly over log(parameters) (see `_initial_genome`)
SPREAD_LIMIT = 256  # random-start genomes chosen that way at most: a larger random start reaches the ends by itself


class SpaceExhausted(Exception):
    """No new genome within the constraints could be found: everything nearby was already proposed."""


@dataclass(frozen=True)
class Candidate:
    """One architecture to evaluate, with where it came from and its training seed."""

    id: int
    genome: Genome
    parents: tuple[int, ...]
    operator: str
    seed: int


def default_rerank_interval(population_size: int) -> int:
    """Results between full re-rankings: a fifth of the population, but at least 32 (or the population).

    A re-ranking has a fixed cost (about 1 ms of numpy calls even for a few
    dozen members): at 64 members and a thousand results a second, re-ranking
    every 12 results was a tenth of the master's time.
    """
    return max(population_size // 5, min(population_size, 32))


@dataclass(eq=False)
class Member:
    """An evaluated candidate as selection sees it."""

    candidate: Candidate
    metrics: dict[str, Any]
    values: tuple[float, ...] = ()  # objectives, each to be minimised
    rank: int = field(default=0)  # as of the last `Evolution.population` (selection keeps its own lists)
    crowding: float = field(default=0.0)


class Evolution:
    """The population and the breeding rules; knows nothing of workers or transports."""

    def __init__(
        self,
        *,
        space: SearchSpace,
        spec: InputSpec,
        objectives: Sequence[str],
        population_size: int,
        crossover_probability: float,
        seed: int,
        max_params: int | None = None,
        max_flops: int | None = None,
        aging: bool = False,
        rerank_interval: int | None = None,
        strategy: str = "nsga2",
        spread_start: bool = False,
    ) -> None:
        """Set up an empty population.

        Args:
            max_params, max_flops: hard constraints; no genome over them is proposed.
            aging: regularized evolution: the oldest members leave the
                population instead of the worst.
            rerank_interval: results between full re-rankings (default
                `default_rerank_interval`).
            strategy: who proposes children after the random start: ``nsga2``
                (tournaments, crossover, mutation), ``random`` (every child a
                random genome: selection off) or ``optuna`` (Optuna's
                NSGAIISampler over `menndl.genome.encoding`, from the first
                child on).  The population and the Pareto front are kept the
                same way for all three.
            spread_start: choose the random start's first `SPREAD_LIMIT`
                genomes to span model sizes (`_initial_genome`) instead of
                taking the sampler's draws.
        """
        unknown = [name for name in objectives if name not in DIRECTIONS]
        if unknown or not objectives:
            raise ValueError(f"objectives must be some of {sorted(DIRECTIONS)}, got {list(objectives)}")
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.space, self.spec = space, spec
        self.strategy = strategy
        self._proposer: OptunaProposer | None = None
        if strategy == "optuna":
            from menndl.master.optuna_strategy import OptunaProposer

            self._proposer = OptunaProposer(
                space=space, spec=spec, objectives=objectives, population_size=population_size, seed=seed
            )
        self.objectives = tuple(objectives)
        self.population_size = population_size
        self.crossover_probability = crossover_probability
        self.max_params, self.max_flops, self.aging = max_params, max_flops, aging
        self.rerank_interval = max(1, rerank_interval or default_rerank_interval(population_size))
        self._signs = tuple(-DIRECTIONS[name] for name in self.objectives)  # Python floats: values stay plain floats
        self._rng = random.Random(seed)
        self._members: list[Member] = []
        # objectives x members, column-major for fast dominance tests; columns [0, len(members)) are in use
        self._store = np.empty((len(self.objectives), population_size + self.rerank_interval + 1))
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
        self._seen: set[str] = set()
        self._next_id = 0
        self._random_left = population_size
        self.spread_start = spread_start
        self._spread_left = min(population_size, SPREAD_LIMIT) if spread_start else 0
        self._initial: list[Genome] = []  # random-start genomes chosen, not yet proposed

    @property
    def population(self) -> list[Member]:
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
    def next_id(self) -> int:
        """The id the next candidate will get."""
        return self._next_id

    def ask(self) -> Candidate:
        """Propose the next candidate: never a genome already proposed, never one over the constraints.

        Raises:
            SpaceExhausted: no such genome was found in MAX_PROPOSALS tries.
        """
        for attempt in range(MAX_PROPOSALS):
            genome, parents, operator = self._propose(force_random=attempt >= PROPOSAL_TRIES)
            fresh = genome.hash not in self._seen and self.within_constraints(genome)
            if operator == "optuna" and not fresh:
                self._proposer.reject(genome)  # type: ignore[union-attr]
            if fresh:
                break
        else:
            raise SpaceExhausted(
                f"no new genome within the constraints after {MAX_PROPOSALS} proposals "
                f"({len(self._seen)} already proposed)"
            )
        self._seen.add(genome.hash)
        candidate = Candidate(self._next_id, genome, parents, operator, seed=self._rng.randrange(2**31))
        self._next_id += 1
        if operator == "optuna":
            self._proposer.accept(candidate.id)  # type: ignore[union-attr]
        return candidate

    def within_constraints(self, genome: Genome) -> bool:
        """True when the genome respects ``max_params`` and ``max_flops`` (computed without torch)."""
        if self.max_params is not None and count_params(genome, self.spec) > self.max_params:
            return False
        return self.max_flops is None or count_flops(genome, self.spec) <= self.max_flops

    def tell(self, candidate: Candidate, metrics: Mapping[str, Any]) -> bool:
        """Take one finished evaluation into the population (failures only reach an Optuna study).

        Returns:
            True when it joined the population (status ``ok``): the Pareto front may have changed.
        """
        if self._proposer is not None:
            self._proposer.tell(candidate.id, candidate.genome, metrics)
        if metrics.get("status") != "ok":
            return False
        values = tuple(float(metrics[name]) * sign for name, sign in zip(self.objectives, self._signs))
        member = Member(candidate, dict(metrics), values, UNRANKED)
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
        self._crowding_of.append(0.0)
        self._since_rerank += 1
        if self._since_rerank >= self.rerank_interval or count >= 2 * self._ranked:  # (or grown twofold)
            self._rerank()
        unfolded = self._unfolded_values[len(self._unfolded)]
        for column, value in enumerate(values):
            unfolded[column] = value
        self._unfolded.append(member)
        if len(self._unfolded) == FRONT_BATCH:
            self._fold_front()
        return True

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

    def _propose(self, force_random: bool = False) -> tuple[Genome, tuple[int, ...], str]:
        if self._proposer is not None and not force_random:
            return self._proposer.propose(), (), "optuna"
        if self.strategy == "random":
            return random_genome(self._rng, self.space, self.spec), (), "random"
        if force_random or self._random_left > 0 or not self._members:
            self._random_left = max(0, self._random_left - 1)
            if force_random or self._spread_left <= 0:
                return random_genome(self._rng, self.space, self.spec), (), "random"
            self._spread_left -= 1
            return self._initial_genome(), (), "random"
        if len(self._members) >= 2 and self._rng.random() < self.crossover_probability:
            first, second = self._tournament(), self._tournament()
            child = crossover(first.candidate.genome, second.candidate.genome, self._rng, self.space, self.spec)
            return child, (first.candidate.id, second.candidate.id), "crossover"
        parent = self._tournament()
        child, operator = mutate(parent.candidate.genome, self._rng, self.space, self.spec)
        return child, (parent.candidate.id,), operator

    def _initial_genome(self) -> Genome:
        """A random-start genome, chosen so that the first population spans the sizes the space offers.

        The sampler's sizes bunch in the middle; a front needs its ends (tiny models, big accurate
        ones) early.  Per batch, `INITIAL_DRAWS` random genomes are drawn and `INITIAL_PICKS` taken,
        nearest to sizes evenly spaced in log(parameters) from the batch's smallest to its largest.
        """
        if not self._initial:
            drawn = [random_genome(self._rng, self.space, self.spec) for _ in range(INITIAL_DRAWS)]
            sizes = [math.log(count_params(genome, self.spec)) for genome in drawn]
            low, high = min(sizes), max(sizes)
            free = list(range(len(drawn)))
            for pick in range(INITIAL_PICKS):
                target = low + (high - low) * pick / (INITIAL_PICKS - 1)
                nearest = min(free, key=lambda i: abs(sizes[i] - target))
                free.remove(nearest)
                self._initial.append(drawn[nearest])
            self._rng.shuffle(self._initial)
        return self._initial.pop()

    def _tournament(self) -> Member:
        """Binary tournament: lower front rank wins, then larger crowding distance."""
        if len(self._members) == 1:
            return self._members[0]
        count = len(self._members)
        i = int(self._rng.random() * count)  # two distinct members, uniformly (cheaper than rng.sample)
        j = int(self._rng.random() * (count - 1))
        j += j >= i
        rank_i, rank_j = self._rank_at(i), self._rank_at(j)
        if rank_i != rank_j:
            return self._members[i if rank_i < rank_j else j]
        crowding_i, crowding_j = self._crowding_of[i], self._crowding_of[j]
        if crowding_i != crowding_j:
            return self._members[i if crowding_i > crowding_j else j]
        return self._members[i if self._rng.random() < 0.5 else j]

    def _rerank(self) -> None:
        """Exact fronts and crowding distances for everyone; cut the population back to its size."""
        self._since_rerank = 0
        members = self._members
        values = self._store[:, : len(members)].T
        excess = len(members) - self.population_size
        if self.aging:  # members stay in the order they were told: the oldest go, the rest are ranked
            if excess > 0:
                members, values = members[excess:], values[excess:]
            ranks = front_ranks(values)
            crowding = crowding_distances(values, ranks)
        else:  # NSGA-II truncation: the worst fronts are cut, so survivors keep their fronts; stored worst first
            ranks = front_ranks(values)
            crowding = crowding_distances(values, ranks)
            order = nsga2_order(ranks, crowding)[: self.population_size][::-1]  # (see `_rank_at`)
            members = [members[i] for i in order.tolist()]
            values, ranks, crowding = values[order], ranks[order], crowding[order]
            if excess > 0:  # crowding is within a front: only the worst kept one (stored first) may have lost members
                boundary = ranks == ranks[0]
                crowding[boundary] = crowding_distances(values[boundary], ranks[boundary])
        self._members = members
        self._store = np.empty((values.shape[1], max(len(values), self.population_size) + self.rerank_interval + 1))
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

    # resume API (LIBRARY calls these)
    def rng_state(self) -> str:
        """The random generator's state as JSON text (store it to resume the same search)."""
        version, state, gauss = self._rng.getstate()
        return json.dumps({"version": version, "state": list(state), "gauss": gauss})

    def restore(self, records: Iterable[Mapping[str, Any]], next_id: int, rng_state: str | None) -> None:
        """Rebuild the search from library rows: population, front, proposed hashes, id counter, random state.

        Args:
            records: rows with at least ``id``, ``genome`` (JSON text), ``hash``,
                ``parents`` (list of ints or its JSON text), ``operator``, ``seed``,
                ``status`` and the objective metrics of ``ok`` rows.
            next_id: the id the next candidate gets (past every stored id).
            rng_state: text from `rng_state`, or None to keep the current state.
        """
        self._members, self._front, self._unfolded = [], [], []
        self._front_values = np.empty((0, len(self.objectives)))
        self._rank_of, self._crowding_of = [], []
        self._ranked, self._since_rerank = 0, 0
        rows = sorted(records, key=lambda row: int(row["id"]))
        ok: list[Member] = []
        for row in rows:
            text = row["genome"]
            genome = Genome.from_json(text) if isinstance(text, str) else Genome.from_dict(text)
            self._seen.add(str(row.get("hash") or genome.hash))
            if self._proposer is not None:  # a resumed Optuna study learns every finished evaluation
                self._proposer.tell(int(row["id"]), genome, row)
            if row.get("status") != "ok":
                continue
            parents = row.get("parents", [])
            if isinstance(parents, str):
                parents = json.loads(parents or "[]")
            candidate = Candidate(int(row["id"]), genome, tuple(int(p) for p in parents), str(row["operator"]),
                                  int(row["seed"]))  # fmt: skip
            values = tuple(float(row[name]) * sign for name, sign in zip(self.objectives, self._signs))
            ok.append(Member(candidate, dict(row), values))
        if ok:
            everything = np.array([member.values for member in ok])
            first = first_front(everything)
            self._front = [member for member, kept in zip(ok, first.tolist()) if kept]
            self._front_values = everything[first]
            self._members = ok
            self._store = np.ascontiguousarray(everything.T)
            self._rerank()
        self._next_id = max(int(next_id), max((int(row["id"]) + 1 for row in rows), default=0))
        self._random_left = max(0, self.population_size - self._next_id)
        if self.spread_start:
            self._spread_left = max(0, min(self.population_size, SPREAD_LIMIT) - self._next_id)
        if rng_state is not None:
            state = json.loads(rng_state)
            self._rng.setstate((state["version"], tuple(state["state"]), state["gauss"]))

    def mark_seen(self, genome_hash: str) -> None:
        """Never propose this genome again (a task a resume re-queues is already in flight)."""
        self._seen.add(genome_hash)

    def propose(self, genome: Genome, parents: tuple[int, ...], operator: str) -> Candidate | None:
        """A candidate for a given genome (a seed from an earlier library), or None if seen or over the limits."""
        if genome.hash in self._seen or not self.within_constraints(genome):
            return None
        self._seen.add(genome.hash)
        candidate = Candidate(self._next_id, genome, parents, operator, seed=self._rng.randrange(2**31))
        self._next_id += 1
        self._random_left = max(0, self._random_left - 1)
        return candidate
