"""``kill -9`` of a search with multi-fidelity rungs, then ``--resume``: nothing lost, nothing trained twice.

Real runs (``menndl run --workers 2`` on the digits, ``search.rungs = 3``), killed with SIGKILL of their
whole process group (the master and its workers die at once) while a promoted candidate trains from its
source's checkpoint.  After ``--resume`` completes the budget:

* every result journaled before the kill is a row, as it was (no rung result lost), and every task
  journaled before the kill has a row (what was in flight ran again);
* row ids are unique and no genome has two rows at one rung (no candidate trained twice at a rung);
* every promotion continues an ``ok`` row of the same genome one rung lower, and the promotion in flight
  at the kill has exactly one row;
* ``LIB.h5.checkpoints/`` holds no temporary and no orphan: only checkpoints of ``ok`` rows below the top
  of their ladder that were not promoted;
* the compute (``spent_epochs``) counts each trained epoch once: a promotion spends only the epochs past
  its source's.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import BIN, env

from menndl.fidelity import budget_epochs, ladder
from menndl.genome import Genome
from menndl.library import Library
from menndl.library.checkpoints import checkpoints_dir
from menndl.library.journal import journal_path, read_journal

pytestmark = pytest.mark.timeout(180)

EPOCHS, RUNGS, FACTOR, EVALUATIONS = 9, 3, 3, 40

RUNG_JOB = f"""
name = "digits-rungs"
seed = {{seed}}
[data]
source = "digits"
[search]
population = 8
evaluations = {EVALUATIONS}
objectives = ["accuracy", "params"]
rungs = {RUNGS}
reduction_factor = {FACTOR}
[space]
max_features = 3
max_head = 1
filters = [8, 32]
[training]
epochs = {EPOCHS}
max_seconds = 60
"""

RUN_TIMEOUT = 120  # a whole resumed run (about 15 s alone on 2 cores)


def _job(folder: Path, seed: int = 0) -> Path:
    path = folder / "job.toml"
    path.write_text(RUNG_JOB.format(seed=seed))
    return path


def _start(job: Path, library: Path, log: Path, *extra: str) -> subprocess.Popen:
    """``menndl run JOB --library LIB --workers 2 [extra]`` in its own process group, output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen([str(BIN / "menndl"), "run", str(job), "--library", str(library), "--workers", "2",
                                 *extra], env=env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the run's whole process group (master and workers at once) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    # the workers are in the group too: wait until none of them is left writing into the checkpoints
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process group {proc.pid} still alive 30 s after SIGKILL")


def _finish(proc: subprocess.Popen, log: Path, timeout: float = RUN_TIMEOUT) -> str:
    """Wait for a run to end on its own (exit 0); on a timeout kill its group and fail."""
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise AssertionError(f"run did not end within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}") from None
    text = log.read_text(errors="replace")
    assert status == 0, text[-3000:]
    return text


def _journal(library: Path, since: float = 0.0) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """The live journal's tasks (by id) and the ids of its rows finished after ``since`` (a wall-clock time:
    a resumed run's own, not those of the journal of the killed run it folds in first)."""
    path = journal_path(library)
    try:
        contents = read_journal(path)
    except FileNotFoundError:
        return {}, set()
    return dict(contents.tasks), {int(r["id"]) for r in contents.rows if float(r["finished_at"]) >= since}


def _promotion_in_flight(library: Path, min_results: int) -> tuple[int, int] | None:
    """``(task id, source id)`` of a promotion whose task is journaled and whose result is not, once this
    run's journal has ``min_results`` results; else None."""
    tasks, done = _journal(library)
    if len(done) < min_results:
        return None
    flying = [(i, int(t["continues"])) for i, t in tasks.items() if "continues" in t and i not in done]
    return max(flying) if flying else None


def _wait(predicate, proc: subprocess.Popen, log: Path, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            return None
        time.sleep(step)
    _kill(proc)
    raise AssertionError(f"condition not met within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def _rows(library: Path) -> list[dict[str, Any]]:
    with Library.open(library) as lib:
        return lib.records()


def _top_rung(row: dict[str, Any]) -> int:
    """The highest rung of the row's ladder (its genome's budget, the job's epochs, rungs and factor)."""
    genome = Genome.from_json(row["genome"])
    return len(ladder(budget_epochs(genome.train.budget, EPOCHS), RUNGS, FACTOR)) - 1


def _describe(rows: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{r['id']:>3} {r['hash'][:8]} {r['operator']:<14} {r['status']:<8} rung {r['rung']} "
        f"from {r['inherited_from']:>3} epochs {r['epochs']} spent {r['spent_epochs']} {r['error'][:80]}"
        for r in rows
    )


def _assert_consistent(library: Path, rows: list[dict[str, Any]]) -> None:
    """Assertions 2-5 on a completed library: unique ids and (hash, rung), sound promotions, no orphaned
    checkpoint, compute counted once."""
    table = _describe(rows)
    ids = Counter(int(r["id"]) for r in rows)
    assert not [i for i, n in ids.items() if n > 1], f"duplicate ids\n{table}"
    pairs = Counter((r["hash"], int(r["rung"])) for r in rows)
    twice = sorted((h, rung) for (h, rung), n in pairs.items() if n > 1)
    assert not twice, f"trained twice at one rung: {twice}\n{table}"
    assert len(rows) == EVALUATIONS, table
    by_id = {int(r["id"]): r for r in rows}
    promotes = [r for r in rows if r["operator"] == "promote"]
    assert promotes, table  # the test is about promotions: there must be some
    for row in promotes:
        (parent,) = json.loads(row["parents"])
        source = by_id.get(int(row["inherited_from"]))
        assert source is not None, f"promotion {row['id']} of row {parent} continues no row (from scratch)\n{table}"
        assert int(source["id"]) == parent, table
        assert source["hash"] == row["hash"], table
        assert int(source["rung"]) == int(row["rung"]) - 1, table
        assert source["status"] == "ok", table
    promoted = Counter(json.loads(r["parents"])[0] for r in promotes)
    assert not [i for i, n in promoted.items() if n > 1], f"a row promoted twice\n{table}"

    folder = checkpoints_dir(library)
    files = sorted(os.listdir(folder)) if folder.is_dir() else []
    temporaries = [name for name in files if ".tmp." in name]
    assert not temporaries, f"temporaries left: {temporaries}"
    for name in files:
        stem, _, suffix = name.partition(".")
        assert suffix == "h5" and stem.isdigit(), f"unexpected file {name} in {folder}"
        row = by_id.get(int(stem))
        assert row is not None, f"checkpoint {name} of no row\n{table}"
        assert row["status"] == "ok", f"checkpoint {name} of a {row['status']} row\n{table}"
        assert int(stem) not in promoted, f"checkpoint {name} of a row already promoted\n{table}"
        assert int(row["rung"]) < _top_rung(row), f"checkpoint {name} at the top of its ladder\n{table}"

    expected = 0
    for row in rows:
        epochs = int(row["epochs"])
        if row["operator"] == "promote":
            source = by_id[int(row["inherited_from"])]
            assert int(row["spent_epochs"]) == epochs - int(source["epochs"]), f"row {row['id']}\n{table}"
            expected += epochs - int(source["epochs"])
        else:
            assert int(row["spent_epochs"]) == epochs, f"row {row['id']}\n{table}"
            expected += epochs
    assert sum(int(r["spent_epochs"]) for r in rows) == expected, table


def test_kill_while_a_promotion_trains_then_resume_loses_nothing_and_trains_nothing_twice(tmp_path: Path) -> None:
    """SIGKILL of master and workers while a promoted candidate trains; --resume completes the budget."""
    job, library, log = _job(tmp_path), tmp_path / "lib.h5", tmp_path / "run.log"
    proc = _start(job, library, log)
    flying = _wait(lambda: _promotion_in_flight(library, min_results=6), proc, log, timeout=RUN_TIMEOUT)
    assert flying is not None, f"the run ended before a promotion was in flight:\n{log.read_text()[-3000:]}"
    _kill(proc)
    task_id, source_id = flying
    tasks_at_kill, results_at_kill = _journal(library)
    before = {int(r["id"]): r for r in _rows(library)}
    assert results_at_kill == set(before), (sorted(results_at_kill), sorted(before))  # a fresh library: all journaled
    assert task_id not in before and source_id in before, (flying, sorted(before))
    assert len(before) >= 6

    text = _finish(_start(job, library, log, "--resume"), log)
    assert "stopped: evaluation budget reached" in text, text[-3000:]
    rows = _rows(library)
    by_id = {int(r["id"]): r for r in rows}
    table = _describe(rows)

    # 1. no rung result lost: every row at the kill is there, as it was
    for i, old in before.items():
        new = by_id.get(i)
        assert new is not None, f"row {i} lost\n{table}"
        assert (new["status"], new["hash"], new["rung"]) == (old["status"], old["hash"], old["rung"]), table
        assert new["accuracy"] == old["accuracy"] or (new["accuracy"] != new["accuracy"]
                                                      and old["accuracy"] != old["accuracy"]), table  # fmt: skip
    missing = sorted(set(tasks_at_kill) - set(by_id))
    assert not missing, f"tasks journaled before the kill without a row: {missing}\n{table}"

    # 3. the promotion in flight ran again exactly once, under its id, from its source's checkpoint
    continuing = [r for r in rows if r["operator"] == "promote" and json.loads(r["parents"]) == [source_id]]
    assert [int(r["id"]) for r in continuing] == [task_id], table
    assert continuing[0]["status"] == "ok" and int(continuing[0]["inherited_from"]) == source_id, table

    _assert_consistent(library, rows)  # 2, 3, 4, 5


def test_three_kills_at_random_moments_then_resume_keep_rungs_consistent(tmp_path: Path) -> None:
    """SIGKILL three times at random moments (after a few results of each run), resuming between; then finish."""
    seed = int(os.environ.get("MENNDL_KILL_SEED", random.randrange(1 << 30)))
    chance = random.Random(seed)
    job, library, log = _job(tmp_path, seed=1), tmp_path / "lib.h5", tmp_path / "run.log"
    kills = 0
    for attempt in range(3):
        since = time.time()
        proc = _start(job, library, log, *(["--resume"] if attempt else []))
        started = _wait(lambda since=since: len(_journal(library, since)[1]) >= 3, proc, log, timeout=RUN_TIMEOUT)
        if started:
            time.sleep(chance.uniform(0.0, 2.5))
        if proc.poll() is not None:
            _finish(proc, log)  # ended before the kill: the budget is spent
            break
        _kill(proc)
        kills += 1
        assert _rows(library), f"nothing recorded before kill {kills} (seed {seed})"
    else:
        _finish(_start(job, library, log, "--resume"), log)
    assert kills >= 2, f"seed {seed}: the search ended after {kills} kills"
    rows = _rows(library)
    try:
        _assert_consistent(library, rows)
    except AssertionError as exc:
        raise AssertionError(f"MENNDL_KILL_SEED={seed}, {kills} kills: {exc}") from None
