"""``menndl train LIB ID [--epochs N]``: train one chosen architecture intensively on the full training data.

The job stored in the library says which data and numerics; training uses the training and validation splits
together and runs the search's own loop (`Trainer.fit`): the genome's optimizer, batch size and learning-rate
schedule (stretched over all the epochs of this training), the job's ``training.precision`` and
``training.channels_last``, the same checks for a non-finite loss.  It then reports the accuracy on the held-out
test split (measured as the search measures validation accuracy, in that precision) and saves the weights as a
plain state dict (tensors only: ``torch.load(path, weights_only=True)``), ready for ``menndl export --weights``.
A training that diverges or runs out of memory is one line and exit status 1, and writes no weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from menndl.errors import StorageError, UserError

HELP = "train a chosen architecture on the job's full training data; report test accuracy, save weights"


class TrainingFailed(UserError):
    """The retraining diverged or ran out of memory: one line and exit status 1 (the input was fine)."""

    exit_status = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl train``."""
    parser.add_argument("library", metavar="LIB", help="library file")
    parser.add_argument("id", type=int, metavar="ID", help="evaluation id")
    parser.add_argument("--epochs", type=int, metavar="N", help="epochs (default: 4 x the job's training.epochs)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="stop training after the step that passes S seconds (default: no time limit)",
    )
    parser.add_argument("-o", "--output", metavar="PATH", help="weights file (default: LIB-stem-ID.pt beside LIB)")
    parser.add_argument(
        "--seed", type=int, metavar="S", help="random seed of the weights and batches (default: the evaluation's)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    """Train, test, save.

    Raises:
        UserError: a bad argument, library or dataset (exit status 2).
        TrainingFailed: the training loss became non-finite or the device ran out of memory (exit status 1).
        StorageError: the weights file cannot be written (exit status 1).
    """
    import dataclasses

    import torch

    from menndl.commands.common import load_job_data
    from menndl.job import parse_job
    from menndl.library import Library
    from menndl.library.export import spec_of
    from menndl.library.query import library_score
    from menndl.library.stored import stored_genome
    from menndl.worker.faults import status_of
    from menndl.worker.trainer import Trainer, choose_device

    with Library.open(args.library) as lib:
        row = lib.record(args.id)
        spec = spec_of(lib)
        score = library_score(lib)
        job = parse_job(lib.job_text, path=str(lib.attrs.get("job_path", "job.toml")))
        fingerprint = str(lib.attrs.get("dataset_fingerprint", ""))
        lib_attrs = dict(lib.attrs)
    if not row["genome"]:
        raise UserError(f"library {args.library}: evaluation {args.id} has no genome")
    epochs = args.epochs if args.epochs is not None else 4 * job.training.epochs
    if epochs < 1:
        raise UserError(f"--epochs: expected an integer >= 1, got {epochs}")
    max_seconds = math.inf if args.max_seconds is None else args.max_seconds
    if not max_seconds > 0:
        raise UserError(f"--max-seconds: expected seconds > 0, got {args.max_seconds}")
    seed = args.seed if args.seed is not None else max(int(row["seed"]), 0)
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed: expected an integer in [0, 2**63 - 1], got {seed}")
    output = (
        Path(args.output) if args.output else Path(args.library).with_name(f"{Path(args.library).stem}-{args.id}.pt")
    )
    if not output.parent.is_dir():
        raise UserError(f"-o: folder {output.parent} does not exist")
    data = load_job_data(job)
    stats, placement = _data_as_searched(data, job, lib_attrs, fingerprint)
    genome = stored_genome(args.library, row, spec)
    device = choose_device(args.device, 0)
    # The job's precision, memory format and augmentation, and the search's statistics; --device replaces
    # its training.device.
    trainer = Trainer(
        data,
        dataclasses.replace(job.training, device=args.device),
        device,
        retrain=True,
        stats=stats,
        placement=placement,
        cache_bytes=job.data.cache_bytes,
        augment=job.augment,
    )

    torch.manual_seed(seed)  # the initial weights, then the batches
    try:
        model = trainer.new_model(genome)
        progress = trainer.fit(model, genome.train, epochs=epochs, max_seconds=max_seconds)
        test_metrics, _loss, _latency = trainer.validate(model)
        state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    except Exception as exc:
        status = status_of(exc)
        if status not in ("nan", "oom"):
            raise
        what = "diverged" if status == "nan" else f"ran out of memory on {trainer.device_name}"
        reason = " ".join(str(exc).split())[:300]
        raise TrainingFailed(
            f"train: evaluation {args.id} of {args.library}: training {what} ({reason}); no weights written"
        ) from None
    broken = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if broken:
        raise TrainingFailed(
            f"train: evaluation {args.id} of {args.library}: training diverged (non-finite weights in "
            f"{', '.join(broken[:3])}); no weights written"
        )
    save_weights(state, output)
    resident = trainer.data
    trainer.close()
    data.close()
    result = {
        "id": args.id,
        "epochs": progress.epochs,
        "seed": seed,
        "params": sum(p.numel() for p in model.parameters()),
        "train_samples": resident.n_train,
        "test_samples": resident.n_held,
        **{f"test_{name}": None if math.isnan(value) else value for name, value in test_metrics.items()},
        f"search_validation_{score}": row[score],
        "seconds": round(progress.train_seconds, 2),
        "precision": trainer.precision,
        "weights": str(output),
        "input_mean": list(trainer.stats.mean),
        "input_std": list(trainer.stats.std),
    }
    if spec.task == "regression":  # the network predicts standardised targets: these undo it
        result["target_mean"], result["target_std"] = (list(v) for v in data.target_stats())
    if args.json:
        print(json.dumps(result))
    else:
        shown = ", ".join(f"{name} {'-' if math.isnan(v) else f'{v:.4g}'}" for name, v in test_metrics.items())
        print(
            f"evaluation {args.id}: {progress.epochs} epochs on {result['train_samples']} samples in "
            f"{progress.train_seconds:.1f}s; test {shown} on {result['test_samples']} samples "
            f"(search validation {score} {row[score]:.4f})"
        )
        print(
            f"weights: {output}  (inputs standardised per channel: "
            f"mean {result['input_mean']}, std {result['input_std']})"
        )
        if "target_mean" in result:
            print(f"outputs: standardised targets; prediction * {result['target_std']} + {result['target_mean']}")
    return 0


def _data_as_searched(data: Any, job: Any, attrs: dict[str, Any], fingerprint: str) -> tuple[Any, str]:
    """The search's per-channel statistics and a placement for one process, after checking the data is the same.

    A library that recorded the data's identity and statistics is checked cheaply (no pass over the data);
    an older one by the full fingerprint, which also gives the statistics.

    Raises:
        UserError: the data differs from the search's.
    """
    import json

    from menndl.data.placement import choose_placement
    from menndl.data.previous_fingerprint import previous_release_fingerprint
    from menndl.data.scan import ChannelStats, scan_dataset

    identity, recorded = str(attrs.get("dataset_identity", "")), str(attrs.get("data_stats", ""))
    if identity and recorded:
        if data.identity() != identity:
            raise UserError(f"the data of job {job.path} changed since the search (dataset identity differs)")
        table = json.loads(recorded)
        stats = ChannelStats(tuple(table["mean"]), tuple(table["std"]))
    else:
        scan = scan_dataset(data)
        if fingerprint and fingerprint not in (scan.fingerprint, previous_release_fingerprint(data)):
            raise UserError(f"the data of job {job.path} changed since the search (dataset fingerprint differs)")
        stats = scan.stats
    needed = data.split_bytes("train", "val", "test")
    choice = choose_placement("auto" if job.data.placement == "node" else job.data.placement,
                              search_bytes=needed, workers_per_node=1)  # fmt: skip
    return stats, "device" if choice.name == "node" else choice.name


def save_weights(state: dict[str, Any], output: Path) -> None:
    """Write a state dict to ``output`` whole or not at all: under a temporary name beside it, then renamed.

    Args:
        state: Tensors by name (CPU, contiguous).
        output: The weights file; an existing one is replaced only once the new one is complete.

    Raises:
        StorageError: the file cannot be written (nothing is left behind).
    """
    import torch

    partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StorageError(f"-o: cannot write weights {output} ({exc.strerror or exc})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
