"""A candidate: one architecture handed out for evaluation, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from menndl.genome import Genome


@dataclass(frozen=True)
class Candidate:
    """One architecture to evaluate, with where it came from and its training seed."""

    id: int
    genome: Genome
    parents: tuple[int, ...]
    operator: str
    seed: int
