"""A node that dies costs its evaluations, not the job: three "hosts" on one machine, one of them lost whole.

Open MPI's ``mpirun --with-ft ulfm`` starts a PRRTE daemon on each host of ``--host`` through its ssh agent;
here the agent is tests/faults/fake_ssh, which starts the daemon on this machine in its own UTS namespace,
so each "host" has its own daemon, its own node name (what ``MPI_Get_processor_name`` and menndl's node
layout see) and its own ranks. Losing a node is SIGKILL of its daemon and every rank on it at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from harness import BIN, MPIRUN, SLEEP_JOB, finish, start_open_mpi, wait_for
from ledger import assert_clean, read_ledger
from rank_processes import assert_only_dead_ranks_tasks_reran, journal_rows, rank_pids

from menndl.library import Library

FAKE_SSH = Path(__file__).with_name("fake_ssh")
HOSTS = {"nodea": 3, "nodeb": 3}  # beside this machine's own 2 slots: the master and one worker
LOST_HOST, LOST_RANKS = "nodeb", [5, 6, 7]  # --map-by slot fills this machine, then nodea, then nodeb


def _can_name_hosts() -> bool:
    """Whether this machine lets a process take its own host name (unshare --uts needs CAP_SYS_ADMIN)."""
    try:
        out = subprocess.run(["unshare", "--uts", "hostname", "probe"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


pytestmark = [pytest.mark.mpiexec, pytest.mark.timeout(300),
              pytest.mark.skipif(not MPIRUN.exists(), reason="no Open MPI beside the venv (make install)"),
              pytest.mark.skipif(not _can_name_hosts(), reason="unshare --uts not allowed here")]  # fmt: skip


def start_on_three_hosts(tmp_path: Path, budget: int, rank_logs: bool = False):
    """A real digits search on 8 ranks over 3 hosts, once 12 results are in: (proc, rank -> pid, job, library).

    With ``rank_logs`` each rank writes its stderr to ``rank-N.err`` in ``tmp_path``, as under the SLURM
    templates, instead of through mpirun.
    """
    job = tmp_path / "job.toml"
    job.write_text(SLEEP_JOB.format(evaluations=budget, seed=5, search_extra="").replace("max_seconds = 5",
                                                                                         "max_seconds = 2"))
    library = tmp_path / "lib.h5"
    hosts = ",".join([f"{os.uname().nodename}:2", *(f"{host}:{slots}" for host, slots in HOSTS.items())])
    program = [str(BIN / "python"), "-m", "menndl", "run", str(job), "--library", str(library)]
    if rank_logs:
        program = ["/bin/bash", "-c", f'exec {" ".join(program)} 2>>{tmp_path}/rank-$OMPI_COMM_WORLD_RANK.err']
    command = ["--prtemca", "plm_ssh_agent", str(FAKE_SSH), "--host", hosts, "--map-by", "slot", "-n", "8",
               *program]  # fmt: skip
    proc = start_open_mpi(command)
    ranks = rank_pids(str(library), 8, launcher=proc)
    assert all(_node_name(ranks[rank]) == LOST_HOST for rank in LOST_RANKS), ranks
    wait_for(lambda: journal_rows(library) >= 12 or proc.poll() is not None, timeout=180, step=0.02)
    return proc, ranks, job, library


def test_every_rank_of_a_host_killed_at_once_costs_their_evaluations_not_the_job(tmp_path: Path) -> None:
    """The 3 workers of one host die together (the OOM killer, a GPU fault), its daemon lives: budget met."""
    budget = 40
    proc, ranks, _, library = start_on_three_hosts(tmp_path, budget)
    killed_after = journal_rows(library)
    for rank in LOST_RANKS:
        os.kill(ranks[rank], signal.SIGKILL)
    status, stdout, stderr = finish(proc, timeout=200)
    context = stderr[-3000:]
    assert status == 0, context
    assert "stopped: evaluation budget reached" in stdout, context
    assert_clean(read_ledger(library), budget=budget)
    with Library.open(library) as lib:
        by_id = {int(r["id"]): r for r in lib.records()}
    assert {str(row["host"]) for row in by_id.values()} == {os.uname().nodename, "nodea", LOST_HOST}, context
    assert_only_dead_ranks_tasks_reran(by_id, stderr, LOST_RANKS, context)
    for rank in LOST_RANKS:
        assert f"[{rank}@{LOST_HOST}] worker lost: rank {rank} died" in stderr, context
    late = sorted(by_id)[killed_after + len(HOSTS) * 3 + 2:]  # started after every task held at the kill
    assert late and all(str(by_id[i]["host"]) != LOST_HOST for i in late), context


@pytest.mark.parametrize("rank_logs", [False, True], ids=["output-through-mpirun", "rank-log-files"])
def test_a_host_lost_with_its_daemon_ends_the_job_and_resume_completes_it(tmp_path: Path, rank_logs: bool) -> None:
    """The host's daemon dies with its ranks (power, network): PRRTE 3.0 ends the job; nothing finished is lost.

    Measured with pip Open MPI 5.0.11 (PRRTE 3.0.11): the runtime cannot recover a lost daemon and
    terminates every rank, whatever ULFM would do; the library keeps every result the master had, and
    ``--resume`` (here on this host alone, as a requeued job on the nodes left would) completes the budget.
    The master meets the end in one of two ways: with its output through mpirun, a write to the pipe that
    went with the runtime fails (an exception ends the loop, the library is closed with the tasks in
    flight left to ``--resume``); with rank log files, Open MPI aborts it (a PMIx event on no
    communicator, MPI_ERRORS_ARE_FATAL) and the journal is what ``--resume`` reads.
    """
    budget = 40
    proc, ranks, job, library = start_on_three_hosts(tmp_path, budget, rank_logs)
    daemons = {_parent(ranks[rank]) for rank in LOST_RANKS}
    assert len(daemons) == 1 and daemons != {_parent(ranks[0])}, (ranks, daemons)  # the host's own daemon
    for pid in [*daemons, *(ranks[rank] for rank in LOST_RANKS)]:  # the host goes, all at once
        os.kill(pid, signal.SIGKILL)
    _, _, stderr = finish(proc, timeout=200)  # (mpirun's own status is 0 here: trust the library's)
    assert "PRTE has lost communication with a remote daemon" in stderr, stderr[-3000:]
    if rank_logs:
        master_log = (tmp_path / "rank-0.err").read_text(errors="replace")
        assert "menndl: 0/40 evaluations" in master_log, master_log[-3000:]
    status = subprocess.run([str(BIN / "menndl"), "library", str(library), "status"], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert status.returncode == 3, status.stdout + status.stderr  # unfinished: a requeued job continues it
    with Library.open(library) as lib:
        before = {int(r["id"]): float(r["accuracy"]) for r in lib.records() if r["status"] == "ok"}
    assert len(before) >= 12
    resumed = start_open_mpi(["-n", "5", str(BIN / "python"), "-m", "menndl", "run", str(job), "--library",
                              str(library), "--resume"])  # fmt: skip
    status_code, stdout, stderr = finish(resumed, timeout=200)
    assert status_code == 0, stderr[-3000:]
    assert "stopped: evaluation budget reached" in stdout, stderr[-3000:]
    assert_clean(read_ledger(library), budget=budget)
    with Library.open(library) as lib:
        after = {int(r["id"]): r for r in lib.records()}
    assert {i: float(after[i]["accuracy"]) for i in before} == before  # every finished evaluation kept as it was
    not_ok = [(i, row["status"], row["error"]) for i, row in after.items() if row["status"] != "ok"]
    assert not not_ok  # the tasks in flight when the job ended ran again: no "lost" row blames a candidate


def _parent(pid: int) -> int:
    """The parent process of ``pid``."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _node_name(pid: int) -> str:
    """The host name ``pid`` sees (its UTS namespace's)."""
    return subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True,
                          timeout=10).stdout.strip()  # fmt: skip
