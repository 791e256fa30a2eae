"""The ``menndl`` command line.

Every user mistake ends as one line on stderr (``menndl: error: ...``) and
exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from menndl import __version__
from menndl.data import load_dataset
from menndl.errors import UserError
from menndl.genome import InputSpec
from menndl.job import Job, load_job
from menndl.launch import visible_gpus
from menndl.master.search import NO_WORKERS, SearchResult
from menndl.transport.base import MasterTransport
from menndl.worker.loop import usable_cores


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="menndl", description="MENNDL-style neural architecture search for HPC clusters."
    )
    parser.add_argument("--version", action="version", version=f"menndl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a search (local processes, or MPI ranks under mpiexec/srun)",
        description="Run a search. Without an MPI launcher: local mode, the master here and N worker "
        "processes. Under mpiexec/srun with K ranks: rank 0 is the master, ranks 1..K-1 are workers.",
    )
    run.add_argument("job", help="job file (TOML), e.g. jobs/digits.toml")
    run.add_argument("--library", metavar="PATH", help="HDF5 library to create (default: results/<job>-<time>.h5)")
    run.add_argument("--evaluations", type=int, metavar="N", help="evaluation budget (overrides the job)")
    run.add_argument("--time-limit", type=float, metavar="SECONDS", help="wall-time budget (overrides the job)")
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local mode: worker processes (default: one per visible GPU, else one per usable core)",
    )
    run.add_argument("--seed", type=int, metavar="S", help="random seed (overrides the job)")
    check = commands.add_parser(
        "check",
        help="validate a job and its dataset without running anything (before you queue a batch job)",
        description="Validate a job file and its dataset exactly as 'run' would, print what the search would "
        "do, and exit 0; or print the first problem on one line and exit 2.",
    )
    check.add_argument("job", help="job file (TOML)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``menndl`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "check":
            return command_check(args)
    except UserError as exc:
        print(f"menndl: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("menndl: interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover - argparse rejects unknown commands


def command_run(args: argparse.Namespace) -> int:
    """``menndl run``: validate everything, then run the master (or serve as a worker rank)."""
    from menndl.launch import detect_launch

    launch = detect_launch()
    if launch.is_mpi and launch.rank != 0:
        from menndl.transport.mpi import MPIWorkerChannel
        from menndl.worker.loop import ignore_stop_signals, run_worker

        ignore_stop_signals()
        run_worker(MPIWorkerChannel(launch.comm))
        return 0
    if not launch.is_mpi:
        return _run_master(args, None)[0]

    from menndl.transport.mpi import MPIMasterTransport

    transport = MPIMasterTransport(launch.comm)
    try:
        status, stragglers = _run_master(args, transport)
    except BaseException:
        transport.close()  # releases the worker ranks waiting for their setup
        raise
    if stragglers:  # a rank may still be training or hung: end the whole MPI job
        sys.stdout.flush()
        sys.stderr.flush()
        launch.comm.Abort(status or 1)
    return status


def _run_master(args: argparse.Namespace, transport: MasterTransport | None) -> tuple[int, bool]:
    """Validate the job, data and library path, run the search, report.

    Returns:
        The exit status, and whether some worker may still be running.
    """
    from menndl.library import LibraryWriter
    from menndl.master import Progress, Search
    from menndl.transport.local import LocalTransport

    job = load_job(args.job).with_overrides(evaluations=args.evaluations, time_limit=args.time_limit, seed=args.seed)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: expected an integer >= 1, got {args.workers}")
    if transport is not None and args.workers is not None:
        raise UserError("--workers applies to local mode only; under MPI every rank but 0 is a worker")
    library = Path(args.library) if args.library else default_library_path(job.name)
    check_library_path(library)
    spec, fingerprint, summary = _inspect_data(job)

    if transport is None:
        transport = LocalTransport(args.workers or default_local_workers(job.training.device))
    progress = Progress()
    progress.message(f"[0@{socket.gethostname()}] menndl {__version__}: job {job.path} ({job.name}), {summary}")
    progress.message(f"[0@{socket.gethostname()}] {transport.description}; library {library}")
    library.parent.mkdir(parents=True, exist_ok=True)
    writer = LibraryWriter(library, job_text=job.text, attrs=_library_attrs(job, spec, fingerprint))
    result = Search(job, spec, fingerprint, transport, writer, progress).run()
    _report(result)
    if result.stop_reason == NO_WORKERS:
        if result.evaluations == 0:
            library.unlink()  # created by this run and empty: leave nothing behind
            print("menndl: error: every worker failed before any evaluation; see the messages above", file=sys.stderr)
        else:
            print("menndl: error: every worker was lost; see the messages above", file=sys.stderr)
        return 1, result.stragglers
    return (130 if result.abandoned else 0), result.stragglers


def command_check(args: argparse.Namespace) -> int:
    """``menndl check``: validate the job and its data, describe the search, run nothing."""
    job = load_job(args.job)
    spec, fingerprint, summary = _inspect_data(job)
    search, training = job.search, job.training
    budget = " or ".join(
        part
        for part in (
            f"{search.evaluations} evaluations" if search.evaluations else "",
            f"{search.time_limit:g} s" if search.time_limit else "",
        )
        if part
    )
    print(f"{job.path}: ok")
    print(f"  data:     {summary} (fingerprint {fingerprint[:12]})")
    print(f"  search:   {budget}; population {search.population}; objectives {', '.join(search.objectives)}")
    print(
        f"  training: {training.epochs} epochs or {training.max_seconds:g} s per candidate; "
        f"precision {training.precision}, device {training.device}"
    )
    print(f"  space:    {_space_sample(job, spec)}")
    return 0


def _space_sample(job: Job, spec: InputSpec, samples: int = 200) -> str:
    """Parameter counts of random architectures from the job's space, to sanity-check its bounds."""
    import random

    from menndl.genome import count_params, random_genome

    rng = random.Random(job.seed)
    sizes = sorted(count_params(random_genome(rng, job.space, spec), spec) for _ in range(samples))
    return (
        f"{samples} random architectures have {_human(sizes[0])} to {_human(sizes[-1])} parameters "
        f"(median {_human(sizes[len(sizes) // 2])})"
    )


def _human(count: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def _inspect_data(job: Job) -> tuple[InputSpec, str, str]:
    """Load and check the job's dataset on the master: (input spec, fingerprint, one-line summary)."""
    data = load_dataset(
        job.data.source,
        base_dir=job.base_dir,
        validation_fraction=job.data.validation_fraction,
        test_fraction=job.data.test_fraction,
        split_seed=job.data.split_seed,
    )
    # The master keeps only the shapes; every worker loads its own copy and checks the fingerprint.
    return InputSpec(shape=tuple(data.input_shape), num_classes=data.num_classes), data.fingerprint(), data.summary()


def _library_attrs(job: Job, spec: InputSpec, fingerprint: str) -> dict[str, str | int | float]:
    return {
        "menndl_version": __version__,
        "job_path": str(job.path),
        "job_name": job.name,
        "seed": job.seed,
        "dataset_fingerprint": fingerprint,
        "input_shape": json.dumps(list(spec.shape)),
        "num_classes": spec.num_classes,
        "objectives": ",".join(job.search.objectives),
    }


def _report(result: SearchResult) -> None:
    """The end of a run: the Pareto front, the totals, the library, the master's own cost."""
    print_front(result.front)
    print(
        f"{result.evaluations} evaluations ({result.failed} failed) in {result.elapsed:.0f}s, "
        f"best validation accuracy {_fmt(result.best_accuracy)}; stopped: {result.stop_reason}"
    )
    print(f"library: {result.library}")
    cpu = time.process_time()
    share = 100 * cpu / max(result.elapsed, 1e-9)
    print(f"master: {cpu:.1f}s CPU in {result.elapsed:.0f}s of search ({share:.0f}% of one core)")


def default_local_workers(device: str) -> int:
    """Local mode's worker count: one per visible GPU when training on GPUs, else one per usable core."""
    gpus = visible_gpus() if device in ("auto", "cuda") else 0
    return gpus if gpus > 0 else usable_cores()


def default_library_path(job_name: str) -> Path:
    """``results/<job>-<UTC time>.h5``: a new file per search."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("results") / f"{job_name}-{stamp}.h5"


def check_library_path(path: Path) -> None:
    """Refuse, before any work, a library path that exists or cannot be written.

    Raises:
        UserError: the file exists, or its folder is not writable.
    """
    if path.exists():
        raise UserError(f"{path}: library already exists; choose another --library path (nothing was changed)")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot create the library: folder {folder} is not writable")


def print_front(front: list[dict]) -> None:
    """Print the Pareto front as a table, most accurate first."""
    if not front:
        print("Pareto front: empty (no successful evaluation)")
        return
    print(f"Pareto front ({len(front)} architectures):")
    print(f"{'id':>6}  {'accuracy':>8}  {'params':>10}  {'flops':>12}  {'seconds':>8}  operator")
    for record in front:
        print(
            f"{record['id']:>6}  {record['accuracy']:>8.4f}  {record['params']:>10,}  "
            f"{record['flops']:>12,}  {record['train_seconds']:>8.2f}  {record['operator']}"
        )


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
