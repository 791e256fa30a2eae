"""What ``menndl run --resume`` and library seeding take from existing libraries (no torch).

* :func:`load_resume` recovers a library (replays its journal) and returns its rows, the id
  counter, the master's random state and the tasks that were in flight.
* :func:`seed_genomes` picks the top candidates of earlier libraries, repaired for a new problem.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from menndl.errors import UserError
from menndl.genome import Genome, InputSpec, SearchSpace, repair
from menndl.library.stored import stored_genome
from menndl.master.evolution import Candidate, row_candidate
from menndl.objectives import RANKINGS


@dataclass
class ResumeState:
    """A library's search state: rows, the next id, the random state, the tasks in flight."""

    records: list[dict[str, Any]]
    next_id: int
    rng_state: str | None
    pending: list[Candidate] = field(default_factory=list)
    fingerprint: str = ""
    search_seconds: float = 0.0  # search time of the earlier runs (search.time_limit counts on from it)
    previous_release: bool = False  # written before streaming data: its fingerprint is `previous_release_fingerprint`


def load_resume(path: str | Path) -> ResumeState:
    """Recover ``path`` (fold its journal in) and read what a resumed search needs.

    The id counter, random state, search seconds and tasks in flight are the library's
    :class:`menndl.library.state.SearchState` (:meth:`menndl.library.Library.search_state`).

    Raises:
        UserError: The library is missing, unreadable or not a menndl library.
    """
    from menndl.library import Library
    from menndl.library.recover import recover

    p = Path(path)
    if not p.exists():
        raise UserError(f"--resume: library {p} does not exist")
    Library.open(p).close()  # validates (format, version) before anything is changed
    recover(p)
    with Library.open(p) as lib:
        records = lib.records()
        state = lib.search_state()
        fingerprint = str(lib.attrs.get("dataset_fingerprint", ""))
        previous_release = "dataset_identity" not in lib.attrs
    for record in records:  # every stored genome is checked before the search parses them again
        stored_genome(p, record)
    candidates = [
        row_candidate(task, stored_genome(p, task),
                      json.loads(task["parents"]) if isinstance(task["parents"], str) else task["parents"])
        for task in state.pending
    ]  # fmt: skip
    return ResumeState(records, state.next_id, state.rng_state, candidates, fingerprint, state.search_seconds or 0.0,
                       previous_release)  # fmt: skip


def seed_genomes(
    paths: tuple[str, ...], top: int, by: str, space: SearchSpace, spec: InputSpec, base: Path
) -> list[Genome]:
    """The ``top`` best successful genomes of each earlier library, repaired for ``space``/``spec``.

    Raises:
        UserError: A library is missing or unreadable.
    """
    from menndl.library import Library

    column, sign = RANKINGS[by]
    genomes: list[Genome] = []
    seen: set[str] = set()
    for name in paths:
        path = Path(name) if Path(name).is_absolute() else base / name
        with Library.open(path) as lib:
            ok = lib.column("status") == "ok"
            values = lib.column(column).astype(float)
            order = sorted(
                (i for i in range(len(lib)) if ok[i] and math.isfinite(values[i])),
                key=lambda i: sign * values[i],
            )
            for row in lib.rows(order[:top]):
                genome = repair(stored_genome(path, row), space, spec)
                if genome.hash not in seen:
                    seen.add(genome.hash)
                    genomes.append(genome)
    return genomes
