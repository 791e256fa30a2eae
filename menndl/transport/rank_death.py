"""Whether this MPI job survives the death of a rank, and which ranks have died.

MPI-3 has no fault tolerance: under ``MPI_ERRORS_ARE_FATAL`` (and the process
managers' own policy) one rank that exits takes the job down.  ULFM (User
Level Failure Mitigation, in Open MPI 5 and launched with
``mpirun --with-ft ulfm``) lets the survivors go on: an operation that involves
a dead rank returns ``MPI_ERR_PROC_FAILED`` instead, ``MPI_Comm_ack_failed``
acknowledges the failures (so that receives from ``MPI_ANY_SOURCE`` work
again) and ``MPI_Comm_get_failed`` names the dead.  This module knows nothing
of tasks or evolution: it says which ranks died; the transport reports them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Open MPI sets this in every rank's environment under ``mpirun --with-ft ulfm`` (or ``--mca mpi_ft_enable 1``).
OMPI_FT_VARIABLE = "OMPI_MCA_mpi_ft_enable"
_TRUE = ("1", "true", "yes", "on", "enabled")
#: Slurm's PMIx plugin names a step's namespace so: ranks that ``srun --mpi=pmix`` started directly, with no
#: PRRTE daemon to watch them (``mpirun`` names its namespaces ``prterun-...``).
SLURM_PMIX_NAMESPACE = "slurm.pmix."


@dataclass(frozen=True)
class RankDeathSupport:
    """What this MPI stack does when a rank dies: ``survives`` and the one-line reason."""

    survives: bool
    reason: str

    @property
    def line(self) -> str:
        """The start-up line: what a dead rank costs in this run, and why."""
        if self.survives:
            return f"a worker rank that dies costs its evaluation, not the job ({self.reason})"
        return f"a rank that dies ends the MPI job; --resume continues ({self.reason})"


def library_name(version: str) -> str:
    """``Open MPI 5.0.11`` or ``MPICH 5.0.2`` from ``MPI_Get_library_version``'s text (its first words otherwise)."""
    first = version.strip().splitlines()[0] if version.strip() else "an unknown MPI library"
    if first.startswith("Open MPI"):
        number = first.split(",")[0].removeprefix("Open MPI").strip().removeprefix("v")
        return f"Open MPI {number}"
    if first.startswith("MPICH Version:"):
        return f"MPICH {first.split(':', 1)[1].split()[0]}"
    return first.split(",")[0][:60]


def rank_death_support(version: str, environ: Mapping[str, str] | None = None) -> RankDeathSupport:
    """Whether a job of this MPI library, launched with this environment, survives a rank's death.

    Args:
        version: ``MPI.Get_library_version()``.
        environ: the rank's environment (``os.environ`` by default).
    """
    environ = os.environ if environ is None else environ
    name = library_name(version)
    if version.startswith("Open MPI"):
        if environ.get("PMIX_NAMESPACE", "").startswith(SLURM_PMIX_NAMESPACE):
            return RankDeathSupport(False, f"{name} started by srun --mpi=pmix: Slurm's PMIx server does not "
                                           "report a dead rank and ends the step; run mpirun --with-ft ulfm "
                                           "inside the allocation to survive one")  # fmt: skip
        if environ.get(OMPI_FT_VARIABLE, "").strip().lower() in _TRUE:
            return RankDeathSupport(True, f"{name} with ULFM, launched with --with-ft ulfm")
        return RankDeathSupport(False, f"{name} launched without --with-ft ulfm: add it to mpirun to survive a "
                                       "dead rank")  # fmt: skip
    if version.startswith("MPICH"):
        return RankDeathSupport(False, f"{name} cannot survive a dead rank: no ULFM; Open MPI 5 with "
                                       "mpirun --with-ft ulfm can (make install MPI=openmpi)")  # fmt: skip
    return RankDeathSupport(False, f"{name}: no ULFM known")


def is_rank_failure(error: BaseException, mpi: Any) -> bool:
    """Whether an MPI exception says a rank died (``MPI_ERR_PROC_FAILED``, pending, or a revoked communicator)."""
    if not isinstance(error, mpi.Exception):
        return False
    classes = {getattr(mpi, name, None) for name in ("ERR_PROC_FAILED", "ERR_PROC_FAILED_PENDING", "ERR_REVOKED")}
    classes.discard(None)
    try:
        return error.Get_error_class() in classes
    except Exception:  # noqa: BLE001 - an exception that cannot say its class is not one of these
        return False


def acknowledge_failed_ranks(comm: Any, mpi: Any) -> set[int]:
    """Acknowledge every failure ``comm`` has seen and return the ranks (of ``comm``) that died.

    After this, receives from ``MPI_ANY_SOURCE`` on ``comm`` no longer fail for these ranks.
    """
    comm.Ack_failed()
    failed = comm.Get_failed()
    try:
        count = failed.Get_size()
        if count == 0:
            return set()
        ranks = mpi.Group.Translate_ranks(failed, list(range(count)), comm.Get_group())
        return {int(rank) for rank in ranks if rank != mpi.UNDEFINED}
    finally:
        failed.Free()
