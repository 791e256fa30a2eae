"""A training checkpoint of one candidate, so that another worker can continue its fit exactly where it stopped.

Multi-fidelity rungs train a candidate for a few epochs, promote it, and later continue it (often on another
worker) from a checkpoint that lies beside the library on a shared filesystem.  The checkpoint is data, never
code: an HDF5 file of numeric datasets and JSON text in attributes, with no pickle anywhere, so reading one
cannot run anything.

Layout of the file (every group keeps the order its members were written in)::

    /                        attrs: format="menndl-checkpoint", version=1 (int64), epochs (int64), steps (int64),
                                    seconds (float64), meta (JSON text), torch_version (text, informational)
    /model/<name>            one dataset per ``model.state_dict()`` entry, parameters and buffers alike (the names
                             keep their dots: "features.0.bn.running_mean");
                             group attr: metadata (JSON: the state dict's ``_metadata``, module versions)
    /optimizer               attrs: param_groups (JSON text of ``optimizer.state_dict()["param_groups"]``)
    /optimizer/state/<i>/<key>
                             the tensor entries of parameter ``i``'s state (``step``, ``exp_avg``, ``exp_avg_sq``,
                             ``momentum_buffer``, ...); group attr: scalars (JSON: its entries that are not tensors,
                             such as a Python float ``step`` or a ``momentum_buffer`` of None)
    /rng                     uint8 dataset, ``torch.get_rng_state()`` at the end of the fit (absent: no state)

Every tensor dataset has an attribute ``torch_dtype`` ("float32", "int64", ...) and the tensor's shape (shape
``()`` stays a scalar dataset).  Tensors of dtype float16, bfloat16, float32, float64, int8, int16, int32, int64,
uint8 and bool are stored; bfloat16 (which numpy lacks) as its bits in a uint16 dataset, bool as a uint8 dataset
of 0 and 1, each restored to the dtype its attribute names.  A dataset without the attribute reads as its numpy
dtype (h5py's own bool datasets included); a uint16 one needs ``torch_dtype="bfloat16"``.

JSON in the attributes is strict: dictionaries with string keys, lists, strings, ints, floats (NaN and infinities
included), bools and None.  A tuple (Adam's ``betas``) is written as ``{"__tuple__": [...]}`` and read back as a
tuple; numpy scalars are written, and come back, as Python numbers.

A checkpoint is written to ``<name>.tmp.<host>.<pid>`` in the same folder, ``fsync``'d and renamed onto its name
(then the folder is ``fsync``'d): a reader sees the old checkpoint or the new one, never half of one.  Both
writing and reading open the file without HDF5 file locking, which some shared filesystems refuse; nobody else
ever opens the temporary name, and the file under the final name is only ever replaced whole.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from menndl.library.recover import fsync_path

__all__ = ["CheckpointError", "TrainingState", "load_checkpoint", "restore_optimizer", "save_checkpoint"]

FORMAT = "menndl-checkpoint"
VERSION = 1

# The dtypes a checkpoint holds: torch dtype -> (its name in the ``torch_dtype`` attribute, the numpy storage dtype).
_DTYPES: dict[torch.dtype, tuple[str, np.dtype[Any]]] = {
    torch.float16: ("float16", np.dtype(np.float16)),
    torch.bfloat16: ("bfloat16", np.dtype(np.uint16)),
    torch.float32: ("float32", np.dtype(np.float32)),
    torch.float64: ("float64", np.dtype(np.float64)),
    torch.int8: ("int8", np.dtype(np.int8)),
    torch.int16: ("int16", np.dtype(np.int16)),
    torch.int32: ("int32", np.dtype(np.int32)),
    torch.int64: ("int64", np.dtype(np.int64)),
    torch.uint8: ("uint8", np.dtype(np.uint8)),
    torch.bool: ("bool", np.dtype(np.uint8)),
}
_BY_NAME: dict[str, tuple[torch.dtype, np.dtype[Any]]] = {name: (dt, st) for dt, (name, st) in _DTYPES.items()}
_ALLOWED = "/".join(_BY_NAME)

# Per-parameter state entries that have their parameter's shape (checked by `restore_optimizer`).
_PARAM_SHAPED = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

_TUPLE = "__tuple__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read, or that does not fit the optimizer; the message is one line."""


@dataclass
class TrainingState:
    """Everything needed to continue a fit where it stopped.

    Attributes:
        model: ``model.state_dict()``: parameters and buffers (batch-norm running statistics, the int64
            ``num_batches_tracked``).
        optimizer: ``optimizer.state_dict()`` of ``torch.optim.SGD``, ``Adam`` or ``AdamW`` (or any optimizer
            whose per-parameter state holds tensors and JSON-able scalars).
        epochs: Epochs completed.
        steps: Optimizer steps done.
        seconds: Training seconds spent so far.
        rng: ``torch.get_rng_state()`` (a uint8 CPU tensor) at the end of the fit, or None.
        meta: Small JSON-able facts, e.g. ``{"id": 12, "genome_hash": "..."}``.
    """

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    epochs: int
    steps: int
    seconds: float
    rng: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | os.PathLike[str], state: TrainingState) -> None:
    """Write ``state`` to ``path`` atomically, creating the parent folder if it is missing.

    The file is written as ``<name>.tmp.<host>.<pid>`` in the same folder, ``fsync``'d, renamed onto ``path``
    with ``os.replace`` and the folder ``fsync``'d.  A crash or an error never leaves a half-written file under
    ``path`` (an older checkpoint there stays whole), and the temporary file is removed on an error.

    Args:
        path: Where the checkpoint goes (an existing checkpoint there is replaced).
        state: What to store.

    Raises:
        CheckpointError: Something in ``state`` cannot be stored: a tensor of another dtype (complex, float8, ...)
            or layout (sparse), a state-dict entry that is not a tensor, or ``meta``, a parameter group or a
            per-parameter scalar that is not JSON-able.
        OSError: The folder or the file cannot be written (disk full, permissions).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}.tmp.{socket.gethostname()}.{os.getpid()}")
    try:
        with h5py.File(tmp, "w", locking=False, track_order=True) as f:
            _write(f, state)
        fsync_path(tmp)
        os.replace(tmp, p)
        try:
            fsync_path(p.parent)
        except OSError as exc:  # a filesystem that cannot fsync a folder: the rename is done all the same
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
                raise
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> TrainingState:
    """Read a checkpoint written by `save_checkpoint`.

    Model tensors are put on ``device``, each with its stored dtype and shape.  The optimizer's state tensors
    stay on the CPU, where ``torch.optim.Optimizer.load_state_dict`` (see `restore_optimizer`) moves each to its
    parameter's device (and keeps ``step`` on the CPU unless the optimizer is capturable or fused), as it does
    for a state dict of its own.  ``rng`` is always a CPU uint8 tensor, as ``torch.set_rng_state`` wants it.

    Args:
        path: The checkpoint file.
        device: Where the model tensors go.

    Returns:
        The stored state; ``model`` is an ``OrderedDict`` in the stored order (with the stored ``_metadata``).

    Raises:
        CheckpointError: The file is missing or unreadable, is not a checkpoint (no ``format="menndl-checkpoint"``
            attribute, or a version other than 1), lacks part of the layout, or holds a tensor whose stored dtype
            is not one of float16/bfloat16/float32/float64/int8/int16/int32/int64/uint8/bool.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a folder, not a file")
    try:
        f = _open_read(p)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {p} cannot be read as an HDF5 file: {_one_line(exc)}") from None
    try:
        with f:
            return _read(p, f, torch.device(device))
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {p} is damaged: {_one_line(exc)}") from None


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a stored optimizer state (`TrainingState.optimizer`) into ``optimizer``.

    Checks first that the parameter groups line up: the same number of groups, the same number of parameters
    in each, and the per-parameter moment and momentum buffers (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``,
    ``momentum_buffer``) shaped like their parameters; then ``optimizer.load_state_dict(state)``.

    Args:
        optimizer: A fresh optimizer over the model the checkpoint was loaded into.
        state: ``TrainingState.optimizer`` of a loaded checkpoint (or any ``optimizer.state_dict()``).

    Raises:
        CheckpointError: The groups do not line up, or ``load_state_dict`` refused the state.
    """
    if not isinstance(state, Mapping) or "param_groups" not in state or "state" not in state:
        raise CheckpointError("optimizer state is not an optimizer state dict (no 'state' and 'param_groups')")
    saved = state["param_groups"]
    groups = optimizer.param_groups
    if len(saved) != len(groups):
        raise CheckpointError(
            f"the checkpoint has {len(saved)} optimizer parameter group(s) but the optimizer has {len(groups)}"
        )
    by_id: dict[Any, torch.Tensor] = {}
    for index, (ours, theirs) in enumerate(zip(groups, saved)):
        if len(ours["params"]) != len(theirs["params"]):
            raise CheckpointError(
                f"optimizer parameter group {index} has {len(ours['params'])} parameter(s) "
                f"but the checkpoint's has {len(theirs['params'])}"
            )
        by_id.update(zip(theirs["params"], ours["params"]))
    for pid, entries in state["state"].items():
        param = by_id.get(pid)
        if param is None:
            raise CheckpointError(f"optimizer state names parameter {pid!r}, which no parameter group holds")
        for key in _PARAM_SHAPED:
            value = entries.get(key)
            if isinstance(value, torch.Tensor) and value.shape != param.shape:
                raise CheckpointError(
                    f"optimizer state {key!r} of parameter {pid} has shape {tuple(value.shape)} "
                    f"but the parameter has shape {tuple(param.shape)}"
                )
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"optimizer refused the checkpoint's state: {_one_line(exc)}") from None


# --- writing ---------------------------------------------------------------------------------------------------


def _write(f: h5py.File, state: TrainingState) -> None:
    """Write the whole layout of the module docstring into the open file ``f``."""
    f.attrs["format"] = FORMAT
    f.attrs["version"] = np.int64(VERSION)
    f.attrs["epochs"] = np.int64(state.epochs)
    f.attrs["steps"] = np.int64(state.steps)
    f.attrs["seconds"] = np.float64(state.seconds)
    f.attrs["meta"] = _dumps(state.meta, "meta")
    f.attrs["torch_version"] = str(torch.__version__)

    model = f.create_group("model", track_order=True)
    metadata = getattr(state.model, "_metadata", None)
    if metadata is not None:
        try:
            model.attrs["metadata"] = _dumps(dict(metadata), "model state dict _metadata")
        except CheckpointError:
            pass  # module versions are a courtesy to load_state_dict; a state dict without them loads too
    for name, tensor in state.model.items():
        _write_tensor(model, name, tensor, f"model entry {name!r}")

    opt = f.create_group("optimizer", track_order=True)
    if not isinstance(state.optimizer, Mapping) or set(state.optimizer) != {"state", "param_groups"}:
        keys = sorted(state.optimizer) if isinstance(state.optimizer, Mapping) else type(state.optimizer).__name__
        raise CheckpointError(f"optimizer state must have exactly the keys 'state' and 'param_groups', not {keys}")
    opt.attrs["param_groups"] = _dumps(list(state.optimizer["param_groups"]), "optimizer param_groups")
    per_param = opt.create_group("state", track_order=True)
    for pid, entries in state.optimizer["state"].items():
        if isinstance(pid, bool) or not isinstance(pid, (int, np.integer)):
            raise CheckpointError(f"optimizer state key {pid!r} is not a parameter index")
        group = per_param.create_group(str(int(pid)), track_order=True)
        scalars: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                _write_tensor(group, key, value, f"optimizer state {key!r} of parameter {pid}")
            else:
                scalars[key] = value
        group.attrs["scalars"] = _dumps(scalars, f"optimizer state of parameter {pid}")

    if state.rng is not None:
        if not isinstance(state.rng, torch.Tensor) or state.rng.dtype != torch.uint8:
            raise CheckpointError("rng must be a uint8 tensor (torch.get_rng_state())")
        f.create_dataset("rng", data=state.rng.detach().cpu().contiguous().numpy())


def _write_tensor(group: h5py.Group, name: str, tensor: Any, what: str) -> None:
    """Store one tensor as the dataset ``group[name]`` with its ``torch_dtype`` attribute."""
    if not isinstance(name, str) or not name or "/" in name or name == ".":
        raise CheckpointError(f"{what}: the name must be a non-empty string without '/'")
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{what} is a {type(tensor).__name__}, not a tensor")
    if tensor.layout != torch.strided:
        raise CheckpointError(f"{what} has layout {tensor.layout}; only dense tensors are stored")
    known = _DTYPES.get(tensor.dtype)
    if known is None:
        raise CheckpointError(f"{what} has dtype {tensor.dtype}; a checkpoint holds {_ALLOWED}")
    dtype_name, _ = known
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        array = t.view(torch.int16).numpy().view(np.uint16)
    elif t.dtype == torch.bool:
        array = t.to(torch.uint8).numpy()
    else:
        array = t.numpy()
    dataset = group.create_dataset(name, data=array)
    dataset.attrs["torch_dtype"] = dtype_name


def _dumps(value: Any, what: str) -> str:
    """Strict JSON text of ``value`` (tuples tagged), or a `CheckpointError` naming what cannot be stored."""
    return json.dumps(_plain(value, what))


def _plain(value: Any, what: str) -> Any:
    """``value`` as JSON-ready Python data; tuples become ``{"__tuple__": [...]}``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic) and isinstance(value.item(), (bool, int, float)):
        return value.item()
    if isinstance(value, tuple):
        return {_TUPLE: [_plain(item, what) for item in value]}
    if isinstance(value, list):
        return [_plain(item, what) for item in value]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or key == _TUPLE:
                raise CheckpointError(f"{what}: key {key!r} cannot be stored (keys must be strings)")
            out[key] = _plain(item, f"{what}[{key!r}]")
        return out
    raise CheckpointError(f"{what}: a {type(value).__name__} cannot be stored as JSON")


# --- reading ---------------------------------------------------------------------------------------------------


def _open_read(p: Path) -> h5py.File:
    """Open ``p`` read-only without file locking, or with it where this process already holds it open so."""
    try:
        return h5py.File(p, "r", locking=False)
    except OSError as first:
        try:
            return h5py.File(p, "r")
        except OSError:
            raise first from None


def _read(p: Path, f: h5py.File, device: torch.device) -> TrainingState:
    """Check the format, then read every part of the layout back."""
    fmt = _text(f.attrs.get("format"))
    if fmt != FORMAT:
        found = "no format attribute" if fmt is None else f"format {fmt!r}"
        raise CheckpointError(f"{p} is not a menndl checkpoint ({found}, expected format={FORMAT!r})")
    version = f.attrs.get("version")
    if version is None or int(version) != VERSION:
        raise CheckpointError(f"checkpoint {p} has version {version}; this menndl reads version {VERSION}")
    for key in ("epochs", "steps", "seconds", "meta"):
        if key not in f.attrs:
            raise CheckpointError(f"checkpoint {p} lacks the root attribute {key!r}")
    for name in ("model", "optimizer", "optimizer/state"):
        if not isinstance(f.get(name), h5py.Group):
            raise CheckpointError(f"checkpoint {p} lacks the group /{name}")

    model_group = f["model"]
    model: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, item in model_group.items():
        model[name] = _read_tensor(p, item, device)
    if "metadata" in model_group.attrs:
        model._metadata = _loads(p, model_group.attrs["metadata"], "/model metadata")  # type: ignore[attr-defined]

    opt_group = f["optimizer"]
    if "param_groups" not in opt_group.attrs:
        raise CheckpointError(f"checkpoint {p} lacks the attribute param_groups of /optimizer")
    per_param: dict[int, dict[str, Any]] = {}
    for key, group in opt_group["state"].items():
        if not isinstance(group, h5py.Group) or not key.isdigit():
            raise CheckpointError(f"checkpoint {p}: /optimizer/state/{key} is not a parameter's state")
        entries: dict[str, Any] = {}
        for name, item in group.items():
            entries[name] = _read_tensor(p, item, torch.device("cpu"))
        if "scalars" in group.attrs:
            entries.update(_loads(p, group.attrs["scalars"], f"/optimizer/state/{key} scalars"))
        per_param[int(key)] = entries
    optimizer = {"state": per_param, "param_groups": _loads(p, opt_group.attrs["param_groups"], "param_groups")}

    rng = None
    if "rng" in f:
        rng = _read_tensor(p, f["rng"], torch.device("cpu"))
        if rng.dtype != torch.uint8:
            raise CheckpointError(f"checkpoint {p}: /rng has dtype {rng.dtype}, expected uint8")

    return TrainingState(
        model=model,
        optimizer=optimizer,
        epochs=int(f.attrs["epochs"]),
        steps=int(f.attrs["steps"]),
        seconds=float(f.attrs["seconds"]),
        rng=rng,
        meta=_loads(p, f.attrs["meta"], "meta"),
    )


def _read_tensor(p: Path, item: Any, device: torch.device) -> torch.Tensor:
    """The tensor stored in dataset ``item``, with the dtype its ``torch_dtype`` attribute (or storage) names."""
    if not isinstance(item, h5py.Dataset) or item.shape is None:
        raise CheckpointError(f"checkpoint {p}: {getattr(item, 'name', item)} is not a tensor dataset")
    stored = _text(item.attrs.get("torch_dtype"))
    storage = item.dtype
    name = stored if stored is not None else storage.name
    known = _BY_NAME.get(name) if storage.kind in "biuf" else None
    native = storage.newbyteorder("=")
    if known is None or (native != known[1] and not (name == "bool" and native == np.dtype(np.bool_))):
        shown = name if stored is not None else str(storage)
        raise CheckpointError(
            f"checkpoint {p}: {item.name} has dtype {shown} (stored as {storage}); a checkpoint holds {_ALLOWED}"
        )
    dtype, _ = known
    array = np.asarray(item[()])
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if dtype == torch.bfloat16:
        tensor = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    elif dtype == torch.bool:
        tensor = torch.from_numpy(array).to(torch.bool)
    else:
        tensor = torch.from_numpy(array)
    return tensor.to(device)


def _loads(p: Path, text: Any, what: str) -> Any:
    """Parse a JSON attribute written by `_dumps` (tuples restored)."""
    try:
        return json.loads(_text(text) or "", object_hook=_untag)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {p}: {what} is not JSON ({exc})") from None


def _untag(obj: dict[str, Any]) -> Any:
    """``{"__tuple__": [...]}`` back to a tuple."""
    if len(obj) == 1 and _TUPLE in obj:
        return tuple(obj[_TUPLE])
    return obj


def _text(value: Any) -> str | None:
    """An attribute as text (h5py gives str, or bytes for fixed-length strings), or None when absent."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
