"""Who proposes the next child genome: the interface the strategies implement, and random search.

`menndl.master.evolution.Evolution` owns the random generator, the ids, the
duplicate check and the hard limits; a `Proposer` only says which genome to
try next, learns of results if it wants to, and is told whether its proposal
was taken.  Implementations: `RandomProposer` here (``search.strategy =
"random"``: selection off), `menndl.master.nsga2.NSGA2Proposer` (``nsga2``) and
`menndl.master.optuna_proposer.OptunaProposer` (``optuna``, imported only then).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, NamedTuple

from menndl.genome import Genome, InputSpec, SearchSpace, random_genome


class Proposal(NamedTuple):
    """A genome to try, the ids of its parents and the operator that made it."""

    genome: Genome
    parents: tuple[int, ...]
    operator: str


class Proposer(ABC):
    """Proposes genomes; `Evolution` turns the fresh ones into candidates."""

    @abstractmethod
    def propose(self, force_random: bool = False) -> Proposal:
        """The next genome to try.

        Args:
            force_random: the last proposals were all duplicates or over the
                limits: return a random genome of the space instead.
        """

    def accepted(self, proposal: Proposal, candidate_id: int) -> None:
        """The proposal became candidate ``candidate_id`` and will be evaluated."""

    def rejected(self, proposal: Proposal) -> None:
        """The proposal will not be evaluated (already proposed, or over the hard limits)."""

    def tell(self, candidate_id: int, genome: Genome, metrics: Mapping[str, Any]) -> None:
        """A finished evaluation (any status; also every evaluation of a library a search resumes)."""

    def seeded(self) -> None:
        """A candidate was made from a given genome (a seed from an earlier library), not from `propose`."""

    def resumed(self, next_id: int) -> None:
        """The search continues from a library whose next candidate id is ``next_id``."""


class RandomProposer(Proposer):
    """Every child a random genome of the space: selection off (the random-search baseline)."""

    def __init__(self, space: SearchSpace, spec: InputSpec, rng: random.Random) -> None:
        """Draw from ``space`` for inputs ``spec`` with the search's generator ``rng``."""
        self.space, self.spec, self._rng = space, spec, rng

    def propose(self, force_random: bool = False) -> Proposal:
        """A random genome (whether forced or not)."""
        return Proposal(random_genome(self._rng, self.space, self.spec), (), "random")
