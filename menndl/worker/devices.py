"""Which GPU a worker rank uses: one rank per GPU, chosen from its node-local rank (no torch here).

The node-local rank comes, in order of preference, from the transport (an MPI
shared-memory split over the workers on the node, or the local worker
index), else from the launcher's environment.  Devices are counted after
``CUDA_VISIBLE_DEVICES``: a rank that the launcher bound to one GPU
(``srun --gpus-per-task=1``, ``--gpu-bind``) sees exactly one device and
takes it, whatever its local rank.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Variables that launchers set to a rank's index on its node, in order of preference.
# The MPI launchers' own variables come before SLURM_LOCALID: under `mpirun` inside an sbatch script,
# SLURM_LOCALID is the batch step's (0 for every rank), while the launcher's is per rank.
LOCAL_RANK_VARIABLES: tuple[str, ...] = (
    "OMPI_COMM_WORLD_LOCAL_RANK",  # Open MPI (mpirun)
    "MPI_LOCALRANKID",  # MPICH / Hydra, Intel MPI
    "MV2_COMM_WORLD_LOCAL_RANK",  # MVAPICH2
    "PALS_LOCAL_RANKID",  # HPE Cray PALS
    "JSM_NAMESPACE_LOCAL_RANK",  # IBM jsrun
    "SLURM_LOCALID",  # srun
    "PMI_LOCAL_RANK",  # PMI-2 / PMIx based launchers
)


def local_rank_from_environ(environ: Mapping[str, str] | None = None) -> int | None:
    """The node-local rank a launcher announced, or None when none did.

    Launcher variables count every rank on the node, the master included.
    """
    environ = os.environ if environ is None else environ
    for name in LOCAL_RANK_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def resolve_local_rank(transport_local_rank: int | None, environ: Mapping[str, str] | None = None) -> int:
    """The node-local index used for device binding: the transport's, else the launcher's, else 0."""
    if transport_local_rank is not None and transport_local_rank >= 0:
        return transport_local_rank
    from_environ = local_rank_from_environ(environ)
    return 0 if from_environ is None else from_environ


def gpu_index(local_rank: int, visible_gpus: int) -> int | None:
    """The index (among the visible GPUs) of the GPU for ``local_rank``; None when there is none.

    Ranks beyond the GPU count share GPUs round-robin (``local_rank mod GPUs``):
    a job with more workers per node than GPUs still runs, two ranks per GPU.
    """
    if visible_gpus <= 0:
        return None
    return local_rank % visible_gpus


def gpu_for_environ(transport_local_rank: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """The visible GPU index a rank takes in this environment, without torch (for checks and messages).

    The workers themselves count devices with torch, which honours
    ``CUDA_VISIBLE_DEVICES`` in the same way as `menndl.launch.visible_gpus`.
    """
    from menndl.launch import visible_gpus

    return gpu_index(resolve_local_rank(transport_local_rank, environ), visible_gpus(environ))
