"""How far each task trains, from which weights, and which checkpoints beside the library are still of use.

With ``search.rungs`` > 1 a task trains its candidate to one rung of its ladder (`menndl.fidelity.ladder`):
a new candidate to the lowest, a promotion (`menndl.master.rungs`) from its checkpoint to the next one.
With ``search.inherit_weights`` a child of mutation or crossover starts from the trained weights of its
first parent (`menndl.worker.inherit`), when that parent's checkpoint is still there.  The plan puts those
instructions into the task (`task_keys`), decides which rows a worker writes a checkpoint for, and deletes
a checkpoint once nothing can use it: its row was promoted and the promotion's row is written, or it was
ranked out of promotion, or it was never promotable, and (with inheritance) its row is no longer in the
population.  Deletions of rows still in the population are retried in batches, so the cost per result
does not grow with the population.  Plain Python: no torch, no h5py.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from menndl.fidelity import budget_epochs, ladder
from menndl.job import Job
from menndl.library.checkpoints import checkpoint_ids, checkpoints_dir, stray_checkpoints
from menndl.master.candidate import Candidate
from menndl.master.rungs import Rungs

__all__ = ["TrainingPlan"]

PRUNE_SHARE = 4  # passes over the checkpoints kept only for their rows' place in the population: 4 per population


class TrainingPlan:
    """The rungs, weight inheritance and checkpoint files of one search."""

    def __init__(self, job: Job, library: str | Path, population_ids: Callable[[], Iterable[int]],
                 promote: Callable[[Candidate], Candidate]) -> None:  # fmt: skip
        """Set up for ``job``'s ``search.rungs``, ``reduction_factor`` and ``inherit_weights``.

        Args:
            library: the library's path (the checkpoints lie beside it).
            population_ids: the ids of the population's members now (inheritance keeps their checkpoints).
            promote: makes the candidate that continues a row to its next rung (`Evolution.promote`).
        """
        search = job.search
        self.library = Path(library)
        # absolute, for workers started elsewhere; built as text: Path objects cost microseconds a task
        self._folder = str(checkpoints_dir(self.library.absolute()))
        self._ladders: dict[float, tuple[int, ...]] = {}  # by genome budget (a few distinct values)
        self.epochs = job.training.epochs
        self.count, self.factor = search.rungs, search.reduction_factor
        self.inherit = search.inherit_weights
        self.rungs = Rungs(search.objectives, search.rungs, search.reduction_factor) if search.rungs > 1 else None
        self._population_ids = population_ids
        self._promote = promote
        self._files: dict[int, str] = {}  # row id -> its genome's JSON, for every checkpoint written and kept
        self._spare: set[int] = set()  # checkpoints of no more use to promotion: deleted once out of the population
        self._since_prune = 0
        self._prune_every = max(1, search.population // PRUNE_SHARE)  # O(population) a pass: O(1) per result

    @property
    def active(self) -> bool:
        """Whether tasks carry training instructions at all (rungs or inheritance set)."""
        return self.rungs is not None or self.inherit

    def ladder(self, candidate: Candidate) -> tuple[int, ...]:
        """The epochs at the end of each of ``candidate``'s rungs (one rung, its whole budget, without rungs)."""
        budget = candidate.genome.train.budget
        steps = self._ladders.get(budget)
        if steps is None:
            steps = self._ladders[budget] = ladder(budget_epochs(budget, self.epochs), self.count, self.factor)
        return steps

    def planned_epochs(self, candidate: Candidate) -> int:
        """Epochs ``candidate``'s task is to train (from its previous rung's end, when it continues one)."""
        steps = self.ladder(candidate)
        rung = min(candidate.rung, len(steps) - 1)
        return steps[rung] - (steps[rung - 1] if rung > 0 else 0)

    def promotion(self) -> Candidate | None:
        """The next promotion to hand out (ASHA: before any new candidate), or None."""
        if self.rungs is None:
            return None
        source = self.rungs.promotion()
        return None if source is None else self._promote(source)

    def task_keys(self, candidate: Candidate) -> dict[str, Any]:
        """What the task of ``candidate`` adds for the worker (`menndl.protocol.task_message`'s ``training``)."""
        if not self.active:
            return {}
        steps = self.ladder(candidate)
        rung = min(candidate.rung, len(steps) - 1)
        keys: dict[str, Any] = {"train_epochs": steps[rung], "plan_epochs": steps[-1],
                                "from_epochs": steps[rung - 1] if rung > 0 else 0}  # fmt: skip
        source = candidate.continues if candidate.continues >= 0 else -1
        if source < 0 and self.inherit and candidate.parents and candidate.operator != "seed":
            parent = candidate.parents[0]
            if parent in self._files:
                keys["inherit_from"] = {"id": parent, "path": self.path(parent),
                                        "genome": self._files[parent]}  # fmt: skip
        elif source >= 0 and source in self._files:  # else (a checkpoint lost with its disk) it trains from scratch
            keys["resume_from"] = {"id": source, "path": self.path(source)}
        if rung < len(steps) - 1 or self.inherit:
            keys["save_checkpoint"] = self.path(candidate.id)
        return keys

    def path(self, row_id: int) -> str:
        """Where row ``row_id``'s checkpoint lies: ``<id>.h5`` in `menndl.library.checkpoints.checkpoints_dir`."""
        return f"{self._folder}/{row_id}.h5"

    def _remove(self, row_id: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path(row_id))

    def recorded(self, candidate: Candidate, record: Mapping[str, Any]) -> None:
        """``candidate``'s row is written: rank it at its rung, and let go of the checkpoints it ends the use of."""
        if not self.active:
            return
        ok = record.get("status") == "ok"
        steps = self.ladder(candidate)
        last = candidate.rung >= len(steps) - 1
        if ok and self.rungs is not None:
            self.rungs.add(candidate, record, last)
        asked = not last or self.inherit
        if asked and ok:
            self._files[candidate.id] = candidate.genome.to_json()
            if last:
                self._spare.add(candidate.id)
        elif asked:
            self._remove(candidate.id)
        if candidate.continues >= 0:
            self._spare.add(candidate.continues)
        if self.rungs is not None:
            self._spare.update(self.rungs.dropped())
        self._since_prune += 1
        if not self.inherit or self._since_prune >= self._prune_every:
            self.prune()

    def prune(self) -> None:
        """Delete the spare checkpoints (with inheritance: those whose rows left the population)."""
        self._since_prune = 0
        if not self._spare:
            return
        keep = set(self._population_ids()) if self.inherit else set()
        for row_id in [i for i in self._spare if i not in keep]:
            self._remove(row_id)
            self._files.pop(row_id, None)
            self._spare.discard(row_id)

    def close(self) -> None:
        """At the end of a run: delete the spare checkpoints, and whatever else lies in the folder (temporaries of
        workers killed while writing, checkpoints of tasks left in flight: a resume runs those again)."""
        if not self.active:
            return
        self.prune()
        stray_checkpoints(self.library, set(self._files))

    def restore(self, records: Iterable[Mapping[str, Any]], candidates: Mapping[int, Candidate],
                pending: Iterable[Candidate]) -> None:  # fmt: skip
        """Rebuild from a resumed library: the rungs, the checkpoints still of use; delete the rest.

        Args:
            records: every row, in id order.
            candidates: the candidate of every ``ok`` row, by id.
            pending: the tasks a resume runs again (a promotion among them keeps its source's checkpoint).
        """
        if not self.active:
            return
        # In the order the results came, so the rungs are re-ranked at the moments the live search re-ranked them
        # (whom a re-ranking rules out is final): the same rungs as if the search had never stopped.
        rows = sorted((dict(r) for r in records), key=lambda r: (float(r.get("finished_at", 0.0)), int(r["id"])))
        pending = list(pending)
        promoted = {c.continues for c in pending if c.continues >= 0}
        for row in rows:  # every promotion written, whatever became of it: its one parent is the row it continued
            parents = json.loads(row["parents"]) if isinstance(row.get("parents"), str) else row.get("parents", [])
            if row.get("operator") == "promote" and parents:
                promoted.add(int(parents[0]))
        on_disk = checkpoint_ids(self.library)
        if self.rungs is not None:
            ranked = []
            for row in rows:
                candidate = candidates.get(int(row["id"]))
                if candidate is not None:
                    ranked.append((candidate, row, candidate.rung >= len(self.ladder(candidate)) - 1))
            self.rungs.restore(ranked, promoted)
        in_flight_sources = {c.continues for c in pending if c.continues >= 0}
        for row_id, candidate in candidates.items():
            if row_id not in on_disk:
                continue
            useful = self.rungs is not None and self.rungs.promotable(row_id)
            if useful or row_id in in_flight_sources or self.inherit:
                self._files[row_id] = candidate.genome.to_json()
                if not (useful or row_id in in_flight_sources):
                    self._spare.add(row_id)
        stray_checkpoints(self.library, set(self._files))
        self.prune()
