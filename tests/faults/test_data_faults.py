"""Faults of the data, end to end through ``menndl``: real files, real worker processes, real libraries.

A data file that disappears mid-search stops it cleanly (exit 1, one line, every result kept) and
``--resume`` finishes it once the file is back; a search in which no candidate trained does not exit 0;
``menndl check`` names a NaN in the last chunk, a label out of range and a corrupted chunk on one line each;
a shared copy left by killed workers is removed at the next start, and a ``node`` search leaves none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from harness import env, finish, sleep_command, start, write_job

from menndl.data import load_dataset
from menndl.library import Library

pytestmark = pytest.mark.timeout(300)

JOB = """
name = "data-faults"
seed = 3
[data]
source = "{source}"
placement = "{placement}"
num_classes = 10
[search]
population = 4
evaluations = {evaluations}
stop_grace = 30
[space]
max_features = 2
max_head = 1
filters = [4, 8]
batch_sizes = [32]
[training]
epochs = 1
max_seconds = 2
device = "cpu"
precision = "fp32"
"""


def _digits_file(path: Path, *, chunk_rows: int = 16, compression: str | None = None) -> Path:
    """The digits as an HDF5 file (1797 samples, chunked)."""
    with load_dataset("digits") as data:
        x = data.raw.x.read(0, len(data.raw.x))
        y = data.raw.y
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(chunk_rows, *x.shape[1:]), compression=compression)
        f.create_dataset("y", data=y)
    return path


def _job(folder: Path, source: Path | str, *, evaluations: int, placement: str = "stream") -> Path:
    path = folder / "job.toml"
    path.write_text(JOB.format(source=source, placement=placement, evaluations=evaluations))
    return path


def _menndl(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "menndl", *args], env=env(), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _rows(journal: Path) -> int:
    try:
        return sum(1 for line in journal.read_text().splitlines() if line.replace(" ", "").startswith('{"type":"row"'))
    except OSError:
        return 0


def test_a_data_file_gone_mid_search_stops_it_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    data = _digits_file(tmp_path / "digits.h5")
    job, library = _job(tmp_path, data, evaluations=16), tmp_path / "lib.h5"
    proc = start([sys.executable, "-m", "menndl", "run", str(job), "--library", str(library), "--workers", "2"])
    journal = library.with_name(library.name + ".journal")
    deadline = time.monotonic() + 120
    while _rows(journal) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the search ended before the file could be taken away"
    away = data.with_name("moved-away.h5")
    os.rename(data, away)  # the file system lost it (purged, unmounted, moved by someone)
    status, _, stderr = finish(proc, timeout=120)
    errors = [line for line in stderr.splitlines() if line.startswith("menndl: error:")]
    assert status == 1, stderr[-3000:]
    assert len(errors) == 1 and "digits.h5" in errors[0] and "is gone" in errors[0], errors
    assert "--resume" in errors[0] and "Traceback" not in stderr
    with Library.open(library) as lib:
        kept = list(lib.records())
    assert 3 <= len(kept) < 16 and all(r["status"] == "ok" for r in kept)  # no row blames a candidate

    os.rename(away, data)
    done = _menndl("run", str(job), "--library", str(library), "--workers", "2", "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    with Library.open(library) as lib:
        rows = list(lib.records())
    assert len(rows) == 16 and len({r["id"] for r in rows}) == 16
    assert {r["id"]: r["accuracy"] for r in kept}.items() <= {r["id"]: r["accuracy"] for r in rows}.items()
    assert len({r["genome"] for r in rows}) == 16  # nothing trained twice


def test_a_search_in_which_no_candidate_trained_exits_1(tmp_path: Path) -> None:
    """Every task kills its worker (an OOM killer at work): replaced, retried once, recorded lost; exit 1."""
    job, library = write_job(tmp_path, evaluations=3), tmp_path / "lib.h5"
    inject = tuple(item for task in range(3) for item in ("--crash", f"{task}:SIGKILL"))
    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "2", seconds=0.05, inject=inject)),
                               timeout=120)  # fmt: skip
    assert status == 1, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("menndl: error:")]
    said = ("none of the 3 evaluations trained", "every worker was lost")
    assert len(errors) == 1 and any(reason in errors[0] for reason in said)
    with Library.open(library) as lib:
        assert sorted(r["status"] for r in lib.records()) == ["lost"] * 3  # kept, with their reasons


def test_check_names_a_nan_in_the_last_chunk_a_label_out_of_range_and_a_corrupted_chunk(tmp_path: Path) -> None:
    data = _digits_file(tmp_path / "nan.h5")
    with h5py.File(data, "a") as f:
        f["x"][1796, 0, 3, 3] = np.nan  # the last chunk
    done = _menndl("check", str(_job(tmp_path, data, evaluations=4)))
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"menndl: error: {data}: dataset 'x', sample 1796: NaN or infinite value")

    labels = _digits_file(tmp_path / "labels.h5")
    with h5py.File(labels, "a") as f:
        f["y"][1000] = 12
    done = _menndl("check", str(_job(tmp_path, labels, evaluations=4)))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "dataset 'y', sample 1000: label 12 is outside 0..9" in done.stderr

    corrupt = _digits_file(tmp_path / "corrupt.h5", compression="gzip")
    with h5py.File(corrupt, "r") as f:
        info = f["x"].id.get_chunk_info(50)  # samples 800..815
    with open(corrupt, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    done = _menndl("check", str(_job(tmp_path, corrupt, evaluations=4)))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "corrupt.h5: dataset 'x', samples" in done.stderr and "cannot be read" in done.stderr
    first, last = (int(v) for v in done.stderr.split("samples ")[1].split(":")[0].split(".."))
    assert first <= 800 and last >= 815


def test_a_node_search_leaves_no_shared_copy_and_cleans_one_left_by_killed_workers(tmp_path: Path) -> None:
    uid = os.getuid()
    stale = Path(f"/dev/shm/menndl-feedfacefeedface-{uid}")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, numpy as np\n"
         "from menndl.data.shared_copy import Part, open_shared_copy\n"
         "part = Part('x', (4, 4), np.dtype('float32'), lambda array: array.fill(1.0))\n"
         "copy = open_shared_copy('feedfacefeedface', [part])\n"
         "print('ready', flush=True)\n"
         "import time; time.sleep(600)\n"],
        env=env(), stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert stale.exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # a worker killed: its shared copy stays behind
        holder.wait()
    assert stale.exists()
    job, library = _job(tmp_path, "digits", evaluations=4, placement="node"), tmp_path / "lib.h5"
    done = _menndl("run", str(job), "--library", str(library), "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"removed shared data copy {stale}" in done.stderr
    assert not stale.exists()
    assert [p for p in Path("/dev/shm").glob(f"menndl-*-{uid}*")] == []  # the search's own copy is gone too
    with Library.open(library) as lib:
        assert lib.attrs["data_placement"] == "node" and len(list(lib.records())) == 4
        assert json.loads(str(lib.attrs["data_stats"]))["mean"][0] == pytest.approx(0.3046, abs=1e-3)
