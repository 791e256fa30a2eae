"""``menndl bench library``: library append rate and ``top`` time over 1,000,000 records.

* records appended per second through :class:`LibraryWriter` with the default ``[library]``
  policy (journal line per record, HDF5 columns in batches of 256 or every second), side by side
  with the old policy (every record written and flushed to HDF5 at once) on the same records;
* the seconds ``menndl library LIB top`` takes (open, rank, fetch the top rows) over a real
  1,000,000-row library built with the fast batch path.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

HELP = "library append rate (records/s) and `top` time over 1,000,000 records"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl bench library``."""
    parser.add_argument("--records", type=int, default=50_000, help="records to append (default 50,000)")
    parser.add_argument("--top-records", type=int, default=1_000_000, help="rows of the library that `top` reads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _records(n: int) -> list[dict[str, Any]]:
    """Realistic records: real random genomes of the digits search space."""
    from menndl.genome import InputSpec, SearchSpace, random_genome

    rng = random.Random(0)
    space, spec = SearchSpace(), InputSpec((1, 8, 8), 10)
    genomes = [random_genome(rng, space, spec) for _ in range(200)]
    out = []
    for i in range(n):
        g = genomes[i % len(genomes)]
        out.append(
            {
                "id": i,
                "genome": g.to_json(),
                "hash": g.hash,
                "parents": [max(0, i - 3), max(0, i - 7)],
                "operator": "crossover",
                "status": "ok",
                "accuracy": rng.random(),
                "loss": rng.random(),
                "params": rng.randrange(1000, 10**6),
                "flops": rng.randrange(10**4, 10**8),
                "train_seconds": rng.uniform(1, 100),
                "epochs": 10,
                "worker_rank": 1 + i % 64,
                "host": f"node{i % 16:03d}",
                "device": "cuda:0",
                "seed": rng.randrange(2**31),
                "submitted_at": 1.7e9 + i,
                "finished_at": 1.7e9 + i + 30,
            }
        )
    return out


def _append_rate(folder: Path, records: list[dict[str, Any]], **policy: Any) -> float:
    from menndl.library import LibraryWriter

    path = folder / f"append-{len(list(folder.iterdir()))}.h5"
    start = time.perf_counter()
    with LibraryWriter(path, job_text="", **policy) as writer:
        for record in records:
            writer.append(record)
    return len(records) / (time.perf_counter() - start)


def _build_big(path: Path, rows: int) -> None:
    import numpy as np

    from menndl.library import LibraryWriter

    sample = _records(1000)
    rng = np.random.default_rng(0)
    attrs: dict[str, str | int | float] = {"input_shape": "[1, 8, 8]", "num_classes": 10}
    with LibraryWriter(path, job_text="", attrs=attrs, journal=False) as writer:
        step = 100_000
        for first in range(0, rows, step):
            n = min(step, rows - first)
            pick = np.arange(first, first + n) % len(sample)
            columns: dict[str, Any] = {
                name: [sample[k][name] for k in pick] for name in ("genome", "hash", "operator", "status", "host")
            }
            columns["parents"] = ["[1, 2]"] * n
            columns["id"] = np.arange(first, first + n)
            columns["accuracy"] = rng.random(n)
            columns["params"] = rng.integers(1000, 10**6, n)
            columns["flops"] = rng.integers(10**4, 10**8, n)
            columns["train_seconds"] = rng.uniform(1, 100, n)
            writer.write_columns(columns)


def _top_seconds(path: Path) -> float:
    """Seconds of ``menndl library PATH top --where 'params<5e5' --limit 10``, run in this process."""
    import contextlib
    import io

    from menndl.cli import main as menndl_main

    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        status = menndl_main(["library", str(path), "top", "--where", "params<5e5", "--limit", "10"])
    elapsed = time.perf_counter() - start
    assert status == 0 and len(out.getvalue().splitlines()) == 11, out.getvalue()
    return elapsed


def main(args: argparse.Namespace) -> int:
    """Measure and print."""
    from menndl.errors import UserError
    from menndl.job import LibraryConfig

    if args.records < 100 or args.top_records < 10:
        raise UserError("--records: expected >= 100; --top-records: expected >= 10")
    policy = LibraryConfig()
    records = _records(args.records)
    baseline_n = min(len(records), 1000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rate = _append_rate(folder, records, flush_every=policy.flush_records, flush_seconds=policy.flush_seconds)
        baseline = _append_rate(folder, records[:baseline_n], flush_every=1, journal=False)
        big = folder / "big.h5"
        start = time.perf_counter()
        _build_big(big, args.top_records)
        build_seconds = time.perf_counter() - start
        top = min(_top_seconds(big) for _ in range(2))
    result = {
        "records": args.records,
        "records_per_second": round(rate),
        "baseline_flush_every_record_per_second": round(baseline),
        "speedup": round(rate / baseline, 1),
        "top_records": args.top_records,
        "top_seconds": round(top, 3),
        "bulk_rows_per_second": round(args.top_records / build_seconds),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"append: {result['records_per_second']:,} records/s with the journal and batched HDF5 writes "
            f"(target >= 10,000), {result['baseline_flush_every_record_per_second']:,}/s flushing every record "
            f"({result['speedup']}x)"
        )
        print(
            f"top over {args.top_records:,} records: {result['top_seconds']:.3f} s (target < 1 s); "
            f"bulk write {result['bulk_rows_per_second']:,} rows/s"
        )
    return 0
