"""The fault suite's long soak: every fault injected into real runs, and the ledger of each.

Each scenario is a real ``menndl run`` (real worker processes or real MPI ranks under ``mpiexec``,
real files; the sleep evaluator where training is beside the point, real PyTorch training on the
sklearn digits where it is named), with faults injected from outside (kill -9, SIGSTOP, a file size
limit) or by the worker itself (a segfault, an abort). After each, the library must open, and the
ledger (``tests/faults/ledger.py``) counts evaluations lost (finished by a worker, absent from the
library) and trained twice (an id or a genome with two finished rows). Both must be 0.

    python benchmarks/fault_soak.py [--kills 10] [--evaluations 200] [--only NAME ...] [--json]

With ``--json`` prints one JSON object: totals (faults injected, runs, runs that completed or
stopped cleanly, evaluations lost, trained twice) and one entry per scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "faults"))

from harness import MPIEXEC, children, finish, kill_workers, sleep_command, start, wait_for, write_job  # noqa: E402
from ledger import read_ledger  # noqa: E402

Scenario = Callable[[Path, argparse.Namespace], dict]


def _entry(name: str, faults: int, outcome: str, ledger, budget: int, **extra) -> dict:
    complete = ledger.ids == set(range(budget))
    return {"scenario": name, "faults": faults, "outcome": outcome, "budget_completed": complete,
            "lost": len(ledger.lost), "trained_twice": ledger.twice, **ledger.summary(), **extra}  # fmt: skip


def local_kill9(folder: Path, args: argparse.Namespace) -> dict:
    """Acceptance 3: kill -9 of a local worker ``--kills`` times in one run (sleep evaluator, 2 workers)."""
    job, library, log = write_job(folder, args.evaluations), folder / "lib.h5", folder / "log.jsonl"
    started = time.monotonic()
    proc = start(sleep_command(job, library, "--workers", "2", seconds=0.1, log=log))
    killed = kill_workers(proc, log, kills=args.kills, every=max(1, args.evaluations // (args.kills + 2)), timeout=300)
    status, stdout, stderr = finish(proc, timeout=600)
    outcome = "completed" if status == 0 and "evaluation budget reached" in stdout else f"exit {status}"
    return _entry("local kill -9 of a worker, sleep evaluator", killed, outcome, read_ledger(library, log),
                  args.evaluations, replacements_joined=stderr.count(" joined ("),
                  seconds=round(time.monotonic() - started, 1))  # fmt: skip


def local_kill9_training(folder: Path, args: argparse.Namespace) -> dict:
    """kill -9 of a local worker 3 times during real training on the digits (2 workers)."""
    from harness import env  # noqa: F401  (same environment as the tests)

    job = folder / "job.toml"
    job.write_text(write_job(folder, 24).read_text().replace("epochs = 1", "epochs = 2"))
    library = folder / "lib.h5"
    proc = start([sys.executable, "-m", "menndl", "run", str(job), "--library", str(library), "--workers", "2"])
    journal = library.with_name(library.name + ".journal")
    killed = 0
    for threshold in (3, 9, 15):
        try:
            wait_for(lambda t=threshold: journal.exists() and journal.read_bytes().count(b'"type":"row"') >= t,
                     timeout=300, step=0.1)  # fmt: skip
        except AssertionError:
            break
        workers = children(proc.pid)
        if workers:
            os.kill(workers[killed % len(workers)], signal.SIGKILL)
            killed += 1
    status, stdout, _ = finish(proc, timeout=600)
    outcome = "completed" if status == 0 and "evaluation budget reached" in stdout else f"exit {status}"
    return _entry("local kill -9 of a worker, real training (digits)", killed, outcome, read_ledger(library), 24)


def local_crashes(folder: Path, args: argparse.Namespace) -> dict:
    """Workers that segfault or abort on chosen tasks (once each, and one task every time)."""
    job, library, log = write_job(folder, 60), folder / "lib.h5", folder / "log.jsonl"
    inject = ("--crash", "5:SIGSEGV", "--crash", "17:SIGABRT", "--crash", "30:SIGBUS", "--crash", "44:SIGKILL")
    status, stdout, stderr = finish(start(sleep_command(job, library, "--workers", "2", seconds=0.05, log=log,
                                                        inject=(*inject, "--crash-once"))), timeout=300)  # fmt: skip
    faults = stderr.count("killed by signal")
    outcome = "completed" if status == 0 else f"exit {status}"
    return _entry("local worker segfault/abort/bus error/kill (first attempt)", faults, outcome,
                  read_ledger(library, log), 60)  # fmt: skip


def local_hang(folder: Path, args: argparse.Namespace) -> dict:
    """A worker that hangs (SIGSTOP from outside) and a task that hangs every time: deadlines, replacements."""
    job = write_job(folder, 60, search_extra="task_deadline = 2")
    library, log = folder / "lib.h5", folder / "log.jsonl"
    proc = start(sleep_command(job, library, "--workers", "2", seconds=0.1, log=log, inject=("--hang", "40")))
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 10, timeout=120)
    os.kill(children(proc.pid)[0], signal.SIGSTOP)
    status, stdout, stderr = finish(proc, timeout=300)
    faults = 1 + 2  # the stopped worker; the hanging task, twice
    outcome = "completed" if status == 0 else f"exit {status}"
    return _entry("local hung worker (SIGSTOP) and hanging task", faults, outcome, read_ledger(library, log), 60,
                  deadline_retirements=stderr.count("deadline; replacement worker"))  # fmt: skip


def local_broken_install(folder: Path, args: argparse.Namespace) -> dict:
    """Every worker dies before ready: respawning stops after 3 in a row; exit 1, nothing left behind."""
    job, library = write_job(folder, 10), folder / "lib.h5"
    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "2",
                                                   inject=("--crash-on-setup", "SIGSEGV"))), timeout=120)  # fmt: skip
    clean = status == 1 and "not replaced: 3 workers in a row" in stderr and "Traceback" not in stderr
    return {"scenario": "every worker dies before ready (broken install)", "faults": stderr.count("worker lost"),
            "outcome": "stopped cleanly" if clean else f"exit {status}", "budget_completed": False, "lost": 0,
            "trained_twice": 0, "library_left": library.exists()}  # fmt: skip


def disk_full(folder: Path, args: argparse.Namespace) -> dict:
    """The library's disk fills up mid-run (RLIMIT_FSIZE), then --resume with room completes the budget."""
    job, library, log = write_job(folder, 400), folder / "lib.h5", folder / "log.jsonl"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (250_000, 250_000))

    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "2", seconds=0.01, log=log),
                                     preexec_fn=limit), timeout=300)  # fmt: skip
    errors = [line for line in stderr.splitlines() if line.startswith("menndl: error:")]
    clean = status == 1 and len(errors) == 1 and "Traceback" not in stderr
    kept = read_ledger(library).rows
    status, _, _ = finish(start(sleep_command(job, library, "--workers", "2", "--resume", seconds=0.01, log=log)),
                          timeout=300)  # fmt: skip
    outcome = ("stopped cleanly, resumed" if clean else "unclean stop") + ("" if status == 0 else f", exit {status}")
    return _entry("library disk full mid-run (file size limit), then --resume", 1, outcome,
                  read_ledger(library, log), 400, kept_at_stop=kept)  # fmt: skip


def mpi_sigstop(folder: Path, args: argparse.Namespace) -> dict:
    """A worker rank stopped (SIGSTOP) under mpiexec: dropped at its deadline, budget completed."""
    job = write_job(folder, 80, search_extra="task_deadline = 2")
    library, log = folder / "lib.h5", folder / "log.jsonl"
    proc = start([str(MPIEXEC), "-n", "3", *sleep_command(job, library, seconds=0.1, log=log)])
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 10, timeout=120)
    victim = json.loads(log.read_text().splitlines()[0])["pid"]
    os.kill(victim, signal.SIGSTOP)
    status, stdout, _ = finish(proc, timeout=300)
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.kill(victim, sig)
        except ProcessLookupError:
            pass
    outcome = "completed (job ended by MPI_Abort)" if "evaluation budget reached" in stdout else f"exit {status}"
    return _entry("MPI worker rank stopped (SIGSTOP)", 1, outcome, read_ledger(library, log), 80)


def mpi_kill(folder: Path, args: argparse.Namespace, who: str) -> dict:
    job, library, log = write_job(folder, 80), folder / "lib.h5", folder / "log.jsonl"
    proc = start([str(MPIEXEC), "-n", "3", *sleep_command(job, library, seconds=0.1, log=log)])
    wait_for(lambda: log.exists() and log.read_text().count("\n") >= 20, timeout=120)
    workers = {json.loads(line)["pid"] for line in log.read_text().splitlines()}
    if who == "worker":
        victim = min(workers)
    else:
        victim = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) not in workers
                      and b"sleep_run.py" in _cmdline(p) and b"mpiexec" not in _cmdline(p))  # fmt: skip
    os.kill(victim, signal.SIGKILL)
    status, _, _ = finish(proc, timeout=120)
    kept = read_ledger(library, log, may_be_missing=range(80)).rows
    resumed, _, _ = finish(start([str(MPIEXEC), "-n", "3", *sleep_command(job, library, "--resume", seconds=0.1,
                                                                           log=log)]), timeout=300)  # fmt: skip
    outcome = f"aborted by MPICH (exit {status}), resumed" + ("" if resumed == 0 else f" (exit {resumed})")
    return _entry(f"MPI {who} rank killed (kill -9), then --resume", 1, outcome, read_ledger(library, log), 80,
                  kept_at_abort=kept)  # fmt: skip


def _cmdline(path: Path) -> bytes:
    try:
        return (path / "cmdline").read_bytes()
    except OSError:
        return b""


def master_kills(folder: Path, args: argparse.Namespace) -> dict:
    """The whole local search killed (kill -9 of the process group) 5 times at random, resumed each time."""
    import random

    rng = random.Random(1)
    job, library, log = write_job(folder, 400), folder / "lib.h5", folder / "log.jsonl"
    kills = 0
    for _ in range(5):
        proc = start(sleep_command(job, library, "--workers", "2", *(["--resume"] if library.exists() else []),
                                   seconds=0.05, log=log))  # fmt: skip
        time.sleep(rng.uniform(2.0, 4.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
        if library.exists():  # (killed before it was created: the next round starts afresh)
            read_ledger(library, log, may_be_missing=range(400))  # opens after every kill
    status, _, _ = finish(start(sleep_command(job, library, "--workers", "2", "--resume", seconds=0.05, log=log)),
                          timeout=300)  # fmt: skip
    return _entry("whole local search killed (kill -9) 5 times, resumed each time", kills,
                  "completed" if status == 0 else f"exit {status}", read_ledger(library, log), 400)  # fmt: skip


SCENARIOS: dict[str, Scenario] = {
    "local-kill9": local_kill9,
    "local-kill9-training": local_kill9_training,
    "local-crashes": local_crashes,
    "local-hang": local_hang,
    "local-broken-install": local_broken_install,
    "disk-full": disk_full,
    "master-kills": master_kills,
    "mpi-sigstop": mpi_sigstop,
    "mpi-kill-worker": lambda folder, args: mpi_kill(folder, args, "worker"),
    "mpi-kill-master": lambda folder, args: mpi_kill(folder, args, "master"),
}


def _fold_every_job(setting: str) -> None:
    """Make every scenario's job say ``library.fold = setting`` (the fold process under the same faults)."""
    global write_job
    plain = write_job

    def with_fold(folder: Path, *args: Any, **kwargs: Any) -> Path:
        path = plain(folder, *args, **kwargs)
        path.write_text(path.read_text().replace("[library]\n", f'[library]\nfold = "{setting}"\n', 1))
        return path

    write_job = with_fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="kill -9 of a local worker in one run")
    parser.add_argument("--evaluations", type=int, default=200, help="budget of that run")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--fold", choices=("auto", "inline", "process"),
                        help="library.fold of every run's job (default: the jobs' own, auto: inline at this size)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.fold:
        _fold_every_job(args.fold)
    names = args.only or [n for n in SCENARIOS if MPIEXEC is not None or not n.startswith("mpi")]
    entries = []
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            entry = SCENARIOS[name](Path(tmp), args)
        entries.append(entry)
        if not args.json:
            print(f"{entry['scenario']}: {entry['faults']} faults, {entry['outcome']}, "
                  f"lost {entry['lost']}, trained twice {entry['trained_twice']}", flush=True)  # fmt: skip
    totals = {
        "faults_injected": sum(e["faults"] for e in entries),
        "runs": len(entries),
        "completed_or_stopped_cleanly": sum(1 for e in entries if e["outcome"].startswith(("completed", "stopped",
                                                                                             "aborted"))),
        "evaluations_lost": sum(e["lost"] for e in entries),
        "trained_twice": sum(e["trained_twice"] for e in entries),
    }  # fmt: skip
    if args.json:
        print(json.dumps({**totals, "scenarios": entries}))
    else:
        print(json.dumps(totals))


if __name__ == "__main__":
    main()
