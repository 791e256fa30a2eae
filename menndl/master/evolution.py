"""The search's proposals behind `ask` and `tell`: new candidates, never twice the same genome.

`Evolution` owns what every strategy shares: the random generator (it draws
each candidate's training seed and every genome), the candidate ids, the set
of genomes already proposed, the hard limits (``search.max_params``,
``max_flops``, computed without torch) and the population with its all-time
Pareto front (`menndl.master.population`).  Which genome to try next is the
`Proposer`'s choice (`menndl.master.proposer`): NSGA-II (`nsga2`), random
search, or Optuna.  Knows nothing of workers, transports or the library.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from menndl.genome import Genome, InputSpec, SearchSpace, count_flops, count_params
from menndl.job import STRATEGIES
from menndl.master import survival
from menndl.master.candidate import Candidate
from menndl.master.nsga2 import SPREAD_LIMIT, NSGA2Proposer
from menndl.master.population import Member, Population, default_rerank_interval
from menndl.master.proposer import Proposer, RandomProposer
from menndl.objectives import DIRECTIONS

__all__ = ["Candidate", "Evolution", "Member", "SPREAD_LIMIT", "SpaceExhausted", "default_rerank_interval",
           "row_candidate"]  # fmt: skip

PROPOSAL_TRIES = 50  # children tried before falling back to random genomes
MAX_PROPOSALS = 2000  # proposals tried in all before the search space counts as exhausted


def row_candidate(row: Mapping[str, Any], genome: Genome, parents: Sequence[int]) -> Candidate:
    """The candidate of a library row (or of a journaled task): its id, genome, parents, operator, seed and rung."""
    rung = int(row.get("rung", 0))  # a library from before rungs reads -1 here: rung 0
    continues = -1
    if row.get("operator") == "promote":  # the row it continues is its one parent (`inherited_from` is -1 when
        continues = int(parents[0]) if parents else int(row.get("continues", -1))  # it trained from scratch)
    return Candidate(int(row["id"]), genome, tuple(int(p) for p in parents), str(row["operator"]), int(row["seed"]),
                     max(0, rung), continues)  # fmt: skip


class SpaceExhausted(Exception):
    """No new genome within the constraints could be found: everything nearby was already proposed."""


class Evolution:
    """Candidates from the job's strategy, the population they join, and its Pareto front."""

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
        selection: str = "nsga2",
        reference_points: Sequence[Sequence[float]] = (),
        reference_divisions: int | None = None,
    ) -> None:
        """Set up an empty population.

        Args:
            max_params, max_flops: hard constraints; no genome over them is proposed.
            aging: regularized evolution: the oldest members leave the
                population instead of the worst.
            rerank_interval: results between full re-rankings (default
                `default_rerank_interval`).
            strategy: who proposes children: ``nsga2`` (a random start, then
                tournaments, crossover, mutation), ``random`` (every child a
                random genome: selection off) or ``optuna`` (Optuna's
                NSGAIISampler over `menndl.genome.encoding`, from the first
                child on).  The population and the Pareto front are kept the
                same way for all three.
            spread_start: (``nsga2``) choose the random start's first
                `SPREAD_LIMIT` genomes to span model sizes.
            selection: who survives a re-ranking: ``nsga2``, ``nsga3`` or
                ``spea2`` (`menndl.master.survival`).
            reference_points, reference_divisions: NSGA-III's reference
                points, given, or Das-Dennis ones with this many divisions
                (default: `survival.default_divisions`).
        """
        unknown = [name for name in objectives if name not in DIRECTIONS]
        if unknown or not objectives:
            raise ValueError(f"objectives must be some of {sorted(DIRECTIONS)}, got {list(objectives)}")
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.space, self.spec, self.strategy = space, spec, strategy
        self.objectives = tuple(objectives)
        self.max_params, self.max_flops = max_params, max_flops
        self._rng = random.Random(seed)
        points = None
        if selection == "nsga3":
            points = survival.reference_points(len(self.objectives), population_size, reference_divisions,
                                               reference_points)  # fmt: skip
            if points.shape[1] != len(self.objectives):
                raise ValueError(f"reference points have {points.shape[1]} values, expected {len(self.objectives)}")
        self._population = Population(self.objectives, population_size, rerank_interval, aging, selection, points,
                                      self._rng)  # fmt: skip
        self.proposer: Proposer
        if strategy == "optuna":
            from menndl.master.optuna_proposer import OptunaProposer

            self.proposer = OptunaProposer(space=space, spec=spec, objectives=objectives,
                                           population_size=population_size, seed=seed, rng=self._rng)  # fmt: skip
        elif strategy == "random":
            self.proposer = RandomProposer(space, spec, self._rng)
        else:
            self.proposer = NSGA2Proposer(space, spec, self._rng, self._population, crossover_probability,
                                          spread_start)  # fmt: skip
        self._seen: set[str] = set()
        self._next_id = 0

    @property
    def population(self) -> list[Member]:
        """The current parents, ranked as selection ranks them now (see `Population.members`)."""
        return self._population.members

    @property
    def front(self) -> list[Member]:
        """Non-dominated members among every successful evaluation so far, in the order they were told."""
        return self._population.front

    @property
    def front_size(self) -> int:
        """How many members `front` has (without copying it)."""
        return self._population.front_size

    @property
    def ranking(self) -> Population:
        """The population itself: its re-ranking and front bookkeeping (for tests and diagnostics)."""
        return self._population

    @property
    def rerank_interval(self) -> int:
        """Results between full re-rankings of the population."""
        return self._population.rerank_interval

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
            proposal = self.proposer.propose(force_random=attempt >= PROPOSAL_TRIES)
            if proposal.genome.hash not in self._seen and self.within_constraints(proposal.genome):
                break
            self.proposer.rejected(proposal)
        else:
            raise SpaceExhausted(
                f"no new genome within the constraints after {MAX_PROPOSALS} proposals "
                f"({len(self._seen)} already proposed)"
            )
        candidate = self._candidate(*proposal)
        self.proposer.accepted(proposal, candidate.id)
        return candidate

    def within_constraints(self, genome: Genome) -> bool:
        """True when the genome respects ``max_params`` and ``max_flops`` (computed without torch)."""
        if self.max_params is not None and count_params(genome, self.spec) > self.max_params:
            return False
        return self.max_flops is None or count_flops(genome, self.spec) <= self.max_flops

    def tell(self, candidate: Candidate, metrics: Mapping[str, Any]) -> bool:
        """Take one finished evaluation: the proposer learns of it; an ``ok`` one joins the population.

        Returns:
            True when it joined the population (status ``ok``): the Pareto front may have changed.
        """
        self.proposer.tell(candidate.id, candidate.genome, metrics)
        if metrics.get("status") != "ok":
            return False
        self._population.add(candidate, dict(metrics))
        return True

    def propose(self, genome: Genome, parents: tuple[int, ...], operator: str) -> Candidate | None:
        """A candidate for a given genome (a seed from an earlier library), or None if seen or over the limits."""
        if genome.hash in self._seen or not self.within_constraints(genome):
            return None
        candidate = self._candidate(genome, parents, operator)
        self.proposer.seeded()
        return candidate

    def promote(self, source: Candidate) -> Candidate:
        """The candidate that trains ``source``'s network on to its next rung: a new id, the same genome and seed."""
        candidate = Candidate(self._next_id, source.genome, (source.id,), "promote", source.seed, source.rung + 1,
                              source.id)  # fmt: skip
        self._next_id += 1
        return candidate

    def mark_seen(self, genome_hash: str) -> None:
        """Never propose this genome again (a task a resume re-queues is already in flight)."""
        self._seen.add(genome_hash)

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
        rows = sorted(records, key=lambda row: int(row["id"]))
        ok: list[tuple[Candidate, dict[str, Any]]] = []
        for row in rows:
            text = row["genome"]
            genome = Genome.from_json(text) if isinstance(text, str) else Genome.from_dict(text)
            self._seen.add(str(row.get("hash") or genome.hash))
            self.proposer.tell(int(row["id"]), genome, row)  # (a resumed Optuna study learns every evaluation)
            if row.get("status") != "ok":
                continue
            parents = row.get("parents", [])
            if isinstance(parents, str):
                parents = json.loads(parents or "[]")
            ok.append((row_candidate(row, genome, parents), dict(row)))
        self._population.restore(ok)
        self._next_id = max(int(next_id), max((int(row["id"]) + 1 for row in rows), default=0))
        self.proposer.resumed(self._next_id)
        if rng_state is not None:
            state = json.loads(rng_state)
            self._rng.setstate((state["version"], tuple(state["state"]), state["gauss"]))

    def _candidate(self, genome: Genome, parents: tuple[int, ...], operator: str) -> Candidate:
        """The next id and a training seed for a fresh genome, which is never proposed again."""
        self._seen.add(genome.hash)
        candidate = Candidate(self._next_id, genome, parents, operator, seed=self._rng.randrange(2**31))
        self._next_id += 1
        return candidate
