"""Asynchronous steady-state NSGA-II's proposals: a random start, then tournaments, crossover and mutation.

No generation barrier: every finished evaluation joins the population at
once (`menndl.master.population`) and the next child is bred from it.  The
first ``population`` children are random; with ``spread_start`` the first
`SPREAD_LIMIT` of them are chosen to span model sizes.  After that, parents
come from binary tournaments on (front rank, crowding distance), followed by
crossover or one mutation.
"""

from __future__ import annotations

import math
import random

from menndl.genome import Genome, InputSpec, SearchSpace, count_params, crossover, mutate, random_genome
from menndl.master.population import Population
from menndl.master.proposer import Proposal, Proposer

INITIAL_PICKS = 8  # random-start genomes chosen per batch ...
INITIAL_DRAWS = 32  # ... from this many random genomes, spread evenly over log(parameters) (see `_initial_genome`)
SPREAD_LIMIT = 256  # random-start genomes chosen that way at most: a larger random start reaches the ends by itself


class NSGA2Proposer(Proposer):
    """Children of tournament winners of ``population``, after a random start of its size."""

    def __init__(
        self,
        space: SearchSpace,
        spec: InputSpec,
        rng: random.Random,
        population: Population,
        crossover_probability: float,
        spread_start: bool = False,
    ) -> None:
        """Breed from ``population`` with the search's generator ``rng``.

        Args:
            crossover_probability: share of children made by crossover (the rest: one mutation).
            spread_start: choose the random start's first `SPREAD_LIMIT` genomes to span model
                sizes (`_initial_genome`) instead of taking the sampler's draws.
        """
        self.space, self.spec, self._rng = space, spec, rng
        self.population = population
        self.crossover_probability = crossover_probability
        self.spread_start = spread_start
        self.random_left = population.size  # random-start children still to come
        self.spread_left = min(population.size, SPREAD_LIMIT) if spread_start else 0
        self._initial: list[Genome] = []  # random-start genomes chosen, not yet proposed

    def propose(self, force_random: bool = False) -> Proposal:
        """A random-start genome, or a child of one or two tournament winners."""
        population = self.population
        if force_random or self.random_left > 0 or not len(population):
            self.random_left = max(0, self.random_left - 1)
            if force_random or self.spread_left <= 0:
                return Proposal(random_genome(self._rng, self.space, self.spec), (), "random")
            self.spread_left -= 1
            return Proposal(self._initial_genome(), (), "random")
        if len(population) >= 2 and self._rng.random() < self.crossover_probability:
            first, second = population.tournament(self._rng), population.tournament(self._rng)
            child = crossover(first.candidate.genome, second.candidate.genome, self._rng, self.space, self.spec)
            return Proposal(child, (first.candidate.id, second.candidate.id), "crossover")
        parent = population.tournament(self._rng)
        child, operator = mutate(parent.candidate.genome, self._rng, self.space, self.spec)
        return Proposal(child, (parent.candidate.id,), operator)

    def seeded(self) -> None:
        """A seed genome takes the place of one random-start child."""
        self.random_left = max(0, self.random_left - 1)

    def resumed(self, next_id: int) -> None:
        """The random start has made ``next_id`` children already (those that a library holds)."""
        self.random_left = max(0, self.population.size - next_id)
        if self.spread_start:
            self.spread_left = max(0, min(self.population.size, SPREAD_LIMIT) - next_id)

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
