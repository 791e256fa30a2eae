"""How fast ``menndl report`` writes a library's report and how fast headless Chromium renders it, offline.

    python benchmarks/report_render.py [--library LIB ...] [--rows 1000000] [--runs 3]

For each library (the ones given, and a generated one of ``--rows`` rows, written to a temporary folder and
deleted), it prints: the seconds ``menndl report`` took, the file's size, and the milliseconds from the start
of navigation to the page's load event, by which time every figure has been drawn (the report's own load
handler records ``performance.now()``), in Debian's headless Chromium from ``file://`` with no network.
Median and range over ``--runs``.  The generated library has real genomes of the digits search space, a mix
of operators and statuses, and the three default objectives (accuracy, params, train_seconds), so its front
is drawn as every pair of objectives (WebGL).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "commands"))
from browser import can_open_offline, open_offline  # noqa: E402  (the tests' browser helper: one copy)


def generated_library(path: Path, rows: int, seed: int = 0) -> None:
    """A library of ``rows`` rows that looks like a long search's (columns written in batches)."""
    import random

    from menndl.genome import InputSpec, SearchSpace, random_genome
    from menndl.library import LibraryWriter

    space, spec = SearchSpace(), InputSpec((1, 8, 8), 10)
    pool = [random_genome(random.Random(seed + k), space, spec) for k in range(200)]
    texts, hashes = [g.to_json() for g in pool], [g.hash for g in pool]
    rng = np.random.default_rng(seed)
    attrs = {"input_shape": "[1, 8, 8]", "num_classes": 10, "objectives": "accuracy,params,train_seconds",
             "job_name": "generated"}  # fmt: skip
    step = 100_000
    with LibraryWriter(path, job_text="name = 'generated'\n", attrs=attrs, journal=False) as writer:
        for first in range(0, rows, step):
            n = min(step, rows - first)
            ids = np.arange(first, first + n)
            pick = ids % len(pool)
            failed = rng.random(n) < 0.03
            parents = rng.integers(0, np.maximum(ids, 1)[:, None], size=(n, 2))
            submitted = 1.8e9 + ids * 0.05 + rng.uniform(0, 1, n)
            seconds = rng.uniform(10, 120, n)
            writer.write_columns({
                "id": ids, "genome": [texts[k] for k in pick], "hash": [hashes[k] for k in pick],
                "parents": [json.dumps([int(a), int(b)]) if i > 10 else "[]" for i, (a, b) in zip(ids, parents)],
                "operator": rng.choice(["mutate", "crossover", "random"], n, p=[0.6, 0.35, 0.05]).tolist(),
                "status": np.where(failed, "failed", "ok").tolist(),
                "error": np.where(failed, "Traceback ...\nRuntimeError: CUDA out of memory", "").tolist(),
                "accuracy": np.where(failed, np.nan, 1 - rng.gamma(2, 0.05, n)),
                "params": rng.integers(1_000, 2_000_000, n), "flops": rng.integers(10**4, 10**8, n),
                "train_seconds": seconds, "worker_rank": 1 + ids % 4096, "host": [f"node{k % 512:04d}" for k in ids],
                "submitted_at": submitted, "finished_at": submitted + seconds,
            })  # fmt: skip


def measure(library: Path, folder: Path, runs: int) -> dict[str, object]:
    """Report seconds, size and render milliseconds of ``library`` (``runs`` times each)."""
    out = folder / "report.html"
    write, render = [], []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "menndl", "report", str(library), "-o", str(out)],
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        write.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        page = open_offline(out, timeout=300)
        found = re.search(r'data-rendered-ms="(\d+)"', page.dom)
        if not found or page.console or page.requests:
            raise SystemExit(f"{library}: not rendered cleanly: {page.console} {page.requests}")
        render.append(int(found.group(1)))
    return {"library": str(library), "report_seconds": write, "size_mib": out.stat().st_size / 2**20,
            "render_ms": render}  # fmt: skip


def main() -> None:
    """Measure and print one line per library."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", action="append", default=[], type=Path, help="a library to report on")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated library (0: none)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not can_open_offline():
        raise SystemExit("needs Debian's chromium and unshare --net (root)")
    with tempfile.TemporaryDirectory() as folder:
        libraries = list(args.library)
        if args.rows:
            generated = Path(folder) / f"generated-{args.rows}.h5"
            start = time.perf_counter()
            generated_library(generated, args.rows)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.1f}s", flush=True)
            libraries.append(generated)
        for library in libraries:
            row = measure(library, Path(folder), args.runs)
            seconds, ms = row["report_seconds"], row["render_ms"]
            print(f"{library.name}: menndl report {statistics.median(seconds):.2f}s "  # type: ignore[arg-type]
                  f"({min(seconds):.2f}-{max(seconds):.2f}), {row['size_mib']:.1f} MiB, rendered in "  # type: ignore
                  f"{statistics.median(ms):.0f} ms ({min(ms)}-{max(ms)}) [median (range) of {args.runs}]",  # type: ignore
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
