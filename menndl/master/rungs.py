"""Multi-fidelity rungs: asynchronous successive halving over several objectives (plain Python + numpy).

With ``search.rungs = R`` a new candidate trains only its lowest rung's share of its budget
(`menndl.fidelity.ladder`).  The candidates that reached a rung are ranked there as NSGA-II ranks a
population (non-dominated front, then crowding distance, on the search's objectives measured at that
rung); the best ``1 / reduction_factor`` of them are *promotable*: a free worker takes the best
promotable candidate of the highest rung that has one, and continues its training from its checkpoint to
the next rung, before any new candidate is started.  This is ASHA (Li et al., "A System for Massively
Parallel Hyperparameter Tuning", 2020) with the single metric replaced by NSGA-II's order, so a fast small
network can be promoted beside an accurate large one.  No worker ever waits for a rung to fill.

A candidate ranked below the top ``max(2 / reduction_factor of the rung, KEEP_MIN)`` at a re-ranking is
out: it is never promoted, even if later arrivals would lift it, so its checkpoint can be deleted at once
(`dropped`).  Re-rankings are batched (a rung is re-ranked when it has grown by a sixteenth, or by one while
small, and by a quarter past `LARGE_RUNG` candidates: the sort of all of them is O(n log n)), so the cost per
result stays flat with thousands of workers; a promotion waits at most that long to be seen.  Knows nothing
of workers or files.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from menndl.master.candidate import Candidate
from menndl.master.nondominated import crowding_distances, front_ranks, nsga2_order
from menndl.objectives import DIRECTIONS

WORST = 1e300  # a missing objective value: ranked last (finite, so crowding distances stay numbers)
KEEP_MIN = 12  # candidates of a rung never dropped while it is small (the first arrivals are no ranking yet)
RERANK_SHARE = 16  # a rung is re-ranked when it has grown by 1/RERANK_SHARE since the last time (at least 1) ...
LARGE_RUNG = 4096  # ... and by 1/LARGE_SHARE once it holds this many: a re-ranking of 100,000 rows takes 0.2 s
LARGE_SHARE = 4


class _Rung:
    """The candidates that reached one rung, their objectives there, and which can still be promoted."""

    def __init__(self, objectives: int) -> None:
        self.candidates: list[Candidate] = []
        self.values = np.empty((16, objectives))
        self.open: list[bool] = []  # may still be promoted (not promoted, not out, not at the top of its ladder)
        self.out: list[bool] = []  # ranked too low once: never promoted
        self.ranked = 0  # entries at the last re-ranking
        self.queue: deque[int] = deque()  # positions promotable at the last re-ranking, best first

    def add(self, candidate: Candidate, values: Sequence[float], promotable: bool) -> None:
        count = len(self.candidates)
        if count == len(self.values):
            grown = np.empty((2 * count, self.values.shape[1]))
            grown[:count] = self.values
            self.values = grown
        self.values[count] = values
        self.candidates.append(candidate)
        self.open.append(promotable)
        self.out.append(False)

    def due(self) -> bool:
        share = RERANK_SHARE if self.ranked < LARGE_RUNG else LARGE_SHARE
        return len(self.candidates) - self.ranked >= max(1, self.ranked // share)


class Rungs:
    """Promotions between rungs, decided from the results each rung has seen."""

    def __init__(self, objectives: Sequence[str], rungs: int, factor: int, keep_min: int = KEEP_MIN) -> None:
        """No candidate at any rung yet.

        Args:
            objectives: names from `menndl.objectives.DIRECTIONS` (the search's).
            rungs: ``search.rungs`` (>= 2).
            factor: ``search.reduction_factor`` (>= 2): the best 1/factor of a rung are promotable.
            keep_min: a rung of at most this many candidates drops none.
        """
        if rungs < 2 or factor < 2:
            raise ValueError(f"rungs need rungs >= 2 and factor >= 2, got {rungs} and {factor}")
        self.objectives = tuple(objectives)
        self.count, self.factor, self.keep_min = rungs, factor, keep_min
        self._signs = tuple(-float(DIRECTIONS[name]) for name in self.objectives)
        self._rungs = [_Rung(len(self.objectives)) for _ in range(rungs)]
        self._promoted: set[int] = set()  # ids whose next rung was handed out
        self._where: dict[int, tuple[_Rung, int]] = {}  # id -> its rung and position there
        self._dropped: list[int] = []  # ids out since the last `dropped`

    def add(self, candidate: Candidate, metrics: Mapping[str, Any], last: bool) -> None:
        """A successful result of ``candidate`` at ``candidate.rung``: it joins that rung's ranking.

        Args:
            last: the candidate's ladder ends here (its whole budget is trained): it is ranked, never promoted.
        """
        values = []
        for name, sign in zip(self.objectives, self._signs):
            value = float(metrics.get(name, math.nan)) * sign
            values.append(value if math.isfinite(value) else WORST)
        rung = self._rungs[candidate.rung]
        self._where[candidate.id] = (rung, len(rung.candidates))
        rung.add(candidate, values, not last and candidate.rung < self.count - 1 and candidate.id not in self._promoted)
        if rung.due():
            self._rerank(rung)

    def promotion(self) -> Candidate | None:
        """The candidate to train to its next rung now (highest rung first, best first), marked promoted; or None."""
        for rung in reversed(self._rungs[:-1]):
            if rung.due():
                self._rerank(rung)
            while rung.queue:
                position = rung.queue.popleft()
                if rung.open[position]:
                    rung.open[position] = False
                    candidate = rung.candidates[position]
                    self._promoted.add(candidate.id)
                    return candidate
        return None

    def dropped(self) -> list[int]:
        """Ids ranked out of promotion since the last call (their checkpoints can go)."""
        out, self._dropped = self._dropped, []
        return out

    def promotable(self, row_id: int) -> bool:
        """Whether row ``row_id`` may still be promoted (it is neither promoted, nor out, nor at its top)."""
        where = self._where.get(row_id)
        return where is not None and where[0].open[where[1]]

    def restore(self, rows: Iterable[tuple[Candidate, Mapping[str, Any], bool]], promoted: Iterable[int]) -> None:
        """Rebuild from a library: its ``ok`` rows as ``(candidate, row, last)`` and the ids promoted.

        Args:
            rows: in the order the live search added them (the order the results came): the rungs are then
                re-ranked at the same moments, so they rule out the same candidates as they did live.
            promoted: the row each promotion (written or in flight) continues: never handed out twice.
        """
        self._promoted.update(int(i) for i in promoted)
        for candidate, row, last in rows:
            self.add(candidate, row, last)
        self._dropped.clear()  # their checkpoints went with the search that ruled them out

    def _rerank(self, rung: _Rung) -> None:
        count = len(rung.candidates)
        rung.ranked = count
        if count == 0:
            return
        values = rung.values[:count]
        ranks = front_ranks(values)
        order = nsga2_order(ranks, crowding_distances(values, ranks))
        promotable = count // self.factor
        rung.queue = deque(int(p) for p in order[:promotable] if rung.open[p])
        keep = max(math.ceil(2 * count / self.factor), self.keep_min)
        for position in order[keep:].tolist():
            if not rung.out[position]:
                rung.out[position] = True
                if rung.open[position]:
                    rung.open[position] = False
                    self._dropped.append(rung.candidates[position].id)
