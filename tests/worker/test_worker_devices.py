"""One worker rank per GPU: node-local rank from the transport or the launcher, CUDA_VISIBLE_DEVICES honoured."""

from __future__ import annotations

import pytest

from menndl.worker.devices import gpu_for_environ, gpu_index, local_rank_from_environ, resolve_local_rank


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"SLURM_LOCALID": "3"}, 3),  # srun
        ({"OMPI_COMM_WORLD_LOCAL_RANK": "2"}, 2),  # Open MPI
        ({"MPI_LOCALRANKID": "1"}, 1),  # MPICH / Hydra, Intel MPI
        ({}, None),
        ({"SLURM_LOCALID": "x"}, None),
    ],
)
def test_local_rank_from_launcher_variables(environ: dict[str, str], expected: int | None) -> None:
    assert local_rank_from_environ(environ) == expected


def test_mpirun_inside_sbatch_uses_the_launchers_variable_not_the_batch_steps() -> None:
    # The batch shell's SLURM_LOCALID (0) is inherited by every rank mpirun starts.
    assert local_rank_from_environ({"SLURM_LOCALID": "0", "OMPI_COMM_WORLD_LOCAL_RANK": "5"}) == 5
    assert local_rank_from_environ({"SLURM_LOCALID": "0", "MPI_LOCALRANKID": "3"}) == 3


def test_the_transports_node_layout_wins_over_the_environment() -> None:
    assert resolve_local_rank(2, {"SLURM_LOCALID": "7"}) == 2
    assert resolve_local_rank(None, {"SLURM_LOCALID": "7"}) == 7
    assert resolve_local_rank(None, {}) == 0


@pytest.mark.parametrize(
    "environ, gpu",
    [
        ({"SLURM_LOCALID": "5", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 1),  # 6th rank of a 4-GPU node
        ({"OMPI_COMM_WORLD_LOCAL_RANK": "2", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 2),
        ({"MPI_LOCALRANKID": "3", "CUDA_VISIBLE_DEVICES": "4,5,6,7"}, 3),  # index among the visible ones
        ({"SLURM_LOCALID": "3", "CUDA_VISIBLE_DEVICES": "6"}, 0),  # srun --gpus-per-task=1: its own GPU
        ({"MPI_LOCALRANKID": "1", "CUDA_VISIBLE_DEVICES": ""}, None),  # GPUs hidden: the CPU
        ({"OMPI_COMM_WORLD_LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "-1"}, None),
    ],
)
def test_local_rank_to_gpu_for_each_launcher(environ: dict[str, str], gpu: int | None) -> None:
    assert gpu_for_environ(None, environ) == gpu


def test_gpu_index_round_robin_and_none_without_gpus() -> None:
    assert [gpu_index(rank, 4) for rank in range(6)] == [0, 1, 2, 3, 0, 1]
    assert gpu_index(0, 0) is None


def test_choose_device_maps_the_rank_onto_visible_cuda_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from menndl.worker.numerics import choose_device, choose_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    assert choose_device("auto", 6) == torch.device("cuda", 2)
    assert current == [2]  # the rank's GPU becomes the current one (no stray context on GPU 0)
    assert choose_device("cpu", 6) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # e.g. a V100
    assert choose_precision("auto", torch.device("cuda", 0)) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto", 6) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        choose_device("cuda", 0)
