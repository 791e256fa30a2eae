"""The baseline side of ``menndl bench scheduler``: the same sleep tasks through ``mpi4py.futures``.

Static launch, as menndl's side:  mpiexec -n K python -m mpi4py.futures -m menndl.bench.scheduler_futures ...
Rank 0 warms the pool up (every worker runs one empty task), then submits the
tasks at once and waits.  Each task reports its process id and monotonic start
and end (one clock for every process on one node), so utilization is computed
by the same rule as menndl's: per worker, time in tasks over time in tasks
plus the gaps before each task.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict


def sleep_task(seconds: float) -> tuple[int, float, float]:
    """Sleep; return (pid, start, end)."""
    start = time.monotonic()
    time.sleep(seconds)
    return os.getpid(), start, time.monotonic()


def utilization(spans: list[tuple[int, float, float]], submitted: float) -> float:
    """Per worker: busy / (busy + waits before each task, from ``submitted``), summed over workers."""
    by_worker: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for pid, start, end in spans:
        by_worker[pid].append((start, end))
    busy = idle = 0.0
    for runs in by_worker.values():
        previous = submitted
        for start, end in sorted(runs):
            idle += max(0.0, start - previous)
            busy += end - start
            previous = end
    return busy / (busy + idle) if busy + idle > 0 else float("nan")


def main() -> None:
    """Run the tasks through MPIPoolExecutor and print one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--task-seconds", type=float, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    args = parser.parse_args()
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    from menndl.bench.scheduler_futures import sleep_task as task  # by module name: this file runs as __main__

    workers = MPI.COMM_WORLD.Get_size() - 1
    with MPIPoolExecutor() as executor:
        list(executor.map(task, [0.0] * (2 * workers)))  # every worker up before timing
        cpu, submitted = time.process_time(), time.monotonic()
        futures = [executor.submit(task, args.task_seconds) for _ in range(args.tasks)]
        spans = [future.result() for future in futures]
        elapsed, cpu = time.monotonic() - submitted, time.process_time() - cpu
    print(
        json.dumps(
            {
                "workers": workers,
                "evaluations": len(spans),
                "utilization": utilization(spans, submitted),
                "master_seconds_per_result": cpu / len(spans),
                "results_per_second": len(spans) / elapsed,
                "time_to_budget": elapsed,
            }
        )
    )


if __name__ == "__main__":
    main()
