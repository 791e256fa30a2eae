"""``menndl simulate JOB``: predict, before booking a machine, whether one master keeps N workers busy."""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from menndl.errors import UserError
from menndl.job import FOLD_SETTINGS

HELP = "predict utilization and master cost at N workers (the real master on a virtual clock)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl simulate``."""
    parser.description = (
        "Run the real master (search loop, NSGA-II, library writer) against N virtual workers whose "
        "evaluation times come from a model, on a virtual clock; print the predicted worker utilization, "
        "the master's seconds per result, results per second and the time to the budget."
    )
    parser.add_argument("job", help="job file (TOML)")
    parser.add_argument("--workers", type=int, required=True, metavar="N", help="virtual workers")
    parser.add_argument(
        "--eval-time",
        required=True,
        metavar="MODEL",
        help="fixed:SECONDS, lognormal:MEAN[:SIGMA] (MEAN is the mean; SIGMA 0.5), or library:PATH (replay)",
    )
    parser.add_argument("--evaluations", type=int, metavar="N", help="evaluation budget (overrides the job)")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS", help="virtual time budget (overrides the job)")
    parser.add_argument("--population", type=int, metavar="P", help="population size (overrides the job)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed (overrides the job)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="one-way message latency")
    parser.add_argument("--library", metavar="PATH", help="keep the simulated library here (default: a temp file)")
    parser.add_argument("--no-library", action="store_true", help="no HDF5 writes: the master's cost without them")
    parser.add_argument(
        "--flush-every", type=int, default=None, metavar="N",
        help="library records per HDF5 batch (default: the job's flush_records); the journal takes every record",
    )  # fmt: skip
    parser.add_argument(
        "--fold", choices=FOLD_SETTINGS, default=None,
        help="who writes the library's HDF5 batches (default: the job's library.fold)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    """Run the simulation and print its figures."""
    from menndl.bench.figures import print_figures, search_figures
    from menndl.commands.common import inspect_data
    from menndl.job import load_job
    from menndl.library import LibraryWriter
    from menndl.library.folding_writer import FoldingWriter, use_fold_process
    from menndl.library.null_writer import NullWriter
    from menndl.master import Progress, Search
    from menndl.transport.simulated import SimulatedTransport
    from menndl.worker.simulated import SimulatedEvaluator, parse_eval_time

    if args.workers < 1:
        raise UserError(f"--workers: expected an integer >= 1, got {args.workers}")
    if args.flush_every is not None and args.flush_every < 1:
        raise UserError(f"--flush-every: expected an integer >= 1, got {args.flush_every}")
    if args.latency < 0 or not math.isfinite(args.latency):
        raise UserError(f"--latency: expected seconds >= 0, got {args.latency}")
    model = parse_eval_time(args.eval_time)
    job = load_job(args.job).with_overrides(evaluations=args.evaluations, time_limit=args.time_limit, seed=args.seed)
    if args.population is not None:
        if args.population < 2:
            raise UserError(f"--population: expected an integer >= 2, got {args.population}")
        try:
            job = dataclasses.replace(job, search=dataclasses.replace(job.search, population=args.population))
        except ValueError as exc:  # the job's other settings refuse this population (spea2 above its limit)
            raise UserError(f"--population {args.population}: {exc}") from None
    report = inspect_data(job, quiet=True)
    job = job.for_task(report.task)
    spec, fingerprint = report.spec, report.fingerprint
    flush_every = job.library.flush_records if args.flush_every is None else args.flush_every
    evaluator = SimulatedEvaluator(model, spec, seed=job.seed, max_seconds=job.training.max_seconds)
    transport = SimulatedTransport(args.workers, evaluator, latency=args.latency)
    epoch = time.time()
    with tempfile.TemporaryDirectory() as folder:
        writer: Any
        fold = False
        if args.no_library:
            writer = NullWriter()
        else:
            path = Path(args.library) if args.library else Path(folder) / "simulated.h5"
            fold = use_fold_process(args.fold or job.library.fold, args.workers)
            writer = (FoldingWriter if fold else LibraryWriter)(
                path, job_text=job.text, attrs={"simulated": args.eval_time}, flush_every=flush_every,
                flush_seconds=job.library.flush_seconds,
            )  # fmt: skip
        search = Search(
            job, spec, fingerprint, transport, writer, Progress(sys.stderr),
            clock=transport.clock, wallclock=lambda: epoch + transport.clock(),
        )  # fmt: skip
        cpu, wall, helpers = time.process_time(), time.perf_counter(), _children_cpu()
        result = search.run()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        helpers = _children_cpu() - helpers  # the fold process, if any (ended and reaped by the writer's close)
    figures = search_figures(result, args.workers)
    drained = max(transport.last_result_at, 1e-9)
    figures.update(
        {
            "utilization_including_drain": transport.busy_seconds / (args.workers * drained),
            "population": job.search.population,
            "eval_time": args.eval_time,
            "library": "none" if args.no_library else _library_policy(flush_every, job.library.flush_seconds, fold),
            "simulation_wall_seconds": wall,
            "simulation_cpu_seconds": cpu,
            "fold_process_cpu_seconds": helpers,
        }
    )
    print_figures(figures, args.json)
    return 0


def _library_policy(flush_every: int, flush_seconds: float, fold: bool) -> str:
    """How the benchmark's library was written, for the report."""
    who = "written by a fold process" if fold else "written by the master"
    return (f"hdf5 + journal (fsync every {flush_seconds:g} s), hdf5 batches of {flush_every} records or a minute, "
            f"{who}")  # fmt: skip


def _children_cpu() -> float:
    """CPU seconds of this process's ended children (the fold process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
