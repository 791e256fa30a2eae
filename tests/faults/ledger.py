"""The fault suite's bookkeeping: did a run lose a finished evaluation, or train one twice?

`read_ledger` opens a library the way users do (`menndl.library.Library`, which replays a journal
left by a killed writer) and, where the test has one, the log the sleep evaluator's workers wrote
(one JSON line ``{"task", "hash", "pid"}`` per evaluation they finished, see
`menndl.worker.sleep`).

* *trained twice*: an id with more than one row, or a genome hash with more than one finished row
  (every status but ``lost``/``timeout``, which mark a candidate that did not finish).
* *lost*: an evaluation a worker finished (in the log) whose id has no row with that hash, unless
  the search was abandoned while it ran (the caller says which ids may be missing).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from menndl.library import Library

UNFINISHED = ("lost", "timeout")


@dataclass
class Ledger:
    """What one library (and its workers' log) says about a run."""

    rows: int
    statuses: dict[str, int]
    ids: set[int]
    duplicate_ids: list[int] = field(default_factory=list)
    trained_twice: list[str] = field(default_factory=list)  # hashes with more than one finished row
    lost: list[int] = field(default_factory=list)  # ids a worker finished that are not in the library
    finished_by_workers: int = 0
    rerun_after_kill: int = 0  # ids a worker log shows finished twice: killed between finishing and reporting

    @property
    def twice(self) -> int:
        """Evaluations trained (recorded) twice."""
        return len(self.duplicate_ids) + len(self.trained_twice)

    def summary(self) -> dict[str, object]:
        """Plain figures for a report."""
        return {"rows": self.rows, "statuses": self.statuses, "lost": len(self.lost), "trained_twice": self.twice,
                "finished_by_workers": self.finished_by_workers, "rerun_after_kill": self.rerun_after_kill}  # fmt: skip


def read_worker_log(path: Path) -> list[dict]:
    """The evaluations workers finished (a torn last line from a killed worker is skipped)."""
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def read_ledger(library: Path, worker_log: Path | None = None, may_be_missing: Iterable[int] = ()) -> Ledger:
    """Check one library (it must open) against what its workers finished."""
    with Library.open(library) as lib:
        records = lib.records()
    ids = Counter(int(r["id"]) for r in records)
    finished = Counter(r["hash"] for r in records if r["status"] not in UNFINISHED)
    ledger = Ledger(
        rows=len(records),
        statuses=dict(Counter(r["status"] for r in records)),
        ids=set(ids),
        duplicate_ids=sorted(i for i, n in ids.items() if n > 1),
        trained_twice=sorted(h for h, n in finished.items() if n > 1),
    )
    if worker_log is not None:
        entries = read_worker_log(worker_log)
        recorded = {(int(r["id"]), r["hash"]) for r in records if r["status"] not in UNFINISHED}
        excused = set(may_be_missing)
        ledger.finished_by_workers = len({e["task"] for e in entries})
        ledger.lost = sorted({int(e["task"]) for e in entries if (int(e["task"]), e["hash"]) not in recorded}
                             - excused)  # fmt: skip
        ledger.rerun_after_kill = sum(1 for n in Counter(int(e["task"]) for e in entries).values() if n > 1)
    return ledger


def assert_clean(ledger: Ledger, budget: int | None = None) -> None:
    """Nothing lost, nothing trained twice; with ``budget``, ids 0..budget-1 each have a row."""
    assert not ledger.lost, f"finished evaluations missing from the library: {ledger.lost}"
    assert not ledger.duplicate_ids, f"ids with several rows: {ledger.duplicate_ids}"
    assert not ledger.trained_twice, f"genomes trained twice: {ledger.trained_twice}"
    if budget is not None:
        assert ledger.ids == set(range(budget)), sorted(set(range(budget)) ^ ledger.ids)
