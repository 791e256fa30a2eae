"""How was menndl started: alone (local mode) or as one rank of an MPI job?

Launchers announce themselves in the environment; mpi4py (and so MPI_Init) is
only imported when one did, so local mode starts fast and never touches MPI.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from menndl.errors import UserError

# Variables that launchers set to the number of ranks in the job.
_SIZE_VARIABLES = (
    "PMI_SIZE",  # MPICH / Hydra, Intel MPI, Cray PMI
    "OMPI_COMM_WORLD_SIZE",  # Open MPI
    "PMIX_SIZE",
    "MV2_COMM_WORLD_SIZE",  # MVAPICH2
    "PALS_NRANKS",  # HPE Cray PALS
    "JSM_NAMESPACE_SIZE",  # IBM jsrun (Summit)
)


@dataclass(frozen=True)
class Launch:
    """Where this process stands: ``comm`` is None in local mode."""

    comm: Any
    rank: int
    size: int

    @property
    def is_mpi(self) -> bool:
        """True when running as one rank of a multi-rank MPI job."""
        return self.comm is not None


def launcher_size(environ: Mapping[str, str] | None = None) -> int:
    """Ranks the launcher says this job has (1 when started without one)."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        if environ.get(name, "").isdigit():
            return int(environ[name])
    if "SLURM_STEP_ID" in environ and environ.get("SLURM_NTASKS", "").isdigit():
        return int(environ["SLURM_NTASKS"])  # inside an srun step
    return 1


_LOCAL_SIZE_VARIABLES = (
    "MPI_LOCALNRANKS",  # MPICH / Hydra
    "OMPI_COMM_WORLD_LOCAL_SIZE",  # Open MPI
    "PMIX_LOCAL_SIZE",
    "MV2_COMM_WORLD_LOCAL_SIZE",  # MVAPICH2
    "PALS_LOCAL_SIZE",  # HPE Cray PALS
)


def ranks_per_node(environ: Mapping[str, str] | None = None) -> int:
    """Ranks of this job on this node, as the launcher says (the whole job when it does not say).

    Used to size data placements before any worker starts; an over-estimate only makes the choice safer.
    """
    environ = os.environ if environ is None else environ
    for name in _LOCAL_SIZE_VARIABLES:
        if environ.get(name, "").isdigit():
            return int(environ[name])
    per_node = environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0].split(",")[0]
    if per_node.isdigit():
        return int(per_node)
    tasks, nodes = environ.get("SLURM_NTASKS", ""), environ.get("SLURM_NNODES", "")
    if tasks.isdigit() and nodes.isdigit() and int(nodes) > 0:
        return -(-int(tasks) // int(nodes))
    return launcher_size(environ)


def detect_launch() -> Launch:
    """Join MPI when a launcher started several ranks; otherwise local mode.

    Raises:
        UserError: the launcher started several tasks but MPI sees a world of
            one rank (for example ``srun --mpi=none``): every task would run
            its own search.
    """
    expected = launcher_size()
    if expected <= 1:
        return Launch(comm=None, rank=0, size=1)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    size = comm.Get_size()
    if size == 1:
        raise UserError(
            f"the launcher started {expected} tasks but MPI sees 1 rank in its world; "
            "each task would run a search of its own (under srun use --mpi=pmi2 or mpiexec)"
        )
    return Launch(comm=comm, rank=comm.Get_rank(), size=size)


def visible_gpus(environ: Mapping[str, str] | None = None) -> int:
    """NVIDIA GPUs this process may use, found without importing torch.

    ``CUDA_VISIBLE_DEVICES`` when it is set, else the ``/dev/nvidiaN`` device files.
    """
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        value = environ["CUDA_VISIBLE_DEVICES"].strip()
        if value in ("", "-1", "none", "NoDevFiles"):
            return 0
        return len([entry for entry in value.split(",") if entry.strip()])
    return len(glob.glob("/dev/nvidia[0-9]*"))
