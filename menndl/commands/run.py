"""``menndl run JOB``: validate everything, then run the master or serve as a worker rank."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from menndl import __version__
from menndl.commands.common import DataReport, check_strategy, inspect_data
from menndl.data.shared_copy import clean_stale_segments
from menndl.errors import StorageError, UserError, report_stop
from menndl.job import Job, load_job
from menndl.launch import ranks_per_node, visible_gpus
from menndl.master.resume import ResumeState
from menndl.master.search import NO_WORKERS, SearchResult
from menndl.transport.base import MasterTransport
from menndl.worker.loop import usable_cores, worker_main

# Seconds between the last words of a job ended with MPI_Abort and the abort: MPICH tears down its
# launcher at once, and output not yet forwarded (the summary, the reason) would be lost.
ABORT_OUTPUT_GRACE = 1.0

HELP = "run a search (local processes, or MPI ranks under mpiexec/srun)"


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl run``."""
    run.description = (
        "Run a search. Without an MPI launcher: local mode, the master here and N worker "
        "processes. Under mpiexec/srun with K ranks: rank 0 is the master, ranks 1..K-1 are workers."
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
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in the existing --library: restore population, random state and counts, "
        "re-run what was in flight, never train a finished genome again",
    )
    run.add_argument(
        "--stop-grace",
        type=float,
        metavar="SECONDS",
        help="after a stop signal (SIGINT, SIGTERM, SIGUSR2) wait at most this long for running evaluations, "
        "then leave them to --resume (overrides search.stop_grace; default 600)",
    )


def main(args: argparse.Namespace) -> int:
    """``menndl run``: validate everything, then run the master (or serve as a worker rank)."""
    from menndl.launch import detect_launch

    # The batch system's checkpoint signal must not kill a rank that is starting up or closing:
    # only the master's search loop acts on it (menndl.master.signals); elsewhere it is ignored.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    launch = detect_launch()
    if launch.is_mpi and launch.rank != 0:
        from menndl.transport.mpi import MPIWorkerChannel, end_rank

        channel = MPIWorkerChannel(launch.comm)
        worker_main(channel)
        return end_rank(0, channel.rank_death)
    if not launch.is_mpi:
        return _run_master(args, None)[0]

    from menndl.transport.mpi import MPIMasterTransport, end_rank

    transport = MPIMasterTransport(launch.comm)
    try:
        status, stragglers = _run_master(args, transport)
    except BaseException as exc:
        transport.close()  # releases the worker ranks waiting for their setup
        if not transport.rank_death.survives:
            raise
        status = _report_error(exc)  # then end without MPI_Finalize, which may wait for a dead rank
        return end_rank(status, transport.rank_death)
    if stragglers:  # a rank may still be training or hung: end the whole MPI job
        sys.stdout.flush()
        # Said here, not left to the MPI library: MPICH's own "MPI_Abort" line can be lost when the
        # launcher tears the job down before forwarding it.
        print(
            f"menndl: ending the MPI job with MPI_Abort({status or 1}): a worker rank that was lost or "
            "abandoned cannot finalize (the library is closed and complete)",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(ABORT_OUTPUT_GRACE)  # the launcher forwards what was printed before the abort tears it down
        launch.comm.Abort(status or 1)
    return end_rank(status, transport.rank_death)


def _report_error(exc: BaseException) -> int:
    """Say what ended the master as the command line would (one line for a user error) and return the status."""
    if isinstance(exc, (UserError, KeyboardInterrupt)):
        return report_stop(exc)
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    import traceback

    traceback.print_exception(exc)
    return 1


def _run_master(args: argparse.Namespace, transport: MasterTransport | None) -> tuple[int, bool]:
    """Validate the job, data and library path, run the search, report.

    Returns:
        The exit status, and whether some worker may still be running.
    """
    from menndl.library import LibraryWriter
    from menndl.library.folding_writer import FoldingWriter, use_fold_process
    from menndl.master import Progress, Search
    from menndl.transport.local import LocalTransport

    job = load_job(args.job).with_overrides(evaluations=args.evaluations, time_limit=args.time_limit, seed=args.seed)
    job = _with_stop_grace(job, getattr(args, "stop_grace", None))
    check_strategy(job)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: expected an integer >= 1, got {args.workers}")
    if transport is not None and args.workers is not None:
        raise UserError("--workers applies to local mode only; under MPI every rank but 0 is a worker")
    library = Path(args.library) if args.library else default_library_path(job.name)
    resume = None
    if args.resume:
        if not args.library:
            raise UserError("--resume needs --library PATH (the library of the search to continue)")
        from menndl.master.resume import load_resume

        resume = load_resume(library)
        check_library_folder(library)
    else:
        check_library_path(library)
    if transport is None:
        transport = LocalTransport(args.workers or default_local_workers(job.training.device), worker_main)
    if isinstance(transport, LocalTransport) and transport.worker_count_hint is not None:
        per_node = transport.worker_count_hint  # local mode: every worker is on this node
    else:
        per_node = max(1, ranks_per_node() - 1)  # rank 0 is the master
    report = inspect_data(job, workers_per_node=per_node)
    job = job.for_task(report.task)
    spec, fingerprint, summary = report.spec, report.fingerprint, report.summary
    if (
        resume is not None
        and resume.fingerprint
        and resume.fingerprint != fingerprint
        and not _previous_release_matches(resume, job)
    ):
        raise UserError(
            f"--resume: library {library} was searched on other data (dataset fingerprint "
            f"{resume.fingerprint[:12]}, this job's data {fingerprint[:12]}); resume with the same job and data"
        )
    seeds = None
    if job.library.seed_from and resume is None:
        from menndl.master.resume import seed_genomes

        options = job.library
        seeds = seed_genomes(options.seed_from, options.seed_top, options.seed_by, job.space, spec, job.base_dir)

    progress = Progress()
    progress.message(f"[0@{socket.gethostname()}] menndl {__version__}: job {job.path} ({job.name}), {summary}")
    for segment in clean_stale_segments():  # left by workers of a search that was killed
        progress.message(f"[0@{socket.gethostname()}] removed shared data copy {segment} that no process held")
    progress.message(f"[0@{socket.gethostname()}] data checked in {report.seconds:.1f}s; placement "
                     f"{report.placement.name} ({report.placement.reason})")  # fmt: skip
    progress.message(f"[0@{socket.gethostname()}] {transport.description}; library {library}")
    if transport.fault_note:
        progress.message(f"[0@{socket.gethostname()}] {transport.fault_note}")
    policy: dict[str, Any] = {
        "flush_every": job.library.flush_records,
        "flush_seconds": job.library.flush_seconds,
        "keep_weights": job.library.keep_weights,
    }
    writer: LibraryWriter
    fold = use_fold_process(job.library.fold, transport.worker_count_hint or 0)
    writer_class = FoldingWriter if fold else LibraryWriter
    if resume is not None:
        writer = writer_class.reopen(library, **policy)
        progress.message(
            f"[0@{socket.gethostname()}] resuming: {len(resume.records)} evaluations in the library, "
            f"{len(resume.pending)} re-queued, next id {resume.next_id}"
        )
    else:
        writer = writer_class(library, job_text=job.text, attrs=_library_attrs(job, report), **policy)
    if seeds:
        progress.message(f"[0@{socket.gethostname()}] seeding the search with {len(seeds)} earlier architectures")
    # fault tests and benchmarks add {"evaluator": "sleep", ...}
    worker_setup = {"data_facts": report.facts(), **(getattr(args, "worker_setup", None) or {})}
    search = Search(job, spec, fingerprint, transport, writer, progress, resume=resume, seeds=seeds,
                    worker_setup=worker_setup)  # fmt: skip
    try:
        result = search.run()
    except StorageError as exc:  # the disk filled up (or went read-only) mid-run: stop cleanly, keep what is there
        _exit_after_storage_error(exc, writer, library, args)
    clean_stale_segments()  # a node's last worker removes its shared copy; one killed first leaves it to this
    _report(result, job.search.objectives)
    if result.signal_stop:
        print(stop_line(result, args, library), flush=True)
    if result.stop_reason == NO_WORKERS:
        if result.evaluations == 0 and resume is None:
            library.unlink()  # created by this run and empty: leave nothing behind
            print("menndl: error: every worker failed before any evaluation; see the messages above", file=sys.stderr)
        else:
            print("menndl: error: every worker was lost; see the messages above", file=sys.stderr)
        return 1, result.stragglers
    if result.data_lost:
        rerun = f", {result.to_rerun} to run again" if result.to_rerun else ""
        print(
            f"menndl: error: {result.data_lost}; stopped with {result.evaluations} evaluations kept in {library}"
            f"{rerun}; when the data is back, continue with: {resume_command(args, library)}",
            file=sys.stderr,
        )
        return 1, result.stragglers
    second_signal = result.abandoned and result.stop_reason.endswith("received twice")
    if result.evaluations and result.failed == result.evaluations and not result.signal_stop:
        print(
            f"menndl: error: none of the {result.evaluations} evaluations trained (every one failed or was lost); "
            f"their errors are in {library} (menndl library {library} top --all)",
            file=sys.stderr,
        )
        return 1, result.stragglers
    return (130 if second_signal else 0), result.stragglers


def _with_stop_grace(job: Job, seconds: float | None) -> Job:
    """The job with ``--stop-grace`` applied (validated like ``search.stop_grace``)."""
    if seconds is None:
        return job
    if not (math.isfinite(seconds) and seconds >= 0):
        raise UserError(f"--stop-grace: expected a finite number of seconds >= 0, got {seconds}")
    return dataclasses.replace(job, search=dataclasses.replace(job.search, stop_grace=seconds))


def resume_command(args: argparse.Namespace, library: Path) -> str:
    """The exact command that continues this search (the same job and overrides, plus ``--resume``)."""
    words = ["menndl", "run", str(args.job), "--library", str(library)]
    for flag, value in (("--evaluations", args.evaluations), ("--time-limit", args.time_limit), ("--seed", args.seed)):
        if value is not None:
            words += [flag, str(value)]
    return shlex.join([*words, "--resume"])


def stop_line(result: SearchResult, args: argparse.Namespace, library: Path) -> str:
    """The one line a stopped search ends with: why, what the library holds, how to continue."""
    rerun = f", {result.to_rerun} to run again" if result.to_rerun else ""
    return (
        f"menndl: stopped by {result.signal_stop} after {result.search_seconds:.0f}s of search: "
        f"{result.evaluations} evaluations in {library}{rerun}; continue with: {resume_command(args, library)}"
    )


def _previous_release_matches(resume: ResumeState, job: Job) -> bool:
    """Whether a library of the release before streaming data recorded this job's data (by that release's digest)."""
    if not resume.previous_release:
        return False
    from menndl.commands.common import load_job_data
    from menndl.data.previous_fingerprint import previous_release_fingerprint

    with load_job_data(job) as data:
        return previous_release_fingerprint(data) == resume.fingerprint


def _library_attrs(job: Job, report: DataReport) -> dict[str, str | int | float]:
    """The library's root attributes: the job, the data as checked (fingerprint, statistics, placement)."""
    return {
        "menndl_version": __version__,
        "job_path": str(job.path),
        "job_name": job.name,
        "seed": job.seed,
        "dataset_fingerprint": report.fingerprint,
        "dataset_identity": report.identity,
        "input_shape": json.dumps(list(report.spec.shape)),
        "num_classes": report.spec.num_classes,
        "task": report.task,
        "objectives": ",".join(job.search.objectives),
        "data_placement": report.placement.name,
        "data_stats": json.dumps(report.stats.as_dict()),
        **(
            {"target_stats": json.dumps({"mean": list(report.target_mean), "std": list(report.target_std)})}
            if report.task == "regression"
            else {}
        ),  # fmt: skip
        **(
            {"segmentation": json.dumps({"ignore_label": report.ignore_label,
                                         "class_weights": list(report.class_weights)})}
            if report.task == "segmentation"
            else {}
        ),  # fmt: skip
        "data_check_seconds": round(report.seconds, 3),
    }


def _report(result: SearchResult, objectives: tuple[str, ...] = ()) -> None:
    """The end of a run: the Pareto front, the totals, the library, the master's own cost."""
    print_front(result.front, objectives)
    print(
        f"{result.evaluations} evaluations ({result.failed} failed) in {result.elapsed:.0f}s, "
        f"best validation {result.score} {_fmt(result.best_score)}; stopped: {result.stop_reason}"
    )
    print(f"library: {result.library}")
    cpu = time.process_time()
    share = 100 * cpu / max(result.elapsed, 1e-9)
    print(f"master: {cpu:.1f}s CPU in {result.elapsed:.0f}s of search ({share:.0f}% of one core)")
    if not math.isnan(result.utilization):
        print(f"workers: busy {100 * result.utilization:.1f}% of the time while the search handed out work")


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

    The library's folder is created when its parent exists (``results/``); a deeper missing path is
    more likely a typo (or a file system that is not mounted) than a wish.

    Raises:
        UserError: the file exists, its folder is missing or not writable, or has no room.
    """
    if path.exists():
        raise UserError(f"{path}: library already exists; choose another --library path (nothing was changed)")
    folder = path.parent
    if not folder.exists() and not folder.is_symlink():
        grandparent = folder.parent
        if not grandparent.is_dir():
            raise UserError(
                f"{path}: cannot create the library: folder {folder} does not exist, nor does {grandparent} "
                "(create it first, or check the path)"
            )
        try:
            folder.mkdir()
        except OSError as exc:
            raise UserError(f"{path}: cannot create the library's folder {folder} ({_os_reason(exc)})") from None
    check_library_folder(path)


def check_library_folder(path: Path) -> None:
    """The library's folder exists, can be written (a real file is written and removed) and has room.

    Raises:
        UserError: it cannot, naming the folder and why.
    """
    import shutil
    import tempfile

    folder = path.parent
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise UserError(f"{path}: cannot write the library: {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot write the library: folder {folder} is not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".menndl-probe-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise UserError(f"{path}: cannot write the library in {folder} ({_os_reason(exc)})") from None
    if free < MIN_FREE_BYTES:
        raise UserError(
            f"{path}: only {free / 2**20:.1f} MiB free in {folder}; the library needs at least "
            f"{MIN_FREE_BYTES // 2**20} MiB to grow (free some space or choose another --library)"
        )


PROBE_BYTES = 64 * 1024  # written and removed before any worker starts: the folder really takes data
MIN_FREE_BYTES = 16 * 2**20  # a library of a few thousand rows, its journal and a resume's base copy


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _exit_after_storage_error(error: StorageError, writer: Any, library: Path, args: argparse.Namespace) -> NoReturn:
    """The library stopped taking data mid-run (disk full, quota, file size limit): one line, exit 1, now.

    The workers were already stopped (the search closes its transport whatever happens) and every
    record reached the journal before the failed write.  HDF5 cannot close a file whose metadata it
    can no longer write (its handles fail, or crash the process, when released), so the process ends
    here without releasing them; the file on disk is as the last good flush left it, and a reader
    adds the journal's records.
    """
    kept = len(writer)
    message = (
        f"menndl: error: {error}; the search stopped; the library keeps the {kept} evaluations recorded "
        f"before; free some space, then continue with: {resume_command(args, library)}"
    )
    print(" ".join(message.split()), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(StorageError.exit_status)


def print_front(front: list[dict], objectives: tuple[str, ...] = ()) -> None:
    """Print the Pareto front as a table, best score first: id, the score, the objectives, sizes, seconds, operator."""
    if not front:
        print("Pareto front: empty (no successful evaluation)")
        return
    def measured(name: str) -> bool:  # some member holds a value (resumed rows hold every column, NaN or not)
        return any(isinstance(r.get(name), (int, float)) and not math.isnan(float(r[name])) for r in front)

    columns = [name for name in ("accuracy", "r2", "miou", *objectives) if measured(name)]
    columns = list(dict.fromkeys([*columns, *(c for c in ("params", "flops", "train_seconds") if c not in columns)]))
    print(f"Pareto front ({len(front)} architectures):")
    cells = [[f"{r['id']}", *(_cell(r.get(c, math.nan), c) for c in columns), str(r["operator"])] for r in front]
    header = ["id", *(c.replace("train_seconds", "seconds") for c in columns), "operator"]
    widths = [max(len(h), *(len(line[k]) for line in cells)) for k, h in enumerate(header)]
    print("  ".join(h.rjust(w) if k < len(header) - 1 else h for k, (h, w) in enumerate(zip(header, widths))))
    for line in cells:
        print("  ".join(c.rjust(w) if k < len(line) - 1 else c for k, (c, w) in enumerate(zip(line, widths))))


def _cell(value: object, column: str) -> str:
    """One value of the front table: accuracy and R² to 4 places, counts with separators, times to 4 digits."""
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if column in ("accuracy", "r2", "miou", "pixel_accuracy"):
        return f"{float(value):.4f}"  # type: ignore[arg-type]
    if isinstance(value, int):
        return f"{value:,}" if value >= 0 else "-"
    return f"{float(value):.4g}"  # type: ignore[arg-type]


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
