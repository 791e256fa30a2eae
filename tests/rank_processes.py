"""Finding the processes of a running MPI job's ranks, and reading what its master said about dead ones.

Shared by the rank-death tests under ``mpirun`` (tests/faults) and under SLURM (tests/cluster). Ranks are told
apart by the ``OMPI_COMM_WORLD_RANK`` of their environment, which Open MPI sets in each rank.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path


def rank_pids(marker: str, count: int, timeout: float = 60.0, launcher: subprocess.Popen | None = None
              ) -> dict[int, int]:  # fmt: skip
    """rank -> pid of the ``count`` ranks whose command line holds ``marker``; fail after ``timeout`` seconds,
    or as soon as ``launcher`` (the mpirun that starts them) has ended, with what it printed."""
    deadline = time.monotonic() + timeout
    while True:
        if launcher is not None and launcher.poll() is not None:
            out, err = launcher.communicate()
            raise AssertionError(f"the launcher ended (status {launcher.returncode}) before {count} ranks ran:\n"
                                 f"{(out + err)[-3000:]}")  # fmt: skip
        ranks = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
                if not any(marker.encode() in part for part in command) or Path(command[0].decode()).name in (
                        "mpirun", "prterun", "bash", "srun"):  # fmt: skip
                    continue
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, UnicodeDecodeError):
                continue
            for item in environ:
                if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                    ranks[int(item.split(b"=")[1])] = int(entry.name)
        if len(ranks) >= count:
            return ranks
        if time.monotonic() > deadline:
            raise AssertionError(f"only ranks {sorted(ranks)} of {count} running after {timeout}s" +
                                 (_launcher_state(launcher) if launcher is not None else ""))  # fmt: skip
        time.sleep(0.05)


def journal_rows(library: Path) -> int:
    """Results the master has recorded so far (one journal ``row`` line each)."""
    try:
        text = (library.parent / (library.name + ".journal")).read_bytes()
    except OSError:
        return 0
    return text.count(b'{"type": "row"') + text.count(b'{"type":"row"')


def rerun_tasks(output: str, rank: int) -> list[int]:
    """The task the master said it runs again after ``rank`` died (none when it held no running task)."""
    lines = [line for line in output.splitlines() if f"worker lost: rank {rank} died" in line]
    assert len(lines) == 1, output[-3000:]
    return [int(lines[0].split("its task ")[1].split()[0])] if "its task " in lines[0] else []


def assert_only_dead_ranks_tasks_reran(records: Mapping[int, Mapping], output: str, victims: list[int],
                                       context: str) -> None:  # fmt: skip
    """Each task a dead rank held ran again on another rank (``lost`` only when that re-run's rank died too),
    and every other evaluation is ``ok``: ``records`` maps id -> library row, ``output`` is the master's."""
    rerun = {task: victim for victim in victims for task in rerun_tasks(output, victim)}
    for task, victim in rerun.items():
        row = records[task]
        if row["status"] == "lost":  # its second run was on a rank that died too: out of re-runs, as in local mode
            assert "died (MPI_ERR_PROC_FAILED)" in row["error"], (task, context)
        else:
            assert row["status"] == "ok" and int(row["worker_rank"]) != victim, (task, context)  # by another rank
    unexplained = {i for i, row in records.items() if row["status"] != "ok"} - set(rerun)
    assert not unexplained, context  # every other evaluation trained: none lost, none timed out


def _launcher_state(launcher: subprocess.Popen) -> str:
    """What the still-running launcher's processes are (for a failure message)."""
    listing = subprocess.run(["ps", "-eo", "pid,ppid,stat,etime,args", "--forest"], capture_output=True, text=True,
                             timeout=10).stdout  # fmt: skip
    return f"; the launcher (pid {launcher.pid}) still runs:\n{listing[-3000:]}"
