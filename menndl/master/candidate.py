"""A candidate: one architecture handed out for evaluation, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from menndl.genome import Genome


@dataclass(frozen=True)
class Candidate:
    """One architecture to evaluate, with where it came from and its training seed.

    Attributes:
        rung: the fidelity level it trains to (0 unless ``search.rungs`` > 1; `menndl.fidelity.ladder`).
        continues: the id of the row whose training this one continues (a promotion to the next rung; -1: none).
    """

    id: int
    genome: Genome
    parents: tuple[int, ...]
    operator: str
    seed: int
    rung: int = 0
    continues: int = -1
