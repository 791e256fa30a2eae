"""Fault test of the library: kill -9 a real local search at random instants, resume, check.

Each round starts ``menndl run JOB --library LIB`` (with ``--resume`` once the library exists) on
the sklearn digits, kills the whole process group with SIGKILL at a random instant, then opens the
library (which must work every time) and checks that every evaluation seen before is still there
with the same genome hash.  A last ``--resume`` completes the budget; then the library must hold
exactly ``evaluations`` rows with ids 0..N-1 and no genome trained twice (distinct hashes).

    python benchmarks/library_faults.py [--kills 20] [--evaluations 150] [--json]
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

JOB = """
name = "faults"
seed = 3
[data]
source = "digits"
[search]
population = 6
evaluations = {evaluations}
[space]
max_features = 3
max_head = 1
filters = [4, 16]
dense_units = [8, 32]
[training]
epochs = {epochs}
max_seconds = 5
[library]
flush_records = 4
flush_seconds = 0.5
"""


def _menndl(folder: Path, library: Path, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "menndl", "run", str(folder / "job.toml"), "--library", str(library)]
    return [*command, "--workers", "2", *(["--resume"] if resume else [])]


def _rows(library: Path) -> dict[int, str]:
    from menndl.library import Library

    with Library.open(library) as lib:
        return dict(zip(lib.column("id").tolist(), lib.column("hash").tolist()))


def _journal_rows(library: Path) -> int:
    journal = library.with_name(library.name + ".journal")
    try:
        return journal.read_bytes().count(b'{"type":"row"')
    except OSError:
        return 0


def _wait_for_rows(proc: subprocess.Popen, library: Path, rows: int, timeout: float) -> None:
    """Sleep until this run has recorded ``rows`` evaluations (or ended, or ``timeout`` passed).

    A resumed run first replays and removes the killed run's journal, then starts its own: wait for
    the old one to go before counting.
    """
    journal = library.with_name(library.name + ".journal")
    deadline = time.monotonic() + timeout
    old = _journal_rows(library) if journal.exists() else 0
    while old and time.monotonic() < deadline and proc.poll() is None and _journal_rows(library) >= old:
        time.sleep(0.02)
    while time.monotonic() < deadline and proc.poll() is None and _journal_rows(library) < rows:
        time.sleep(0.02)


def run_faults(
    kills: int, evaluations: int, seed: int = 0, max_delay: float = 0.3, epochs: int = 4
) -> dict[str, object]:
    """Kill, reopen and resume ``kills`` times, then finish; returns the figures (raises on a failed check).

    A quarter of the kills land at a random instant of start-up (before any result); the others
    at a random instant up to ``max_delay`` s after the run recorded 1 to 4 new evaluations, so
    they hit a search with evaluations in flight and batches being written.
    """
    from menndl.library import Library

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "job.toml").write_text(JOB.format(evaluations=evaluations, epochs=epochs))
        library = folder / "lib.h5"
        seen: dict[int, str] = {}
        rows_after_kill, in_flight_after_kill = [], []
        done_kills = 0
        start = time.monotonic()
        while done_kills < kills:
            proc = subprocess.Popen(
                _menndl(folder, library, library.exists()),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.2, 4.0))
            else:
                _wait_for_rows(proc, library, rng.randint(1, 4), timeout=120)
                time.sleep(rng.uniform(0.0, max_delay))
            finished = proc.poll() is not None
            if not finished:
                os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = proc.communicate(timeout=60)
            if finished:
                if proc.returncode != 0:
                    raise AssertionError(f"menndl run failed: {stderr.decode()[-2000:]}")
                break  # the budget completed before all the kills: report how many there were
            done_kills += 1
            if not library.exists():
                continue  # killed before the library was created: the next round starts afresh
            rows = _rows(library)  # must open, every time
            lost = {i: h for i, h in seen.items() if rows.get(i) != h}
            if lost:
                raise AssertionError(f"evaluations lost or changed after a kill: {sorted(lost)}")
            seen = rows
            with Library.open(library) as lib:
                in_flight_after_kill.append(len(lib.resume_state()[2]))
            rows_after_kill.append(len(rows))
        done = subprocess.run(_menndl(folder, library, library.exists()), capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise AssertionError(f"final resume failed: {done.stderr[-2000:]}")
        rows = _rows(library)
        with Library.open(library) as lib:
            live = lib.live
        if sorted(rows) != list(range(evaluations)):
            raise AssertionError(f"expected ids 0..{evaluations - 1}, got {sorted(rows)}")
        if len(set(rows.values())) != len(rows):
            raise AssertionError("a genome was trained twice (repeated hash)")
        if any(rows.get(i) != h for i, h in seen.items()):
            raise AssertionError("an evaluation seen before the end was lost or changed")
        return {
            "kills": done_kills,
            "evaluations": evaluations,
            "rows_after_each_kill": rows_after_kill,
            "in_flight_after_each_kill": in_flight_after_kill,
            "final_rows": len(rows),
            "distinct_hashes": len(set(rows.values())),
            "journal_left": live,
            "seconds": round(time.monotonic() - start, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--evaluations", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per candidate")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run_faults(args.kills, args.evaluations, args.seed, epochs=args.epochs)
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
