"""Crash-safety measurement behind the library's journal (docs/library-format.md, "Crash safety").

Kills a process that appends evaluation-like rows to an HDF5 file at random instants (SIGKILL) and
counts how often the file can no longer be opened or lost flushed rows, for
  * plain HDF5 (the columns resized and written per batch, then ``flush()``), and
  * HDF5 SWMR (``libver="latest"``, ``swmr_mode=True``; variable-length strings are not allowed under
    SWMR, so the string columns are fixed-size here, which the library cannot use),
and times both beside a JSON-lines journal (``write()`` per row).

    python benchmarks/library_crash.py [--kills 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

COLUMNS = 19
BATCH = 64

WRITER = r"""
import sys, h5py, numpy as np
path, mode, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
swmr = mode == "swmr"
f = h5py.File(path, "w", libver="latest" if swmr else "earliest")
s = h5py.string_dtype("utf-8") if not swmr else "S200"
def column(i):
    return f.create_dataset(f"c{i}", (0,), maxshape=(None,), chunks=(512,), dtype=("<f8" if i % 2 else s))
cols = [column(i) for i in range(19)]
texts = np.array(['{"genome": %d}' % k for k in range(batch)], dtype=object if not swmr else "S200")
f.attrs["count"] = 0
if swmr:
    f.swmr_mode = True
n = 0
while True:
    for i, c in enumerate(cols):
        c.resize((n + batch,))
        c[n:] = np.full(batch, 1.5) if i % 2 else texts
    n += batch
    if not swmr:
        f.attrs["count"] = n
    f.flush()
    print(n, flush=True)
"""


def _check(path: Path, swmr: bool, flushed: int) -> str:
    try:
        with h5py.File(path, "r", locking=False, swmr=swmr) as f:
            n = min(f[f"c{i}"].shape[0] for i in range(COLUMNS))
            for i in range(COLUMNS):
                f[f"c{i}"][:n]
            return "ok" if n >= flushed else "lost rows"
    except Exception as exc:  # noqa: BLE001 - any failure to read counts as corrupt
        return f"corrupt ({str(exc).splitlines()[0][:60]})"


def kill_test(mode: str, kills: int, folder: Path) -> dict[str, int]:
    """Kill the writer `kills` times at random instants; tally how the file reads afterwards."""
    outcomes: dict[str, int] = {}
    for k in range(kills):
        path = folder / f"{mode}{k}.h5"
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), mode, str(BATCH)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # the file exists and holds a first batch
        time.sleep(random.uniform(0.0, 0.5))
        os.kill(proc.pid, signal.SIGKILL)
        lines = proc.stdout.read().split()
        proc.wait()
        flushed = int(lines[-1]) if lines else BATCH
        outcome = _check(path, mode == "swmr", flushed).split(" (")[0]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        path.unlink()
    return outcomes


def journal_rate(folder: Path, rows: int = 20000) -> float:
    """Rows per second appended to a JSON-lines journal, one write() per row."""
    record = {"id": 0, "genome": json.dumps({"features": [{"filters": 8}] * 4}), "accuracy": 0.5, "status": "ok"}
    fd = os.open(folder / "j.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    start = time.perf_counter()
    for i in range(rows):
        record["id"] = i
        os.write(fd, (json.dumps(record) + "\n").encode())
    os.fsync(fd)
    os.close(fd)
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = {mode: kill_test(mode, args.kills, folder) for mode in ("plain", "swmr")}
        result["journal_rows_per_second"] = round(journal_rate(folder))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
