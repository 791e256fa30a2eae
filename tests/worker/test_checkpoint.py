"""Training checkpoints: exact round trips, exact continuation of a fit, clear errors, atomic writes, no pickle."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from menndl.worker.checkpoint import (
    CheckpointError,
    TrainingState,
    load_checkpoint,
    restore_optimizer,
    save_checkpoint,
)

OPTIMIZERS: dict[str, Callable[[Any], torch.optim.Optimizer]] = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "sgd-nesterov": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(2, 4, kernel_size=3, padding=1),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.Dropout(0.2),  # draws from the global generator: the rng state matters for continuation
        nn.Flatten(),
        nn.Linear(4 * 8, 3),
    )


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    """``steps`` steps on batches drawn from the global generator (randn, randint, randperm)."""
    model.train()
    for _ in range(steps):
        x = torch.randn(16, 2, 8)
        y = torch.randint(0, 3, (16,))
        order = torch.randperm(16)[:12]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x[order]), y[order]).backward()
        optimizer.step()


def _state(model: nn.Module, optimizer: torch.optim.Optimizer, **meta: Any) -> TrainingState:
    return TrainingState(
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        epochs=1,
        steps=3,
        seconds=0.125,
        rng=torch.get_rng_state(),
        meta=meta,
    )


def _assert_tensors_equal(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert isinstance(got, torch.Tensor), what
    assert got.dtype == want.dtype, what
    assert got.shape == want.shape, what
    assert torch.equal(got, want.to(got.device)), what


def _assert_same_optimizer_state(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["param_groups"] == want["param_groups"]  # tuples (Adam's betas) stay tuples
    assert set(got["state"]) == set(want["state"])
    for pid, entries in want["state"].items():
        assert set(got["state"][pid]) == set(entries)
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                _assert_tensors_equal(got["state"][pid][key], value, f"optimizer state {pid}/{key}")
            else:
                assert got["state"][pid][key] == value


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    model = _net(0)
    optimizer = OPTIMIZERS[name](model.parameters())
    _train(model, optimizer, 3)
    meta = {"id": 12, "genome_hash": "ab12", "rungs": [1, 3], "pair": (1, 2.5), "nested": {"none": None, "yes": True}}
    state = _state(model, optimizer, **meta)
    path = tmp_path / "12.ckpt.h5"
    save_checkpoint(path, state)
    back = load_checkpoint(path)

    assert list(back.model) == list(state.model)  # the state dict's order too
    for key, tensor in state.model.items():
        _assert_tensors_equal(back.model[key], tensor, key)
    assert back.model["1.num_batches_tracked"].shape == () and back.model["1.num_batches_tracked"].dtype == torch.int64
    assert back.model._metadata == state.model._metadata  # type: ignore[attr-defined]
    _assert_same_optimizer_state(back.optimizer, state.optimizer)
    assert (back.epochs, back.steps, back.seconds) == (1, 3, 0.125)
    assert back.meta == meta and isinstance(back.meta["pair"], tuple)
    assert back.rng is not None and state.rng is not None
    _assert_tensors_equal(back.rng, state.rng, "rng")

    fresh = _net(7)
    fresh.load_state_dict(back.model)  # strict: every parameter and buffer is there
    restore_optimizer(OPTIMIZERS[name](fresh.parameters()), back.optimizer)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_continuing_from_a_checkpoint_equals_training_straight_through(tmp_path: Path, name: str) -> None:
    straight = _net(0)
    straight_opt = OPTIMIZERS[name](straight.parameters())
    torch.manual_seed(1)
    _train(straight, straight_opt, 6)

    first = _net(0)
    first_opt = OPTIMIZERS[name](first.parameters())
    torch.manual_seed(1)
    _train(first, first_opt, 3)
    path = tmp_path / "rung1.h5"
    save_checkpoint(path, _state(first, first_opt))
    del first, first_opt

    torch.manual_seed(99)  # another worker: another init, another generator state
    torch.randn(100)
    resumed = _net(5)
    resumed_opt = OPTIMIZERS[name](resumed.parameters())
    state = load_checkpoint(path)
    resumed.load_state_dict(state.model)
    restore_optimizer(resumed_opt, state.optimizer)
    assert state.rng is not None
    torch.set_rng_state(state.rng)
    _train(resumed, resumed_opt, 3)

    for (key, got), want in zip(resumed.state_dict().items(), straight.state_dict().values()):
        _assert_tensors_equal(got, want, key)
    for key, value in straight_opt.state_dict()["state"].items():
        for entry, tensor in value.items():
            _assert_tensors_equal(resumed_opt.state_dict()["state"][key][entry], tensor, f"{key}/{entry}")

    # Without the generator state the batches differ: the comparison above is not vacuous.
    other = _net(5)
    other.load_state_dict(state.model)
    other_opt = OPTIMIZERS[name](other.parameters())
    restore_optimizer(other_opt, state.optimizer)
    _train(other, other_opt, 3)
    assert not torch.equal(other.state_dict()["5.weight"], straight.state_dict()["5.weight"])


def test_bfloat16_bool_half_scalars_and_empty_tensors_survive(tmp_path: Path) -> None:
    model = {
        "w.bf16": torch.randn(3, 4).to(torch.bfloat16),
        "scalar.bf16": torch.tensor(-1.5, dtype=torch.bfloat16),
        "count": torch.tensor(7, dtype=torch.int64),
        "half": torch.tensor(0.333, dtype=torch.float16),
        "mask": torch.tensor([True, False, True]),
        "flag": torch.tensor(True),
        "bytes": torch.arange(5, dtype=torch.uint8),
        "small": torch.tensor([-3, 4], dtype=torch.int8),
        "mid": torch.tensor([[-300]], dtype=torch.int16),
        "int32": torch.tensor(2**31 - 1, dtype=torch.int32),
        "double": torch.tensor([1e-300, np.pi], dtype=torch.float64),
        "empty": torch.zeros(0, 3),
        "strided": torch.arange(12.0).reshape(3, 4).t(),  # not contiguous
    }
    optimizer = {"state": {0: {"step": 4.0, "momentum_buffer": None}}, "param_groups": [{"lr": 0.1, "params": [0]}]}
    path = tmp_path / "dtypes.h5"
    save_checkpoint(path, TrainingState(model=model, optimizer=optimizer, epochs=0, steps=0, seconds=0.0))
    back = load_checkpoint(path, device=torch.device("cpu"))
    for key, tensor in model.items():
        _assert_tensors_equal(back.model[key], tensor, key)
    assert back.optimizer == optimizer  # python scalars in the per-parameter state stay python scalars
    assert back.rng is None and back.meta == {}
    with h5py.File(path, "r") as f:
        assert f["model/w.bf16"].dtype == np.uint16 and f["model/w.bf16"].attrs["torch_dtype"] == "bfloat16"
        assert f["model/count"].shape == ()


def test_a_model_in_bfloat16_loads_into_a_fresh_model(tmp_path: Path) -> None:
    model = _net(0).to(torch.bfloat16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "bf.h5", _state(model, optimizer))
    fresh = _net(3).to(torch.bfloat16)
    fresh.load_state_dict(load_checkpoint(tmp_path / "bf.h5").model)
    for (key, got), want in zip(fresh.state_dict().items(), model.state_dict().values()):
        _assert_tensors_equal(got, want, key)


def _checkpoint(path: Path) -> Path:
    model = _net(0)
    optimizer = torch.optim.Adam(model.parameters())
    _train(model, optimizer, 1)
    save_checkpoint(path, _state(model, optimizer, id=1))
    return path


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert isinstance(info.value, ValueError)
    return message


def test_a_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    assert "no such file" in _error(tmp_path / "missing.h5")


def test_a_folder_is_a_checkpoint_error(tmp_path: Path) -> None:
    assert "folder" in _error(tmp_path)


def test_a_file_that_is_not_hdf5_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("not an hdf5 file\nsecond line\n")
    assert "HDF5" in _error(path)


def test_a_truncated_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "cut.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _error(path)


def test_an_hdf5_file_without_the_format_attribute_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    assert "not a menndl checkpoint" in _error(path)


def test_another_version_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "v2.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["version"] = np.int64(2)
    assert "version 2" in _error(path)


@pytest.mark.parametrize("dtype", [np.complex64, np.uint32, np.uint16])
def test_a_tensor_of_another_dtype_is_a_checkpoint_error(tmp_path: Path, dtype: Any) -> None:
    path = _checkpoint(tmp_path / "odd.h5")
    with h5py.File(path, "r+") as f:
        f["model"].create_dataset("odd", data=np.ones(3, dtype=dtype))
    message = _error(path)
    assert "/model/odd" in message and np.dtype(dtype).name in message


def test_a_torch_dtype_attribute_that_does_not_match_the_storage_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "odd.h5")
    with h5py.File(path, "r+") as f:
        f["model/0.weight"].attrs["torch_dtype"] = "int64"
    assert "/model/0.weight" in _error(path)


def test_state_that_cannot_be_stored_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    empty: dict[str, Any] = {"state": {}, "param_groups": []}
    path = tmp_path / "bad.h5"
    bad_states = [
        TrainingState(model={"z": torch.zeros(2, dtype=torch.cfloat)}, optimizer=empty, epochs=0, steps=0, seconds=0),
        TrainingState(model={"z": np.zeros(2)}, optimizer=empty, epochs=0, steps=0, seconds=0),  # type: ignore[dict-item]
        TrainingState(model={}, optimizer=empty, epochs=0, steps=0, seconds=0, meta={"x": object()}),
        TrainingState(model={}, optimizer=empty, epochs=0, steps=0, seconds=0, meta={1: "int key"}),  # type: ignore[dict-item]
        TrainingState(
            model={},
            optimizer={"param_groups": [{"lr": torch.tensor(0.1), "params": []}], "state": {}},
            epochs=0,
            steps=0,
            seconds=0,
        ),
    ]
    for state in bad_states:
        with pytest.raises(CheckpointError) as info:
            save_checkpoint(path, state)
        assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_optimizer_groups_that_do_not_line_up_are_a_checkpoint_error(tmp_path: Path) -> None:
    model = _net(0)
    groups: list[dict[str, Any]] = [{"params": model[0].parameters()}, {"params": model[5].parameters(), "lr": 0.1}]
    two_groups = torch.optim.Adam(groups)
    _train(model, two_groups, 1)
    save_checkpoint(tmp_path / "two.h5", _state(model, two_groups))
    stored = load_checkpoint(tmp_path / "two.h5").optimizer

    groups_differ = r"checkpoint has 2 optimizer parameter group\(s\) but the optimizer has 1"
    with pytest.raises(CheckpointError, match=groups_differ) as info:
        restore_optimizer(torch.optim.Adam(_net(1).parameters()), stored)
    assert "\n" not in str(info.value)

    fewer = _net(1)
    with pytest.raises(CheckpointError, match="parameter group 1 has 4 parameter") as info:
        groups = [{"params": list(fewer[0].parameters())}, {"params": [*fewer[1].parameters(), *fewer[5].parameters()]}]
        restore_optimizer(torch.optim.Adam(groups), stored)
    assert "\n" not in str(info.value)

    wider = nn.Sequential(nn.Conv1d(2, 5, 3), nn.Linear(7, 3))  # the same counts, other shapes
    with pytest.raises(CheckpointError, match="has shape") as info:
        restore_optimizer(
            torch.optim.Adam([{"params": wider[0].parameters()}, {"params": wider[1].parameters()}]), stored
        )
    assert "\n" not in str(info.value)

    with pytest.raises(CheckpointError):
        restore_optimizer(torch.optim.Adam(model.parameters()), {"param_groups": []})


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp." in p.name)


def test_saving_leaves_no_temporary_and_replaces_an_older_checkpoint(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "deep" / "er" / "7.h5")  # the folders are made
    assert sorted(p.name for p in path.parent.iterdir()) == ["7.h5"]
    state = load_checkpoint(path)
    state.epochs, state.steps, state.meta = 3, 30, {"id": 7, "rung": 2}
    save_checkpoint(path, state)
    assert sorted(p.name for p in path.parent.iterdir()) == ["7.h5"]
    back = load_checkpoint(str(path))
    assert (back.epochs, back.steps, back.meta) == (3, 30, {"id": 7, "rung": 2})


@pytest.mark.parametrize("failure", ["dataset write", "fsync", "rename"])
def test_a_failed_save_keeps_the_old_checkpoint_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    path = _checkpoint(tmp_path / "3.h5")
    old = load_checkpoint(path)
    new = load_checkpoint(path)
    new.epochs = 9
    new.model = {key: torch.zeros_like(value) for key, value in new.model.items()}
    written_to: list[str] = []

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device (simulated)")

    if failure == "dataset write":
        real = h5py.Group.create_dataset

        def create_dataset(self: h5py.Group, *args: Any, **kwargs: Any) -> h5py.Dataset:
            written_to.append(self.file.filename)
            if len(written_to) == 3:
                fail()
            return real(self, *args, **kwargs)

        monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    elif failure == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(os, "replace", fail)

    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, new)
    monkeypatch.undo()

    if written_to:
        assert set(written_to) == {str(tmp_path / f"3.h5.tmp.{socket.gethostname()}.{os.getpid()}")}
    assert _leftovers(tmp_path) == []
    back = load_checkpoint(path)
    assert back.epochs == old.epochs
    for key, tensor in old.model.items():
        _assert_tensors_equal(back.model[key], tensor, key)


def test_the_file_is_plain_numeric_data_without_pickle(tmp_path: Path) -> None:
    model = _net(0)
    optimizer = torch.optim.AdamW(model.parameters())
    _train(model, optimizer, 2)
    state = _state(model, optimizer, id=4, genome_hash="ff00")
    state.model["half"] = torch.ones(2, dtype=torch.bfloat16)
    state.model["mask"] = torch.ones(2, dtype=torch.bool)
    path = tmp_path / "4.h5"
    save_checkpoint(path, state)

    datasets: list[str] = []
    attributes: list[Any] = []

    def visit(name: str, item: Any) -> None:
        attributes.extend(item.attrs.values())
        if isinstance(item, h5py.Dataset):
            datasets.append(name)
            assert item.dtype.kind in "iuf", name  # numbers only: no object, opaque, vlen, compound or enum
            assert h5py.check_vlen_dtype(item.dtype) is None and h5py.check_opaque_dtype(item.dtype) is False, name
            assert isinstance(item.id.get_type(), (h5py.h5t.TypeIntegerID, h5py.h5t.TypeFloatID)), name

    with h5py.File(path, "r") as f:
        attributes.extend(f.attrs.values())
        f.visititems(visit)
        assert f.attrs["format"] == "menndl-checkpoint" and f.attrs["version"] == 1
    assert "rng" in datasets and "model/0.weight" in datasets and "optimizer/state/0/exp_avg" in datasets
    for value in attributes:  # text (JSON) and numbers
        assert isinstance(value, (str, np.integer, np.floating)), type(value)
    assert b"torch._utils" not in path.read_bytes() and b"cpickle" not in path.read_bytes().lower()
