"""The search state (menndl.library.state): one function over the HDF5 ``/state`` and the journal."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import numpy as np

from menndl.library.columns import ColumnStore, read_state
from menndl.library.journal import JournalParser, JournalWriter, journal_path, read_journal
from menndl.library.reader import Library
from menndl.library.recover import KILLED, recover
from menndl.library.schema import FIELD_NAMES
from menndl.library.state import SearchState, StateTracker, search_state
from menndl.library.writer import LibraryWriter

JOB = 'name = "j"\n'


def task(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": i, "genome": json.dumps({"i": i}), "hash": f"h{i}", "parents": [], "operator": "random", "seed": i,
            "submitted_at": 1.0 + i, **extra}  # fmt: skip


def row(i: int) -> list[Any]:
    """A journal row line's values (the genome from the task line)."""
    values: dict[str, Any] = {"id": i, "genome": None, "hash": f"h{i}", "status": "ok", "accuracy": 0.5}
    return [values.get(name) for name in FIELD_NAMES]


def stored_library(path: Path, state: SearchState, ids: list[int]) -> None:
    """A closed library whose ``/state`` holds ``state`` and whose rows have ``ids``."""
    with LibraryWriter(path, job_text=JOB, journal=False) as writer:
        writer.write_columns({"id": np.asarray(ids), "hash": [f"h{i}" for i in ids]})
    with ColumnStore.open(path) as store:
        store.write_state(state, pending=True)


def hdf5_state(path: Path) -> SearchState:
    """``search_state`` of a closed library from its HDF5 file alone, as ``LibraryWriter.reopen`` computes it."""
    with ColumnStore.open(path) as store:
        return search_state(store.read_state(), None, store.ids())


def journal(path: Path, lines: list[dict[str, Any]], torn: str = "") -> Path:
    """A journal with a header, these lines, and optionally a torn last line."""
    jpath = journal_path(path)
    writer = JournalWriter(jpath, {"format": "menndl-library", "format_version": 1, "job": JOB})
    for line in lines:
        if line["type"] == "row":
            writer.write_row(line["values"])
        else:
            writer.write(line)
    writer.close()
    if torn:
        with open(jpath, "a") as fh:
            fh.write(torn)
    return jpath


def test_state_from_the_hdf5_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    stored = SearchState(next_id=7, rng_state="[1]", pending=(task(5), task(6)), stop_reason="SIGUSR2 received",
                         search_seconds=12.5)  # fmt: skip
    stored_library(path, stored, [0, 1, 2, 3, 4, 5])  # task 5 got its row after the state was written
    state = hdf5_state(path)
    assert state == SearchState(7, "[1]", (task(6),), "SIGUSR2 received", 12.5, closed=True)
    with Library.open(path) as lib:
        assert lib.search_state() == state
        assert lib.resume_state() == ("[1]", 7, [task(6)])
        assert lib.session() == {"stop_reason": "SIGUSR2 received", "search_seconds": 12.5, "closed": True}


def test_next_id_passes_every_stored_row(tmp_path: Path) -> None:
    """A library whose ``/state`` never got an id counter (a merge) still gives ids past its rows."""
    path = tmp_path / "lib.h5"
    stored_library(path, SearchState(), [3, 9, 4])
    state = hdf5_state(path)
    assert state.next_id == 10 and state.pending == () and state.rng_state is None
    assert state.stop_reason is None and state.search_seconds is None
    with Library.open(path) as lib:
        assert lib.session() == {"stop_reason": "", "search_seconds": 0.0, "closed": True}


def test_state_from_the_hdf5_file_and_its_journal(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    stored = SearchState(next_id=7, rng_state="[1]", pending=(task(5), task(6)), stop_reason="SIGUSR2 received",
                         search_seconds=12.5)  # fmt: skip
    stored_library(path, stored, [0, 1, 2, 3, 4])
    jpath = journal(path, [
        {"type": "task", **task(6, operator="again"), "next_id": 7},  # the resumed run re-ran 6: this line wins
        {"type": "task", **task(7), "next_id": 8, "rng_state": "[2]", "search_seconds": 20.0},
        {"type": "row", "values": row(5)},
        {"type": "task", **task(8), "next_id": 9},
        {"type": "row", "values": row(7)},
    ])  # fmt: skip
    with ColumnStore.open(path) as store:
        state = search_state(store.read_state(), read_journal(jpath), [*store.ids().tolist(), 5, 7])
    assert state.next_id == 9 and state.rng_state == "[2]" and state.search_seconds == 20.0
    assert [dict(t) for t in state.pending] == [task(6, operator="again"), task(8)]
    assert all("next_id" not in t and "rng_state" not in t and "search_seconds" not in t for t in state.pending)
    assert state.stop_reason == "SIGUSR2 received" and not state.closed  # how the run before ended; this one runs
    with Library.open(path) as lib:  # live: the file is not read, the journal is (no base copy here)
        assert lib.live and lib.search_state().pending == tuple(t for t in state.pending)
        assert lib.session() == {"stop_reason": "", "search_seconds": 20.0, "closed": False}


def test_a_torn_last_journal_line_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    lines = [{"type": "task", **task(0), "next_id": 1, "rng_state": "[0]"}, {"type": "task", **task(1), "next_id": 2}]
    torn_task = json.dumps({"type": "task", **task(2), "next_id": 3, "rng_state": "[9]"})[:40]  # killed mid-write
    contents = read_journal(journal(path, lines, torn=torn_task))
    assert contents.torn_lines == 1
    state = search_state(SearchState(), contents, [])
    assert [t["id"] for t in state.pending] == [0, 1] and state.next_id == 2 and state.rng_state == "[0]"
    torn_row = '{"type":"row","values":[1,null,'  # its task stays in flight: the row never fully reached the disk
    contents = read_journal(journal(tmp_path / "other.h5", [*lines, {"type": "row", "values": row(0)}], torn_row))
    state = search_state(SearchState(), contents, [r["id"] for r in contents.rows])
    assert contents.torn_lines == 1 and [t["id"] for t in state.pending] == [1]


def test_finished_tasks_leave_the_in_flight_list_pending_ones_stay(tmp_path: Path) -> None:
    """Live (journal), after a crash and recovery, and after a clean close: the same tasks are in flight."""
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB, flush_every=2)
    for i in range(6):
        writer.task_started(task(i, next_id=i + 1, rng_state=f"[{i}]", search_seconds=float(i)))
    for i in (0, 2, 3, 5):
        writer.append({k: v for k, v in task(i).items() if k not in ("submitted_at",)} | {"status": "ok"})
    writer.commit()
    with Library.open(path) as lib:
        live = lib.search_state()
    assert [t["id"] for t in live.pending] == [1, 4] and live.next_id == 6 and live.rng_state == "[5]"
    assert live.search_seconds == 5.0 and not live.closed
    del writer  # killed: dropped unclosed
    gc.collect()
    report = recover(path)
    assert report.pending == 2
    with Library.open(path) as lib:
        recovered = lib.search_state()
    assert recovered == SearchState(6, "[5]", live.pending, KILLED, 5.0, closed=True)
    again = LibraryWriter.reopen(path)
    again.append({"id": 4, "genome": task(4)["genome"], "status": "ok"})
    again.set_session("evaluation budget reached", 9.0)
    again.close()
    with Library.open(path) as lib:
        closed = lib.search_state()
    assert [t["id"] for t in closed.pending] == [1] and closed.next_id == 6
    assert (closed.stop_reason, closed.search_seconds, closed.closed) == ("evaluation budget reached", 9.0, True)


def test_the_fold_process_way_batch_by_batch_gives_the_same_state(tmp_path: Path) -> None:
    """Advancing a state batch by batch over a journal that forgets finished tasks equals reading it at once."""
    lines = []
    for i in range(40):
        lines.append({"type": "task", **task(i), "next_id": i + 1, "rng_state": f"[{i}]"})
        if i >= 3 and i % 5:
            lines.append({"type": "row", "values": row(i - 3)})
    jpath = journal(tmp_path / "lib.h5", lines)
    contents = read_journal(jpath)
    whole = search_state(SearchState(pending=(task(-1),)), contents, [r["id"] for r in contents.rows])
    parser, state = JournalParser(forget_finished=True), SearchState(pending=(task(-1),))
    raw = jpath.read_bytes().splitlines()
    for start in range(0, len(raw), 7):
        for line in raw[start : start + 7]:
            parser.feed(line)
        batch, parser.contents.rows = parser.contents.rows, []
        state = search_state(state, parser.contents, [r["id"] for r in batch])
    assert state == whole and [t["id"] for t in whole.pending][:3] == [-1, 2, 7]


def test_the_writer_tracks_the_same_state_in_o1_per_event(tmp_path: Path) -> None:
    tracker = StateTracker(SearchState(next_id=3, pending=(task(2),)))
    tracker.started(task(3, next_id=4, rng_state="[3]"))
    assert tracker.finished(2) and not tracker.finished(2) and not tracker.finished(99)
    tracker.end_session("time limit reached", 4.0)
    started = task(3, next_id=4, rng_state="[3]")
    assert tracker.snapshot() == SearchState(4, "[3]", (started,), "time limit reached", 4.0)
    path = tmp_path / "lib.h5"
    stored_library(path, tracker.snapshot(), [])
    with ColumnStore.open(path) as store:  # written without the master's state keys
        assert read_state(store.file, path).pending == (task(3),)
