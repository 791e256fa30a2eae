"""A throwaway one-node SLURM cluster (munged, slurmctld, slurmd) for the tests in test_slurm.py.

Everything lives in one folder: the config, state, spool, logs and pid files.  ``SlurmCluster.stop``
cancels every job and ends the daemons this object started (by the pids in their pid files).
Run ``python tests/cluster/slurm_cluster.py FOLDER`` to start one by hand (Ctrl-C stops it).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

COMMAND_TIMEOUT = 30.0  # seconds for any one SLURM client command

CONFIG = """\
ClusterName=menndltest
FirstJobId={first_job_id}
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmi2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
KillWait=5
MinJobAge=300
NodeName={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""

# Four GPUs that are only counted (no device files): enough for SLURM to schedule the GPU template.
GRES = "NodeName={host} Name=gpu File=/dev/tty[0-3]\n"


def slurm_installed() -> bool:
    """True when the SLURM daemons and clients this module needs are on PATH (or in /usr/sbin)."""
    return all(_which(name) for name in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol"))


def remove_stale_mpi_segments() -> list[Path]:
    """Remove MPICH/UCX shared-memory segments in /dev/shm that no live process has open or mapped.

    MPI jobs killed or aborted earlier in the test run (the fault tests kill ranks on purpose) leave
    their segments behind, and a stale segment can hang ``MPI_Init`` of a later step (seen under
    ``srun --mpi=pmi2``: every rank spinning in ``MPI_Init_thread``).  A fresh machine has none.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return []
    in_use: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        for entry in ("fd", "map_files"):
            try:
                in_use.update(os.readlink(link) for link in (proc / entry).iterdir())
            except OSError:  # the process ended, or is not ours to read
                continue
    removed = []
    for segment in [*shm.glob("mpich_shm_*"), *shm.glob("ucx_shm_*")]:
        if str(segment) not in in_use:
            try:
                segment.unlink()
                removed.append(segment)
            except OSError:
                pass
    return removed


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


class SlurmCluster:
    """A one-node cluster configured in ``folder``; `start` it, `stop` it (always)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.host = socket.gethostname().split(".")[0]
        self._started_munged = False

    @property
    def env(self) -> dict[str, str]:
        """The environment for SLURM clients (and, through ``--export=ALL``, for jobs)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 30.0) -> None:
        """Start munged (unless one answers), slurmctld and slurmd; wait until the node is idle.

        Raises:
            RuntimeError: the node did not become idle in time (the message carries the logs).
        """
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        remove_stale_mpi_segments()
        # Job ids start at a random number: MPICH names its shared memory after the PMI job id, and a killed
        # job of an earlier throwaway cluster (ids from 1 again) can leave a segment that hangs MPI_Init.
        first = random.randrange(100_000, 60_000_000)
        self.conf.write_text(
            CONFIG.format(host=self.host, folder=self.folder, ctld_port=16817, d_port=16818, first_job_id=first)
        )
        (self.folder / "gres.conf").write_text(GRES.format(host=self.host))
        if not self._munge_answers():
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge")
            command = [_which("runuser") or "runuser", "-u", "munge", "--", _which("munged") or "munged"]
            subprocess.run(command, check=True, timeout=COMMAND_TIMEOUT)
            self._started_munged = True
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([_which(daemon) or daemon], env=self.env, check=True, timeout=COMMAND_TIMEOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run(["sinfo", "-h", "-o", "%T"], check=False).stdout.strip()
            if state == "idle":
                return
            time.sleep(0.3)
        raise RuntimeError(f"the SLURM node did not become idle in {timeout:.0f}s (state {state!r})\n{self.logs()}")

    def stop(self) -> None:
        """Cancel every job, end the daemons this cluster started, and wait for them to exit."""
        if self.conf.exists():
            subprocess.run(["scancel", "-u", "root"], env=self.env, capture_output=True, timeout=COMMAND_TIMEOUT)
        pid_files = [self.folder / "slurmd.pid", self.folder / "slurmctld.pid"]
        if self._started_munged:
            pid_files.append(Path("/run/munge/munged.pid"))
        for pid_file in pid_files:
            _end(pid_file)

    def run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command against this cluster, under a timeout."""
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=check
        )

    def job_state(self, job_id: str) -> str:
        """The job's state word (PENDING, RUNNING, COMPLETED, ...), or '' once SLURM forgot it."""
        out = self.run(["scontrol", "-o", "show", "job", job_id], check=False).stdout
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return ""

    def job_field(self, job_id: str, name: str) -> str:
        """One ``Name=value`` field of ``scontrol show job`` ('' when absent)."""
        out = self.run(["scontrol", "-o", "show", "job", job_id], check=False).stdout
        for field in out.split():
            if field.startswith(name + "="):
                return field.split("=", 1)[1]
        return ""

    def logs(self) -> str:
        """The daemons' logs (for failure messages)."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.folder / name
            if path.exists():
                parts.append(f"--- {name} (tail)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)

    def _munge_answers(self) -> bool:
        try:
            credential = subprocess.run(["munge", "-n"], capture_output=True, timeout=COMMAND_TIMEOUT)
            if credential.returncode != 0:
                return False
            check = subprocess.run(["unmunge"], input=credential.stdout, capture_output=True, timeout=COMMAND_TIMEOUT)
            return check.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def _end(pid_file: Path, timeout: float = 15.0) -> None:
    """SIGTERM the process named in ``pid_file`` and wait for it to exit (SIGKILL after ``timeout``)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    import sys

    cluster = SlurmCluster(Path(sys.argv[1]).resolve())
    try:
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
