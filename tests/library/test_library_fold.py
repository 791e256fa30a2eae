"""The fold process (``library.fold = "process"``): same library as the in-process writer, crash-safe, optional."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from menndl.library.folding_writer import AUTO_WORKERS, FoldingWriter, use_fold_process
from menndl.library.journal import base_path, journal_path
from menndl.library.reader import Library
from menndl.library.recover import recover
from menndl.library.writer import LibraryWriter

REPO = Path(__file__).resolve().parents[2]
JOB = 'name = "j"\n'


def task(i: int) -> dict:
    return {"id": i, "genome": json.dumps({"features": [], "i": i}), "hash": f"h{i}", "parents": [i - 1] if i else [],
            "operator": "mutate" if i else "random", "seed": i, "submitted_at": 1.5 + i, "next_id": i + 1,
            "rng_state": json.dumps({"state": i})}  # fmt: skip


def record(i: int) -> dict:
    fields = ("id", "genome", "hash", "parents", "operator", "seed", "submitted_at")
    row = {k: task(i)[k] for k in fields}
    row["parents"] = json.dumps(row["parents"])
    ok = i % 7 != 3
    return {**row, "status": "ok" if ok else "failed", "error": "" if ok else "boom",
            "accuracy": i / 100 if ok else None, "params": 100 + i, "train_seconds": 0.25 * i, "host": "n1",
            "worker_rank": 1 + i % 3}  # fmt: skip


def drive(writer: LibraryWriter, results: int, in_flight: int) -> None:
    """What the master does: a task per slot, then for each result its row and the next task."""
    for i in range(in_flight):
        writer.task_started(task(i))
    for i in range(results):
        writer.append(record(i))
        writer.task_started(task(i + in_flight))
        writer.commit()
        if i % 40 == 0:
            writer.set_pareto([i, max(0, i - 1)])
        if i == 150:
            writer.offer_weights(i, 0.9, {"w": np.arange(4.0)})
        writer.tick()
    writer.set_session("evaluation budget reached", 12.5)


def contents(path: Path) -> dict:
    """Everything a library holds, as plain data (creation time aside)."""
    with h5py.File(path, "r") as f:
        columns = {name: f["evaluations"][name][:].tolist() for name in f["evaluations"]}
        state = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["state"].attrs.items()}
        return {
            "count": int(f["evaluations"].attrs["count"]),
            "columns": json.dumps(columns, default=str),
            "pareto": f["pareto"][:].tolist(),
            "state": json.dumps(state, default=str),
            "weights": {k: g["w"][:].tolist() for k, g in f["weights"].items()},
        }


def test_fold_process_writes_the_same_library_as_the_master(tmp_path: Path) -> None:
    inline = LibraryWriter(tmp_path / "inline.h5", job_text=JOB, flush_every=64, flush_seconds=0.0, keep_weights=1)
    folding = FoldingWriter(tmp_path / "fold.h5", job_text=JOB, flush_every=64, flush_seconds=0.0, keep_weights=1)
    assert folding.fold_process is not None and folding.fold_process.poll() is None  # the helper runs beside the master
    for writer in (inline, folding):
        drive(writer, results=300, in_flight=5)
        assert len(writer) == 300
        writer.close()
    assert not journal_path(tmp_path / "fold.h5").exists()
    a, b = contents(tmp_path / "inline.h5"), contents(tmp_path / "fold.h5")
    assert a == b and a["count"] == 300 and a["weights"] == {"150": [0.0, 1.0, 2.0, 3.0]}
    state = json.loads(a["state"])
    assert int(state["next_id"]) == 305 and len(json.loads(state["pending"])) == 5


def test_master_folds_itself_when_the_fold_process_dies(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    writer = FoldingWriter(path, job_text=JOB, flush_every=16, flush_seconds=0.0)
    drive(writer, results=50, in_flight=3)
    assert writer.fold_process is not None
    writer.fold_process.kill()  # the helper is gone (an OOM kill, a node policy): nothing may be lost
    writer.fold_process.wait()
    drive(writer, results=0, in_flight=0)
    for i in range(50, 80):
        writer.append(record(i))
    writer.close()
    assert not journal_path(path).exists() and not base_path(path).exists()
    with Library.open(path) as lib:
        assert lib.column("id").tolist() == list(range(80)) and not lib.live


def ignored_signals(pid: int) -> int:
    """The mask of signals a process ignores (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    return 0


def test_fold_process_ignores_the_signals_sent_to_the_whole_job(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    writer = FoldingWriter(path, job_text=JOB, flush_every=16, flush_seconds=0.0)
    assert writer.fold_process is not None
    wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    deadline = time.monotonic() + 30  # its first step is to ignore them; a signal before that ends a fresh process
    while time.monotonic() < deadline and ignored_signals(writer.fold_process.pid) & wanted != wanted:
        time.sleep(0.01)
    for sig in (signal.SIGINT, signal.SIGTERM):
        writer.fold_process.send_signal(sig)
    drive(writer, results=40, in_flight=2)
    time.sleep(0.3)
    assert writer.fold_process.poll() is None  # still folding: the master ends it at close
    writer.close()
    with Library.open(path) as lib:
        assert lib.column("id").tolist() == list(range(40))


def test_master_killed_the_fold_process_finishes_and_recovery_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    script = textwrap.dedent(
        """
        import json, os, signal, sys
        from menndl.library.folding_writer import FoldingWriter
        w = FoldingWriter(sys.argv[1], job_text="x", flush_every=25, flush_seconds=0.0)
        print(w.fold_process.pid, flush=True)
        for i in range(400):
            w.task_started({"id": i, "genome": json.dumps({"i": i}), "hash": f"h{i}", "parents": [], "operator": "r",
                            "seed": i, "submitted_at": 1.0, "next_id": i + 1})
            if i >= 2:
                w.append({"id": i - 2, "genome": json.dumps({"i": i - 2}), "hash": f"h{i - 2}", "status": "ok",
                          "accuracy": 0.5})
            w.commit()
            w.tick()
        os.kill(os.getpid(), signal.SIGKILL)  # the master dies: rows 0..397 were committed, 398 and 399 in flight
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", script, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    helper = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and os.path.exists(f"/proc/{helper}"):  # it folds what is complete, then ends
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{helper}") or open(f"/proc/{helper}/stat").read().split()[2] == "Z"
    with Library.open(path) as lib:  # a live library: read from the journal
        assert lib.live and lib.column("id").tolist() == list(range(398))
    report = recover(path)
    assert report.pending == 2
    with Library.open(path) as lib:
        assert lib.column("id").tolist() == list(range(398)) and not lib.live
    assert report.replayed_rows == 398  # rebuilt from the journal: the crashed checkpoint is never written into


def test_resume_with_a_fold_process(tmp_path: Path) -> None:
    path = tmp_path / "lib.h5"
    first = LibraryWriter(path, job_text=JOB, flush_every=8)
    drive(first, results=20, in_flight=2)
    first.close()
    again = FoldingWriter.reopen(path, flush_every=8, flush_seconds=0.0)
    assert len(again) == 20
    for i in range(20, 45):
        again.append(record(i))
        again.commit()
    again.close()
    with Library.open(path) as lib:
        assert lib.column("id").tolist() == list(range(45))


@pytest.mark.parametrize(
    ("setting", "workers", "expected"),
    [("inline", 100_000, False), ("process", 1, True), ("auto", AUTO_WORKERS - 1, False)],
)
def test_fold_setting(setting: str, workers: int, expected: bool) -> None:
    assert use_fold_process(setting, workers) is expected


def test_auto_folds_in_a_process_only_with_a_spare_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not use_fold_process("auto", 10 * AUTO_WORKERS)  # a helper on the master's only core takes the time back
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert use_fold_process("auto", AUTO_WORKERS)
