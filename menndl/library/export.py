"""Export a library architecture as torch.export (``.pt2``), ONNX, a state dict, a self-contained Python file
or (deprecated) TorchScript.

``pt2``, ONNX, Python and TorchScript exports take samples as stored in the data file: the search's per-channel
standardisation (recorded in the library) is part of them, and their batch size is free.  A state dict holds
the network's weights only.  ``pt2`` is an ExportedProgram (`torch.export.save`): ``torch.export.load(PATH)
.module()`` runs it with torch alone; ONNX comes from the same graph (the dynamo exporter).

Torch is imported inside the functions (the CLI builds its parser without torch).  Weights
come from ``--weights`` (a file written by ``menndl train``), else from the library when it kept
them, else the model is freshly initialised (with the candidate's training seed) and the caller
is told so.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

from menndl.errors import UserError
from menndl.library.reader import Library

FORMATS = ("pt2", "onnx", "state-dict", "python", "torchscript")
DEPRECATED = {"torchscript": "TorchScript is deprecated in torch 2.13 (torch.jit); --format pt2 is its successor"}


def spec_of(lib: Library) -> Any:
    """The library's InputSpec (input shape, outputs per sample and task, from its root attributes)."""
    from menndl.genome import InputSpec

    shape, classes = lib.attrs.get("input_shape"), lib.attrs.get("num_classes")
    if shape is None or classes is None:
        raise UserError(f"library {lib.path} does not record input_shape/num_classes; cannot build its models")
    try:
        return InputSpec(tuple(json.loads(str(shape))), int(classes), task=str(lib.attrs.get("task", "classification")))
    except (ValueError, TypeError) as exc:  # a damaged or hand-edited attribute: the file's fault, in one line
        reason = " ".join(str(exc).split())[:200]
        raise UserError(
            f"library {lib.path}: input_shape {str(shape)[:60]!r} / num_classes {str(classes)[:20]!r} are not a valid "
            f"input description ({reason})"
        ) from None


def load_weights_file(path: str | Path) -> dict[str, Any]:
    """A state dict saved by ``menndl train`` (tensors only; ``torch.load(weights_only=True)``)."""
    import torch

    p = Path(path)
    if not p.exists():
        raise UserError(f"--weights: {p} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise UserError(
            f"--weights: {p} is not a weights file saved by menndl train ({str(exc).splitlines()[0]})"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"--weights: {p} does not hold a state dict")
    return state


def build(lib: Library, eval_id: int, weights: str | Path | None = None) -> tuple[Any, dict[str, Any], str]:
    """The decoded model of ``eval_id`` with its weights: (model in eval mode, genome dict, where weights came from)."""
    import torch

    from menndl.genome.decode import build_model
    from menndl.library.stored import stored_genome

    row = lib.record(eval_id)
    if not row["genome"]:
        raise UserError(f"library {lib.path}: evaluation {eval_id} has no genome")
    spec = spec_of(lib)
    genome = stored_genome(lib.path, row, spec)
    torch.manual_seed(max(int(row["seed"]), 0))
    model = build_model(genome, spec)
    origin = "fresh initial weights (the library kept none for this id; run `menndl train` first for trained ones)"
    state: dict[str, Any] | None = None
    if weights is not None:
        state, origin = load_weights_file(weights), f"weights from {weights}"
    else:
        arrays = lib.weights(eval_id)
        if arrays is not None:
            state = {name: torch.from_numpy(array.copy()) for name, array in arrays.items()}
            origin = "trained weights kept in the library"
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise UserError(f"weights do not fit evaluation {eval_id}: {str(exc).splitlines()[0]}") from None
    return model.eval(), genome.to_dict(), origin


def input_stats(lib: Library) -> dict[str, list[float]] | None:
    """The per-channel ``mean`` and ``std`` the search standardised its inputs with (None for older libraries)."""
    text = lib.attrs.get("data_stats")
    if not text:
        return None
    try:
        table = json.loads(str(text))
        return {"mean": [float(v) for v in table["mean"]], "std": [float(v) for v in table["std"]]}
    except (ValueError, KeyError, TypeError):
        raise UserError(f"library {lib.path}: data_stats {str(text)[:60]!r} is not a mean/std table") from None


def standardised(lib: Library, model: Any) -> Any:
    """``model`` behind the search's input standardisation, so the export takes samples as stored."""
    from menndl.genome.decode import Standardised

    stats = input_stats(lib)
    if stats is None:
        return model
    return Standardised(model, stats["mean"], stats["std"], len(spec_of(lib).shape) - 1).eval()


def example_input(lib: Library, batch: int = 2) -> Any:
    """A random input batch of the library's input shape."""
    import torch

    return torch.randn(batch, *spec_of(lib).shape, generator=torch.Generator().manual_seed(0))


def export(lib: Library, eval_id: int, fmt: str, output: str | Path, weights: str | Path | None = None) -> str:
    """Write ``eval_id`` in format ``fmt`` to ``output``; returns where the weights came from."""
    import torch

    network, genome_dict, origin = build(lib, eval_id, weights)
    model = standardised(lib, network)  # exported models take samples as stored in the data file
    out = Path(output)
    if not out.parent.is_dir():
        raise UserError(f"-o: folder {out.parent} does not exist")
    x = example_input(lib)
    if fmt == "pt2":
        torch.export.save(exported_program(model, x), str(out))
    elif fmt == "torchscript":
        # Traced, not scripted: a decoded network is static (its skips and layers are fixed by the genome),
        # and tracing keeps the decoder free of TorchScript's typing rules. The batch size stays free.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # said once, in one line, by the CLI (DEPRECATED)
            traced = torch.jit.trace(model, x, check_trace=False)
        torch.jit.save(traced, str(out))
    elif fmt == "onnx":
        torch.onnx.export(
            exported_program(model, x),
            (x,),
            str(out),
            input_names=["input"],
            output_names=["logits"],
            dynamo=True,
            verbose=False,
            external_data=False,
        )
    elif fmt == "state-dict":  # the network's own weights, loadable by `menndl.genome.decode.build_model`
        torch.save({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, out)
    elif fmt == "python":
        out.write_text(python_source(lib, eval_id, genome_dict, network))
    else:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return origin


def exported_program(model: Any, example: Any) -> Any:
    """``model`` captured by `torch.export.export` with a free batch dimension (named ``batch``, from 1 up)."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def python_source(lib: Library, eval_id: int, genome_dict: dict[str, Any], model: Any) -> str:
    """A self-contained Python module: the decoder's source, the genome, ``build()``, and the weights inline.

    ``menndl.genome.decode`` imports only torch and the standard library by
    design, so its source runs without menndl installed.
    """
    import base64
    import io
    import pprint

    import torch

    from menndl.genome import decode

    spec = spec_of(lib)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buffer)
    blob = base64.b64encode(buffer.getvalue()).decode()
    lines = [blob[i : i + 100] for i in range(0, len(blob), 100)]
    tail = f'''

# ---- exported by menndl from {json.dumps(lib.path.name)}, evaluation {eval_id} ----
GENOME = {pprint.pformat(genome_dict, width=100)}
INPUT_SHAPE = {tuple(spec.shape)!r}
NUM_CLASSES = {spec.num_classes}
TASK = {spec.task!r}
INPUT_STATS = {input_stats(lib)!r}  # the search's per-channel standardisation (None: inputs taken as they are)
_WEIGHTS_B64 = (
{chr(10).join(f'    "{line}"' for line in lines)}
)


def build(load_weights: bool = True):
    """The network of evaluation {eval_id}, with its exported weights; input (batch, *INPUT_SHAPE)."""
    import base64 as _b64
    import io as _io

    import torch as _torch

    model = build_model_from_dict(GENOME, INPUT_SHAPE, NUM_CLASSES, TASK)
    if load_weights:
        state = _torch.load(_io.BytesIO(_b64.b64decode("".join(_WEIGHTS_B64))), weights_only=True)
        model.load_state_dict(state)
    if INPUT_STATS is not None:  # takes samples as stored, standardised as in the search
        model = Standardised(model, INPUT_STATS["mean"], INPUT_STATS["std"], len(INPUT_SHAPE) - 1)
    return model.eval()
'''
    return inspect.getsource(decode).rstrip() + "\n" + tail
