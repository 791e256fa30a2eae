"""Launcher detection from the environment, with the variables measured under a real SLURM (slurm-wlm 22.05).

`menndl run` must pick MPI mode inside an ``srun`` step with no flag, and local mode in the batch shell.
"""

from __future__ import annotations

import pytest

from menndl.launch import launcher_size

BATCH_SHELL = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "3", "SLURM_NPROCS": "3", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
SRUN_PMI2_TASK = {**BATCH_SHELL, "SLURM_STEP_ID": "0", "SLURM_PROCID": "2", "SLURM_LOCALID": "2",
                  "PMI_FD": "15", "PMI_JOBID": "7.0", "PMI_RANK": "2", "PMI_SIZE": "3"}  # fmt: skip
SRUN_NO_PMI_TASK = {**BATCH_SHELL, "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2",
                    "SLURM_PROCID": "1", "SLURM_LOCALID": "1"}  # fmt: skip


@pytest.mark.parametrize(
    ("environ", "size"),
    [
        ({}, 1),
        (BATCH_SHELL, 1),  # the batch script itself is one process: local mode
        (SRUN_PMI2_TASK, 3),  # srun --mpi=pmi2: one MPI world of 3 ranks
        (SRUN_NO_PMI_TASK, 2),  # srun without PMI: still several tasks (MPI then refuses a world of 1)
        ({"JSM_NAMESPACE_SIZE": "12"}, 12),  # jsrun
        ({"OMPI_COMM_WORLD_SIZE": "4"}, 4),  # mpirun (Open MPI)
    ],
)
def test_launcher_size_from_the_environment(environ: dict[str, str], size: int) -> None:
    assert launcher_size(environ) == size
