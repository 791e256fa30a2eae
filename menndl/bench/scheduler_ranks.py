"""One side of ``menndl bench scheduler``, run under ``mpiexec``: menndl's own master and workers on sleep tasks.

Every rank first waits (without spinning) until all ranks have started, as the
``mpi4py.futures`` side warms its pool up.  Then rank 0 runs the real `Search`
over the real `MPIMasterTransport` with the real
library writer; every other rank runs the real worker loop
(`menndl.worker.loop.run_worker`, as ``menndl run`` does) with the sleep
evaluator in place of training.  Rank 0 prints one JSON object.

    mpiexec -n K python -m menndl.bench.scheduler_ranks --task-seconds S --tasks N
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

SPEC_SHAPE = (1, 8, 8)


def main() -> None:
    """Serve as a worker rank, or run the master and print its figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--task-seconds", type=float, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--no-library", action="store_true")
    parser.add_argument("--flush-every", type=int, default=1024)
    args = parser.parse_args()

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() != 0:
        from menndl.transport.mpi import MPIWorkerChannel
        from menndl.worker import sleep  # noqa: F401  (imported before the clock starts, like the pool's warm-up)
        from menndl.worker.loop import ignore_stop_signals, run_worker

        ignore_stop_signals()
        wait_for_every_rank(comm)
        run_worker(MPIWorkerChannel(comm))
        return
    import menndl.master  # noqa: F401

    wait_for_every_rank(comm)
    print(json.dumps(run_master(comm, args)))


def wait_for_every_rank(comm: Any) -> None:
    """Start timing once every rank has started (as the mpi4py.futures side warms its pool up).

    A non-blocking barrier polled with sleeps: many Python processes importing on
    a few cores take seconds, and a blocking barrier would spin through them.
    """
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.01)


def run_master(comm: object, args: argparse.Namespace) -> dict[str, object]:
    """The real master on rank 0; returns the figures of the run."""
    from menndl.bench.figures import search_figures
    from menndl.genome import InputSpec
    from menndl.job import parse_job
    from menndl.library import LibraryWriter
    from menndl.library.null_writer import NullWriter
    from menndl.master import Progress, Search
    from menndl.transport.mpi import MPIMasterTransport

    prefetch = args.prefetch
    text = (
        f'name = "bench"\n[search]\npopulation = {args.population}\nevaluations = {args.tasks}\n'
        f"prefetch = {prefetch}\n[training]\nmax_seconds = {max(1.0, 10 * args.task_seconds)}\n"
    )
    job = parse_job(text, path="bench.toml")
    spec = InputSpec(shape=SPEC_SHAPE, num_classes=10)
    sleep = {"seconds": args.task_seconds, "input_shape": list(SPEC_SHAPE), "light": True}
    setup = {"evaluator": "sleep", "sleep": sleep}
    transport = MPIMasterTransport(comm)
    workers = comm.Get_size() - 1  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.h5"
        writer = (
            NullWriter()
            if args.no_library
            else LibraryWriter(
                path, job_text=text, flush_every=args.flush_every, flush_seconds=job.library.flush_seconds
            )
        )
        progress = Progress(open(os.devnull, "w"), tty=False)
        cpu = time.process_time()
        result = Search(job, spec, "bench", transport, writer, progress, worker_setup=setup).run()  # type: ignore[arg-type]
        cpu = time.process_time() - cpu
    figures = search_figures(result, workers)
    window = result.elapsed - (0.0 if math.isnan(result.all_ready_after) else result.all_ready_after)
    figures.update(
        {
            "master_seconds_per_result": cpu / max(result.evaluations, 1),  # CPU of rank 0, polling included
            "results_per_second": result.evaluations / window if window > 0 else math.nan,
            "startup_seconds": result.all_ready_after,
            "prefetch": args.prefetch,
            "library": "none" if args.no_library else _library_policy(args.flush_every, job.library.flush_seconds),
        }
    )
    return figures


def _library_policy(flush_every: int, flush_seconds: float) -> str:
    """How the benchmark's library was written, for the report."""
    return f"hdf5 + journal (fsync every {flush_seconds:g} s), hdf5 batches of {flush_every} records or a minute"


if __name__ == "__main__":
    main()
