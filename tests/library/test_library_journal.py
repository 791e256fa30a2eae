"""Crash safety of the library: journal, recovery, live readers, resume state, kept weights."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from menndl.errors import UserError
from menndl.library.journal import base_path, journal_path, read_journal
from menndl.library.reader import Library
from menndl.library.recover import recover
from menndl.library.writer import LibraryWriter

REPO = Path(__file__).resolve().parents[2]
JOB = 'name = "j"\n'


def record(i: int, status: str = "ok") -> dict:
    return {
        "id": i,
        "genome": json.dumps({"features": [], "i": i}),
        "hash": f"h{i}",
        "parents": [i - 1] if i else [],
        "operator": "mutate" if i else "random",
        "status": status,
        "accuracy": i / 100 if status == "ok" else None,
        "params": 100 + i,
        "seed": i,
    }


def test_sigkill_mid_stream_loses_nothing_that_was_committed(tmp_path: Path) -> None:
    """A writer killed with SIGKILL: the library opens and holds every record appended and committed (`tick`)."""
    path = tmp_path / "lib.h5"
    script = textwrap.dedent(
        """
        import json, sys
        from menndl.library.writer import LibraryWriter
        w = LibraryWriter(sys.argv[1], job_text="x", flush_every=50, flush_seconds=None)
        i = 0
        while True:
            w.append({"id": i, "genome": json.dumps({"i": i}), "hash": f"h{i}", "status": "ok", "accuracy": 0.5})
            w.tick()  # what the master does at every turn of its loop
            print(i, flush=True)
            i += 1
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    last = -1
    for line in proc.stdout:  # let it write a few batches, then kill it mid-stream
        last = int(line)
        if last >= 237:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert journal_path(path).exists()
    with Library.open(path) as lib:  # opens at once; reads the journal, not the half-written file
        ids = lib.column("id").tolist()
        assert lib.live
    assert ids[: last + 1] == list(range(last + 1))  # everything appended before the kill, in order
    report = recover(path)
    assert not journal_path(path).exists() and not base_path(path).exists()
    with Library.open(path) as lib:
        assert not lib.live
        assert lib.column("id").tolist() == ids
        assert len(set(lib.column("hash").tolist())) == len(ids)
    assert report.replayed_rows == len(ids)  # every journal row, over an empty layout (the crashed file is replaced)


def test_unreadable_hdf5_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB, attrs={"input_shape": "[1, 8, 8]"}, flush_every=3)
    for i in range(7):
        writer.append(record(i))
    writer.set_pareto([5, 6])
    writer.commit()  # simulate the crash: the writer is dropped unclosed, nothing more reaches the disk
    del writer
    gc.collect()
    with open(path, "r+b") as fh:  # damage the HDF5 file (a crash mid-write can do this)
        fh.seek(0)
        fh.write(b"\0" * 4096)
    report = recover(path)
    assert report.rebuilt and report.moved_aside is not None and report.moved_aside.exists()
    with Library.open(path) as lib:
        assert lib.column("id").tolist() == list(range(7))
        assert lib.pareto_ids() == [5, 6]
        assert lib.attrs["input_shape"] == "[1, 8, 8]" and lib.job_text == JOB


def test_resume_state_tracks_tasks_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB, flush_every=100)
    for i in range(4):
        task = {"id": i, "genome": json.dumps({"i": i}), "hash": f"h{i}", "parents": [], "operator": "random"}
        writer.task_started({**task, "seed": i, "submitted_at": 1.0, "next_id": i + 1, "rng_state": f"[{i}]"})
    writer.append(record(0))
    writer.append(record(2))
    assert journal_path(path).read_bytes().count(b"\n") == 1  # the header only: lines wait for a commit
    writer.tick()
    with Library.open(path) as lib:  # live: from the journal
        rng, next_id, pending = lib.resume_state()
    assert (rng, next_id, [t["id"] for t in pending]) == ("[3]", 4, [1, 3])
    writer.close()  # clean close: the state is in the HDF5 file
    with Library.open(path) as lib:
        rng, next_id, pending = lib.resume_state()
    assert (rng, next_id, [t["id"] for t in pending]) == ("[3]", 4, [1, 3])
    again = LibraryWriter.reopen(path, flush_every=100)  # resume: pending stays pending until recorded
    assert base_path(path).exists() and journal_path(path).exists()
    again.append(record(1))
    again.close()
    with Library.open(path) as lib:
        assert sorted(lib.column("id").tolist()) == [0, 1, 2]
        assert [t["id"] for t in lib.resume_state()[2]] == [3]


def test_row_lines_leave_out_a_genome_their_task_line_has(tmp_path: Path) -> None:
    """Each genome text is journaled once; readers, recovery and a resumed writer still see it on the row."""
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB, flush_every=100)
    for i in range(3):
        rec = record(i)
        writer.task_started(
            {
                "id": i,
                "genome": rec["genome"],
                "hash": rec["hash"],
                "parents": rec["parents"],
                "operator": rec["operator"],
                "seed": i,
                "submitted_at": 1.0,
                "next_id": i + 1,
            }
        )
    writer.append(record(0))
    writer.append({**record(1), "genome": json.dumps({"other": 1})})  # not the task's text: written in full
    writer.commit()
    lines = [json.loads(line) for line in journal_path(path).read_text().splitlines()]
    rows = [dict(zip(lines[0]["fields"], line["values"])) for line in lines if line["type"] == "row"]
    assert rows[0]["genome"] is None and rows[1]["genome"] == json.dumps({"other": 1})
    assert [r["genome"] for r in read_journal(journal_path(path)).rows] == [record(0)["genome"], rows[1]["genome"]]
    with Library.open(path) as lib:  # a live reader goes through the journal
        assert [r["genome"] for r in lib.records()] == [record(0)["genome"], rows[1]["genome"]]
    writer.commit()  # a crash: the writer is dropped unclosed, the HDF5 file never got the rows
    del writer
    gc.collect()
    recover(path)
    with Library.open(path) as lib:
        assert [r["genome"] for r in lib.records()] == [record(0)["genome"], rows[1]["genome"]]
    again = LibraryWriter.reopen(path, flush_every=100)  # task 2 came from the old journal: its row needs the text
    again.append(record(2))
    again.commit()
    lines = [json.loads(line) for line in journal_path(path).read_text().splitlines()]
    assert dict(zip(lines[0]["fields"], lines[-1]["values"]))["genome"] == record(2)["genome"]
    again.close()
    with Library.open(path) as lib:
        assert [r["genome"] for r in lib.records()] == [record(i)["genome"] for i in (0,)] + [
            rows[1]["genome"],
            record(2)["genome"],
        ]


def test_flush_by_time(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB, flush_every=1000, flush_seconds=0.0, journal=False)
    writer.append(record(0))
    assert writer.written == 1  # no journal, flush_seconds=0: every call flushes
    writer.close()
    writer = LibraryWriter(tmp_path / "j.h5", job_text=JOB, flush_every=1000, flush_seconds=0.0)
    writer.append(record(0))
    writer.tick()  # with a journal: the line is written and synced, the HDF5 batch waits (the journal is durable)
    assert writer.written == 0 and b'"type":"row"' in journal_path(tmp_path / "j.h5").read_bytes()
    writer.close()
    writer = LibraryWriter(tmp_path / "b.h5", job_text=JOB, flush_every=1000, flush_seconds=3600)
    writer.append(record(0))
    writer.tick()
    assert writer.written == 0
    writer.close()


def test_weights_keep_the_top_k_as_plain_float32_arrays(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    rng = np.random.default_rng(0)
    arrays = {i: {"0.weight": rng.standard_normal((4, 3)), "0.bias": rng.standard_normal(4)} for i in range(5)}
    with LibraryWriter(path, job_text=JOB, keep_weights=2) as writer:
        for i, accuracy in enumerate([0.5, 0.9, 0.1, 0.95, 0.7]):
            writer.append({**record(i), "accuracy": accuracy})
            writer.offer_weights(i, accuracy, arrays[i])
    with Library.open(path) as lib:
        assert lib.weight_ids() == [1, 3]
        got = lib.weights(3)
        assert got is not None and list(got) == ["0.weight", "0.bias"]
        assert got["0.weight"].dtype == np.float32
        np.testing.assert_allclose(got["0.weight"], arrays[3]["0.weight"].astype(np.float32))
        assert lib.weights(0) is None
    with h5py.File(path, "r") as f:  # plain h5py sees plain datasets
        assert f["weights/3/0.bias"].dtype == np.float32


def test_journal_with_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text(
        '{"type":"header","attrs":{"format":"menndl-library"}}\n{"type":"row","record":{"id":0}}\n{"type":"ro'
    )
    contents = read_journal(path)
    assert [r["id"] for r in contents.rows] == [0] and contents.torn_lines == 1


def test_version_2_rows_are_values_in_the_header_order(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text(
        '{"type":"header","version":2,"attrs":{"format":"menndl-library"},"fields":["id","genome","accuracy"]}\n'
        '{"type":"task","id":4,"genome":"{\\"g\\":1}"}\n'
        '{"type":"row","values":[4,null,0.5]}\n'  # the genome comes from the task line
        '{"type":"row","values":[5,"{}",0.25]}\n'
        '{"type":"row","values":[6,"{}"]}\n'  # not the header's shape: skipped, counted
    )
    contents = read_journal(path)
    assert contents.rows == [
        {"id": 4, "genome": '{"g":1}', "accuracy": 0.5},
        {"id": 5, "genome": "{}", "accuracy": 0.25},
    ]
    assert contents.torn_lines == 1


def test_writer_lists_row_values_in_the_schema_order(tmp_path: Path) -> None:
    from menndl.library.schema import FIELD_NAMES

    assert FIELD_NAMES[:2] == ("id", "genome")  # the writer leaves the genome out by position
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB)
    writer.append(record(7))
    writer.commit()
    lines = [json.loads(line) for line in journal_path(path).read_text().splitlines()]
    assert lines[0]["version"] == 2 and lines[0]["fields"] == list(FIELD_NAMES)
    row = dict(zip(lines[0]["fields"], lines[-1]["values"]))
    assert row["id"] == 7 and row["genome"] == record(7)["genome"] and row["status"] == record(7)["status"]
    writer.close()


def test_reopen_refuses_a_library_with_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB)
    with pytest.raises(UserError, match="journal"):
        LibraryWriter.reopen(path)
    writer.close()


def test_task_lines_are_written_as_the_encoder_writes_them(tmp_path: Path) -> None:
    """The formatted task line equals ``{"type": "task", **task}`` encoded, for usual and unusual tasks."""
    import math
    import random

    from menndl.library.journal import JournalWriter

    rng = random.Random(4)
    usual = {"id": 7, "genome": '{"features":[{"type":"conv"}],"x":1.5e-05}', "hash": "0123456789abcdef",
             "parents": [3, 5], "operator": "crossover", "seed": 2**31 - 1, "submitted_at": 1764421234.123456,
             "next_id": 8}  # fmt: skip
    tasks = [usual, {**usual, "rng_state": '{"state":[1,2]}'}, {**usual, "parents": ()}, {**usual, "parents": []}]
    tasks += [{**usual, key: value} for key, value in [
        ("operator", 'quo"te\\ back\\slash \u00e9 \u2028 \x01'), ("submitted_at", math.nan),
        ("submitted_at", math.inf), ("submitted_at", 3), ("id", True), ("seed", 2.0), ("parents", [1, True]),
        ("parents", "[1,2]"), ("next_id", None), ("type", "other"), ("hash", 12)]]  # fmt: skip
    tasks += [{**usual, "id": rng.randrange(-(2**70), 2**70), "submitted_at": rng.uniform(-1e300, 1e300),
               "parents": [rng.randrange(10**6) for _ in range(rng.randrange(3))]} for _ in range(200)]  # fmt: skip
    missing = dict(usual)
    del missing["next_id"]
    tasks.append(missing)
    for task in tasks:
        fast, plain = JournalWriter(tmp_path / "fast", None), JournalWriter(tmp_path / "plain", None)
        fast.write_task(task)
        plain.write({"type": "task", **task})
        assert fast._queued == plain._queued, task
        fast.close(), plain.close()
        (tmp_path / "fast").unlink(), (tmp_path / "plain").unlink()


@pytest.mark.parametrize("folding", [False, True])
def test_sigkill_keeps_the_weights_kept_so_far(tmp_path: Path, folding: bool) -> None:
    """Kept weights survive a SIGKILL of the master (inline writer or fold process): recovery has the top k."""
    path = tmp_path / "lib.h5"
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from menndl.library.folding_writer import FoldingWriter
        from menndl.library.writer import LibraryWriter
        cls = FoldingWriter if sys.argv[2] == "1" else LibraryWriter
        w = cls(sys.argv[1], job_text="x", flush_every=1000, flush_seconds=None, keep_weights=3)
        accuracies = [0.5, 0.9, 0.1, 0.95, 0.7, 0.92, 0.3, 0.6]
        for i, accuracy in enumerate(accuracies):
            w.append({"id": i, "genome": json.dumps({"i": i}), "hash": f"h{i}", "status": "ok", "accuracy": accuracy})
            w.offer_weights(i, accuracy, {"w": np.full((2, 3), float(i)), "b": np.arange(i + 1.0)})
            w.tick()
        print("done", flush=True)
        import time
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), str(int(folding))], stdout=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "done"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    side = path.with_name(path.name + ".weights")
    assert sorted(p.name for p in side.iterdir()) == ["1.h5", "3.h5", "5.h5"]  # pushed-out models deleted at once
    report = recover(path)
    assert report.weights == 3 and not side.exists()
    with Library.open(path) as lib:
        assert lib.weight_ids() == [1, 3, 5]
        got = lib.weights(5)
        assert got is not None and list(got) == ["w", "b"]
        np.testing.assert_array_equal(got["w"], np.full((2, 3), 5.0, dtype=np.float32))
        np.testing.assert_array_equal(got["b"], np.arange(6.0, dtype=np.float32))
        assert len(lib.column("id")) == 8


def test_recovery_keeps_the_top_k_of_the_library_and_the_weight_files(tmp_path: Path) -> None:
    """Models a resumed run keeps join those of earlier runs; recovery leaves the best k, as the writer would."""
    from menndl.library.kept_weights import merge_weights_files, save_weights_file

    with h5py.File(tmp_path / "lib.h5", "w") as f:
        weights = f.create_group("weights")
        for eval_id, accuracy in [(1, 0.9), (2, 0.4)]:
            group = weights.create_group(str(eval_id))
            group.attrs["accuracy"] = accuracy
            group.attrs["names"] = json.dumps(["w"])
            group.create_dataset("w", data=np.zeros(2, dtype=np.float32))
        side = tmp_path / "lib.h5.weights"
        save_weights_file(side, 7, 0.8, {"w": np.ones(2, dtype=np.float32)}, keep=2)
        save_weights_file(side, 8, 0.9, {"w": np.ones(2, dtype=np.float32)}, keep=2)
        (side / "9.h5").write_bytes(b"cut short by a full disk")
        assert merge_weights_files(weights, side) == 2
        assert sorted(weights) == ["1", "8"]  # 0.9 twice: both kept; 0.8 and 0.4 out
        assert json.loads(weights["8"].attrs["names"]) == ["w"] and weights["8"]["w"][...].tolist() == [1.0, 1.0]


def test_clean_close_leaves_no_weight_files(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text=JOB, keep_weights=1) as writer:
        writer.append(record(1))
        writer.offer_weights(1, 0.5, {"w": np.zeros(3)})
        assert (tmp_path / "lib.h5.weights" / "1.h5").exists()
    assert not (tmp_path / "lib.h5.weights").exists()
    with Library.open(path) as lib:
        assert lib.weight_ids() == [1]


def test_recovery_keeps_the_search_time_a_killed_run_journaled(tmp_path: Path) -> None:
    """The task lines' search time reaches the recovered library (a resume counts search.time_limit on from it)."""
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB)
    writer.set_session("earlier run", 5.0)
    writer.close()
    writer = LibraryWriter.reopen(path)
    for i, seconds in enumerate([6.0, 7.5]):
        writer.task_started({"id": i, "genome": record(i)["genome"], "hash": f"h{i}", "parents": [],
                             "operator": "random", "seed": i, "submitted_at": 1.0, "next_id": i + 1,
                             "rng_state": "{}", "search_seconds": seconds})  # fmt: skip
    writer.append(record(0))
    writer.commit()
    with Library.open(path) as lib:  # live: the journal's newest time
        assert lib.session()["search_seconds"] == 7.5 and not lib.session()["closed"]
    writer.commit()  # killed: the writer is dropped unclosed (its journal's descriptor leaks for the test's life)
    del writer
    gc.collect()
    recover(path)
    with Library.open(path) as lib:
        session = lib.session()
        _, _, pending = lib.resume_state()
    assert session["search_seconds"] == 7.5 and session["stop_reason"].startswith("killed")
    assert [task["id"] for task in pending] == [1] and "search_seconds" not in pending[0]


def test_creation_removes_what_a_writer_killed_while_creating_left(tmp_path: Path) -> None:
    """A dead process's half-created temporary file goes; a live one's, or another host's, stays."""
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    stale = tmp_path / f".lib.h5.{host}.{gone.pid}.tmp"
    live = tmp_path / f".lib.h5.{host}.1.tmp"  # pid 1 is alive
    other = tmp_path / f".lib.h5.elsewhere.{gone.pid}.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"half an HDF5 file")
    LibraryWriter(tmp_path / "lib.h5", job_text=JOB).close()
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["lib.h5", live.name, other.name])


def test_live_library_shows_the_models_its_writer_keeps(tmp_path: Path) -> None:
    """While a search runs, readers (export, show) see the kept models from their own files."""
    path = tmp_path / "lib.h5"
    writer = LibraryWriter(path, job_text=JOB, keep_weights=2, flush_every=1000)
    for i, accuracy in enumerate([0.5, 0.9, 0.7]):
        writer.append({**record(i), "accuracy": accuracy})
        writer.offer_weights(i, accuracy, {"w": np.full(3, float(i))})
    writer.commit()
    with Library.open(path) as lib:
        assert lib.live and lib.weight_ids() == [1, 2]
        got = lib.weights(2)
        assert got is not None and got["w"].tolist() == [2.0, 2.0, 2.0] and lib.weights(0) is None
    writer.close()
    with Library.open(path) as lib:
        assert not lib.live and lib.weight_ids() == [1, 2]
