"""Asynchronous steady-state NSGA-II: `ask` for a child, `tell` a result.

No generation barrier: every finished evaluation updates the population at
once and the freed worker gets the next child.  The first ``population_size``
candidates are random; after that, children come from binary tournaments on
(front rank, crowding distance) followed by crossover or one mutation.
Plain Python + DEAP: no torch, no MPI.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deap import base, tools

from menndl.genome import Genome, InputSpec, SearchSpace, crossover, mutate, random_genome

DIRECTIONS: dict[str, float] = {"accuracy": 1.0, "params": -1.0, "flops": -1.0, "train_seconds": -1.0}
PROPOSAL_TRIES = 50


@dataclass(frozen=True)
class Candidate:
    """One architecture to evaluate, with where it came from and its training seed."""

    id: int
    genome: Genome
    parents: tuple[int, ...]
    operator: str
    seed: int


@dataclass(eq=False)
class Member:
    """An evaluated candidate as selection sees it (DEAP reads ``fitness``)."""

    candidate: Candidate
    metrics: dict[str, Any]
    fitness: base.Fitness
    rank: int = field(default=0)


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
    ) -> None:
        unknown = [name for name in objectives if name not in DIRECTIONS]
        if unknown or not objectives:
            raise ValueError(f"objectives must be some of {sorted(DIRECTIONS)}, got {list(objectives)}")
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        self.space, self.spec = space, spec
        self.objectives = tuple(objectives)
        self.population_size = population_size
        self.crossover_probability = crossover_probability
        self._rng = random.Random(seed)
        self._fitness_class = type("Fitness", (base.Fitness,), {"weights": tuple(DIRECTIONS[o] for o in objectives)})
        self._population: list[Member] = []
        self._front: list[Member] = []
        self._seen: set[str] = set()
        self._next_id = 0
        self._random_left = population_size

    @property
    def population(self) -> list[Member]:
        """The current parents, best front first after each update."""
        return list(self._population)

    @property
    def front(self) -> list[Member]:
        """Non-dominated members among every successful evaluation so far."""
        return list(self._front)

    @property
    def front_size(self) -> int:
        """How many members `front` has (without copying it)."""
        return len(self._front)

    def ask(self) -> Candidate:
        """Propose the next candidate: never one whose genome was already proposed, if avoidable."""
        for _ in range(PROPOSAL_TRIES):
            genome, parents, operator = self._propose()
            if genome.hash not in self._seen:
                break
        self._seen.add(genome.hash)
        candidate = Candidate(self._next_id, genome, parents, operator, seed=self._rng.randrange(2**31))
        self._next_id += 1
        return candidate

    def tell(self, candidate: Candidate, metrics: Mapping[str, Any]) -> bool:
        """Take one finished evaluation into the population (failures are ignored here).

        Returns:
            True when the Pareto front over all evaluations changed.
        """
        if metrics.get("status") != "ok":
            return False
        fitness = self._fitness_class(tuple(float(metrics[name]) for name in self.objectives))
        member = Member(candidate, dict(metrics), fitness)
        self._population.append(member)
        if len(self._population) > self.population_size:
            self._population = tools.selNSGA2(self._population, self.population_size)
        self._rank_population()
        return self._update_front(member)

    def _propose(self) -> tuple[Genome, tuple[int, ...], str]:
        if self._random_left > 0 or not self._population:
            self._random_left = max(0, self._random_left - 1)
            return random_genome(self._rng, self.space, self.spec), (), "random"
        if len(self._population) >= 2 and self._rng.random() < self.crossover_probability:
            first, second = self._tournament(), self._tournament()
            child = crossover(first.candidate.genome, second.candidate.genome, self._rng, self.space, self.spec)
            return child, (first.candidate.id, second.candidate.id), "crossover"
        parent = self._tournament()
        child, operator = mutate(parent.candidate.genome, self._rng, self.space, self.spec)
        return child, (parent.candidate.id,), operator

    def _tournament(self) -> Member:
        """Binary tournament: lower front rank wins, then larger crowding distance."""
        if len(self._population) == 1:
            return self._population[0]
        a, b = self._rng.sample(self._population, 2)
        if a.rank != b.rank:
            return a if a.rank < b.rank else b
        if a.fitness.crowding_dist != b.fitness.crowding_dist:
            return a if a.fitness.crowding_dist > b.fitness.crowding_dist else b
        return a if self._rng.random() < 0.5 else b

    def _rank_population(self) -> None:
        fronts = tools.sortNondominated(self._population, len(self._population))
        for rank, front in enumerate(fronts):
            tools.emo.assignCrowdingDist(front)
            for member in front:
                member.rank = rank

    def _update_front(self, member: Member) -> bool:
        if any(other.fitness.dominates(member.fitness) for other in self._front):
            return False
        self._front = [other for other in self._front if not member.fitness.dominates(other.fitness)]
        self._front.append(member)
        return True

    # resume API (MASTER's version replaces this at merge)
    def rng_state(self) -> str:
        """The random state as JSON text (stored in the library with every dispatched task)."""
        version, internal, gauss = self._rng.getstate()
        return json.dumps([version, list(internal), gauss])

    def restore(self, records: Iterable[Mapping[str, Any]], next_id: int, rng_state: str | None) -> None:
        """Rebuild population, front, seen hashes, id counter and random state from library rows."""
        count = 0
        for record in records:
            count += 1
            self._seen.add(str(record["hash"]))
            if record.get("status") != "ok":
                continue
            parents = record.get("parents", [])
            if isinstance(parents, str):
                parents = json.loads(parents or "[]")
            genome = Genome.from_json(record["genome"])
            operator, seed = str(record["operator"]), int(record["seed"])
            candidate = Candidate(int(record["id"]), genome, tuple(parents), operator, seed)
            self.tell(candidate, record)
        self._random_left = max(0, self.population_size - count)
        self._next_id = max(self._next_id, next_id)
        if rng_state:
            version, internal, gauss = json.loads(rng_state)
            self._rng.setstate((version, tuple(internal), gauss))

    def mark_seen(self, genome_hash: str) -> None:
        """Never propose this genome (a task re-queued by a resume) again. (LIBRARY's addition.)"""
        self._seen.add(genome_hash)

    def propose(self, genome: Genome, parents: tuple[int, ...], operator: str) -> Candidate | None:
        """A candidate for a given genome (seeds from earlier libraries), or None if already seen.

        (LIBRARY's addition, kept by MASTER's version at merge.)
        """
        if genome.hash in self._seen:
            return None
        self._seen.add(genome.hash)
        candidate = Candidate(self._next_id, genome, parents, operator, seed=self._rng.randrange(2**31))
        self._next_id += 1
        self._random_left = max(0, self._random_left - 1)
        return candidate
