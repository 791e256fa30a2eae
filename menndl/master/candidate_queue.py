"""Where the next new candidate comes from: seeds from earlier libraries first, then the evolution."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from menndl.genome import Genome
from menndl.master.candidate import Candidate
from menndl.master.evolution import Evolution, SpaceExhausted


class CandidateQueue:
    """New candidates in order: those prepared before the workers started, seeds not seen yet, then `ask`."""

    def __init__(self, evolution: Evolution, seeds: Iterable[Genome] = ()) -> None:
        """Take candidates from ``evolution``, after the ``seeds`` (genomes of earlier libraries)."""
        self.evolution = evolution
        self._seeds: deque[Genome] = deque(seeds)
        self._prepared: deque[Candidate] = deque()  # proposed before the workers started, handed out first

    def prepare(self, count: int) -> None:
        """Propose up to ``count`` candidates now (before the workers start, so each goes out the moment they can).

        Stops early, quietly, when the space is exhausted: `next` meets it again.
        """
        try:
            while len(self._prepared) < count:
                self._prepared.append(self._propose())
        except SpaceExhausted:
            pass

    def next(self) -> Candidate:
        """The next new candidate.

        Raises:
            SpaceExhausted: no new genome within the constraints could be found.
        """
        return self._prepared.popleft() if self._prepared else self._propose()

    def _propose(self) -> Candidate:
        while self._seeds:
            candidate = self.evolution.propose(self._seeds.popleft(), (), "seed")
            if candidate is not None:
                return candidate
        return self.evolution.ask()
