"""``menndl train LIB ID [--epochs N]``: train one chosen architecture intensively on the full training data.

The job stored in the library says which data; training uses the training and validation splits
together, with the genome's optimizer, batch size and learning-rate schedule (stretched over all
the epochs of this training), then reports the accuracy on the held-out test split and saves the weights as a plain
state dict (tensors only: ``torch.load(path, weights_only=True)``), ready for ``menndl export --weights``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from menndl.errors import UserError

HELP = "train a chosen architecture on the job's full training data; report test accuracy, save weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``menndl train``."""
    parser.add_argument("library", metavar="LIB", help="library file")
    parser.add_argument("id", type=int, metavar="ID", help="evaluation id")
    parser.add_argument("--epochs", type=int, metavar="N", help="epochs (default: 4 x the job's training.epochs)")
    parser.add_argument("-o", "--output", metavar="PATH", help="weights file (default: LIB-stem-ID.pt beside LIB)")
    parser.add_argument(
        "--seed", type=int, metavar="S", help="random seed of the weights and batches (default: the evaluation's)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    """Train, test, save."""
    import numpy as np
    import torch
    from torch import nn

    from menndl.commands.common import load_job_data
    from menndl.genome import learning_rate_factor
    from menndl.genome.decode import build_model
    from menndl.job import parse_job
    from menndl.library import Library
    from menndl.library.export import spec_of
    from menndl.library.stored import stored_genome
    from menndl.worker.trainer import choose_device, make_optimizer

    with Library.open(args.library) as lib:
        row = lib.record(args.id)
        spec = spec_of(lib)
        job = parse_job(lib.job_text, path=str(lib.attrs.get("job_path", "job.toml")))
        fingerprint = str(lib.attrs.get("dataset_fingerprint", ""))
    if not row["genome"]:
        raise UserError(f"library {args.library}: evaluation {args.id} has no genome")
    epochs = args.epochs if args.epochs is not None else 4 * job.training.epochs
    if epochs < 1:
        raise UserError(f"--epochs: expected an integer >= 1, got {epochs}")
    seed = args.seed if args.seed is not None else max(int(row["seed"]), 0)
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed: expected an integer in [0, 2**63 - 1], got {seed}")
    output = (
        Path(args.output) if args.output else Path(args.library).with_name(f"{Path(args.library).stem}-{args.id}.pt")
    )
    if not output.parent.is_dir():
        raise UserError(f"-o: folder {output.parent} does not exist")
    data = load_job_data(job)
    if fingerprint and data.fingerprint() != fingerprint:
        raise UserError(f"the data of job {job.path} changed since the search (dataset fingerprint differs)")
    device = choose_device(args.device, 0)
    x_all = torch.from_numpy(np.concatenate([data.x_train, data.x_val]))
    y_all = torch.from_numpy(np.concatenate([data.y_train, data.y_val]))
    axes = [0, *range(2, x_all.dim())]
    mean, std = x_all.mean(dim=axes, keepdim=True), x_all.std(dim=axes, keepdim=True).clamp_min(1e-6)
    x_all, y_all = ((x_all - mean) / std).to(device), y_all.to(device)
    x_test = ((torch.from_numpy(data.x_test) - mean) / std).to(device)
    y_test = torch.from_numpy(data.y_test).to(device)

    genome = stored_genome(args.library, row, spec)
    torch.manual_seed(seed)
    model = build_model(genome, spec).to(device)
    hyper = genome.train
    optimizer = make_optimizer(model, hyper.optimizer, hyper.learning_rate, hyper.weight_decay, hyper.momentum)
    loss_fn = nn.CrossEntropyLoss()
    batch = min(hyper.batch_size, len(x_all))
    planned_steps = max(1, epochs * len(range(0, len(x_all) - 1, batch)))
    base_rates = [group["lr"] for group in optimizer.param_groups]
    step = 0
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), device=device)
        for first in range(0, len(x_all) - 1, batch):
            index = order[first : first + batch]
            if len(index) < 2:
                break
            factor = learning_rate_factor(hyper.schedule, min(1.0, (step + 0.5) / planned_steps))
            for group, rate in zip(optimizer.param_groups, base_rates):
                group["lr"] = rate * factor  # the genome's schedule, over all the epochs of this training
            step += 1
            loss = loss_fn(model(x_all[index]), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        test_accuracy = float((model(x_test).argmax(1) == y_test).float().mean()) if len(x_test) else math.nan
    model = model.cpu()
    torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()}, output)
    result = {
        "id": args.id,
        "epochs": epochs,
        "seed": seed,
        "params": sum(p.numel() for p in model.parameters()),
        "train_samples": len(x_all),
        "test_samples": len(x_test),
        "test_accuracy": None if math.isnan(test_accuracy) else test_accuracy,
        "search_validation_accuracy": row["accuracy"],
        "seconds": round(seconds, 2),
        "weights": str(output),
        "input_mean": mean.flatten().tolist(),
        "input_std": std.flatten().tolist(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        shown = "-" if math.isnan(test_accuracy) else f"{test_accuracy:.4f}"
        print(
            f"evaluation {args.id}: {epochs} epochs on {len(x_all)} samples in {seconds:.1f}s; "
            f"test accuracy {shown} on {len(x_test)} samples (search validation accuracy {row['accuracy']:.4f})"
        )
        print(
            f"weights: {output}  (inputs standardised per channel: "
            f"mean {result['input_mean']}, std {result['input_std']})"
        )
    return 0
