"""``menndl bench data``: the data placements side by side, training samples per second and peak memory.

For each placement (``device``, ``node``, ``stream``) a subprocess of its own opens the dataset, builds
the placement, builds one fixed small CNN sized for the input, warms up, then trains ``--steps`` steps
the trainer's way: each batch ``.float()``, standardised on the device with the training split's
per-channel mean and standard deviation (from one `scan_dataset` pass in this process, before the
children start), forward, backward and an Adam step (in bf16 autocast when asked).  A subprocess per
placement gives each its own peak memory: ``ru_maxrss`` of the child, plus the bytes of the shared
segments it created in ``/dev/shm`` (the node placement's copy).  With ``--rounds R`` the placements run
interleaved (the order rotated every round) and medians are reported; the ratio is to ``device``.

A placement whose module does not exist yet is reported as "not available", the others still run.
This process never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HELP = "data placements side by side: training samples/s and peak memory of device, node and stream"

PLACEMENT_NAMES = ("device", "node", "stream")
SHM = Path("/dev/shm")

#: The fixed model: two strided conv blocks and a pool, global mean pooling, one dense layer.
GENOME: dict[str, Any] = {
    "format": 2,
    "features": [
        {"type": "conv", "filters": 16, "kernel": 3, "activation": "relu", "batch_norm": True, "stride": 2,
         "dilation": 1, "dropout": 0.0},
        {"type": "conv", "filters": 32, "kernel": 3, "activation": "relu", "batch_norm": True, "stride": 2,
         "dilation": 1, "dropout": 0.0},
        {"type": "pool", "kind": "max", "size": 2},
    ],
    "reduce": {"kind": "mean"},
    "head": [{"type": "dense", "units": 64, "activation": "relu", "dropout": 0.0}],
    "train": {"learning_rate": 0.001, "batch_size": 64, "optimizer": "adam", "weight_decay": 0.0, "momentum": 0.9,
              "schedule": "constant", "budget": 1.0},
}  # fmt: skip


def parse_bytes(text: str) -> int:
    """``1073741824``, ``1G``, ``256M``, ``64K`` or ``1e9`` as bytes (binary suffixes)."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes such as 1G or 268435456, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``menndl bench data``."""
    parser.add_argument("--source", default="digits", help="a dataset file or a built-in name (default digits)")
    parser.add_argument("--placements", nargs="+", choices=PLACEMENT_NAMES, default=list(PLACEMENT_NAMES),
                        help="placements to measure (default all three)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=50, help="timed training steps per placement (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--cache-bytes", type=parse_bytes, default=2**30,
                        help="data.cache_bytes: the stream placement's bound (default 1G)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians reported (default 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per child (0: torch's default)")
    parser.add_argument("--num-classes", type=int, default=0, help="data.num_classes (0: from the labels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one placement may take (default 600)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _shm_segments() -> dict[str, int]:
    """Bytes held by each ``/dev/shm/menndl-*`` file."""
    out = {}
    try:
        for path in SHM.glob("menndl-*"):
            try:
                out[path.name] = path.stat().st_blocks * 512
            except OSError:
                pass
    except OSError:
        pass
    return out


def measure_placement(config: dict[str, Any]) -> dict[str, Any]:
    """Build one placement and train the fixed model on it (run in a child process of its own).

    Args:
        config: ``name``, ``source``, ``num_classes``, ``device``, ``precision``, ``steps``, ``warmup``,
            ``batch``, ``cache_bytes``, ``node_key``, ``seed``, ``threads``, ``mean``, ``std``.

    Returns:
        ``status`` (``ok``, ``unavailable`` or ``failed``) and, when ok, ``samples_per_second``,
        ``seconds``, ``samples``, ``setup_seconds``, ``peak_rss_bytes``, ``shared_bytes``,
        ``gpu_peak_bytes``, ``loss_first``, ``loss_last`` and ``home`` (where the data lives).
    """
    import resource

    import torch
    from torch import nn

    from menndl.data import load_dataset
    from menndl.data.order import epoch_order
    from menndl.genome.decode import build_model_from_dict
    from menndl.worker.numerics import autocast_context
    from menndl.worker.placements.base import open_placement

    name = config["name"]
    if config["threads"] > 0:
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        return {"status": "failed", "error": "no CUDA device visible"}
    data = load_dataset(config["source"], num_classes=config["num_classes"])
    order = epoch_order(len(data.train), data.sample_bytes, config["cache_bytes"])
    before = _shm_segments()
    started = time.perf_counter()
    try:
        placement = open_placement(
            name, data.train, data.val, device, order, cache_bytes=config["cache_bytes"], node_key=config["node_key"]
        )
    except ImportError as exc:
        return {"status": "unavailable", "error": f"placement {name} not available ({exc})"}
    setup_seconds = time.perf_counter() - started
    shared = sum(size for seg, size in _shm_segments().items() if seg not in before)
    channels = data.input_shape[0]
    view = (1, channels, *([1] * (len(data.input_shape) - 1)))
    mean = torch.tensor(config["mean"], dtype=torch.float32, device=device).view(view)
    std = torch.tensor(config["std"], dtype=torch.float32, device=device).view(view)
    torch.manual_seed(config["seed"])
    model = build_model_from_dict(GENOME, data.input_shape, data.num_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=GENOME["train"]["learning_rate"])
    loss_fn = nn.CrossEntropyLoss()
    amp = autocast_context(device, config["precision"])
    batch = max(2, config["batch"])

    def batches() -> Any:
        epoch = 0
        while True:
            produced = 0
            windows = placement.order.windows(lambda size: torch.randperm(size).numpy())  # as the trainer draws them
            iterator = placement.epoch(windows, batch)
            try:
                for item in iterator:
                    produced += 1
                    yield item
            finally:
                iterator.close()
            if produced == 0:
                raise RuntimeError(f"no batch in an epoch ({len(data.train)} training samples, batch {batch})")
            epoch += 1

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        x = (xb.float() - mean) / std
        with amp:
            loss = loss_fn(model(x), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    model.train()
    stream = batches()
    try:
        for _ in range(max(0, config["warmup"])):
            step(*next(stream))
        steps = max(1, config["steps"])
        quarter = max(1, steps // 4)
        first = torch.zeros((), device=device)
        last = torch.zeros((), device=device)
        samples = 0
        sync()
        clock = time.perf_counter()
        for number in range(steps):
            xb, yb = next(stream)
            loss = step(xb, yb)
            samples += int(yb.shape[0])
            if number < quarter:
                first += loss
            if number >= steps - quarter:
                last += loss
        sync()
        seconds = time.perf_counter() - clock
    finally:
        stream.close()
    home = str(getattr(placement, "home", "")) or ""
    shared = max(shared, sum(size for seg, size in _shm_segments().items() if seg not in before))
    placement.close()
    data.close()
    return {
        "status": "ok",
        "samples_per_second": samples / max(seconds, 1e-9),
        "seconds": seconds,
        "samples": samples,
        "steps": steps,
        "setup_seconds": setup_seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "shared_bytes": shared,
        "gpu_peak_bytes": int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0,
        "loss_first": float(first) / quarter,
        "loss_last": float(last) / quarter,
        "home": home,
    }


def _child_main(config_json: str) -> int:
    """Entry of a child: one JSON line on stdout whatever happens."""
    config = json.loads(config_json)
    try:
        result = measure_placement(config)
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        result = {"status": "failed", "error": f"{type(exc).__name__}: {text}"}
    print("MENNDL-BENCH-DATA " + json.dumps(result), flush=True)
    return 0


def run_child(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run `measure_placement` in a fresh ``python -m menndl.bench.data`` process; its result."""
    command = [sys.executable, "-m", "menndl.bench.data", json.dumps(config)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timed out after {timeout:g} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("MENNDL-BENCH-DATA "):
            return json.loads(line.split(" ", 1)[1])
    tail = " ".join(done.stderr.strip().splitlines()[-3:]) or "no output"
    return {"status": "failed", "error": f"exit status {done.returncode}: {tail}"}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Scan the data once, then run every placement ``args.rounds`` times, interleaved; the figures."""
    from menndl.data import load_dataset
    from menndl.data.scan import scan_dataset

    with load_dataset(args.source, num_classes=args.num_classes) as data:
        scan = scan_dataset(data)
        described = {
            "summary": data.summary(),
            "train_samples": len(data.train),
            "val_samples": len(data.val),
            "sample_bytes": data.sample_bytes,
            "train_bytes": data.split_bytes("train"),
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
        }
    base = {
        "source": args.source,
        "num_classes": args.num_classes,
        "device": args.device,
        "precision": args.precision,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": args.batch,
        "cache_bytes": args.cache_bytes,
        "node_key": f"bench-{scan.fingerprint[:16]}-{os.getpid()}",
        "seed": args.seed,
        "threads": args.threads,
        "mean": list(scan.stats.mean),
        "std": list(scan.stats.std),
    }
    names = list(dict.fromkeys(args.placements))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    unavailable: set[str] = set()
    for round_ in range(max(1, args.rounds)):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            if name in unavailable:
                continue
            result = run_child({**base, "name": name}, args.timeout)
            runs[name].append(result)
            if result["status"] == "unavailable":
                unavailable.add(name)
    placements: dict[str, dict[str, Any]] = {}
    for name in names:
        ok = [r for r in runs[name] if r["status"] == "ok"]
        if not ok:
            failed = runs[name][-1] if runs[name] else {"status": "failed", "error": "not run"}
            placements[name] = {"status": failed["status"], "error": failed.get("error", ""), "runs": runs[name]}
            continue
        placements[name] = {
            "status": "ok",
            "samples_per_second": statistics.median(r["samples_per_second"] for r in ok),
            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in ok),
            "shared_bytes": max(r["shared_bytes"] for r in ok),
            "gpu_peak_bytes": max(r["gpu_peak_bytes"] for r in ok),
            "setup_seconds": statistics.median(r["setup_seconds"] for r in ok),
            "loss_first": ok[-1]["loss_first"],
            "loss_last": ok[-1]["loss_last"],
            "home": ok[-1]["home"],
            "runs": runs[name],
        }
    reference = placements.get("device", {}).get("samples_per_second")
    for figures in placements.values():
        if figures["status"] == "ok" and reference:
            figures["ratio_to_device"] = figures["samples_per_second"] / reference
    return {
        **{k: base[k] for k in ("source", "device", "precision", "steps", "warmup", "batch", "cache_bytes")},
        "rounds": max(1, args.rounds),
        "scan_seconds": scan.seconds,
        "stats": scan.stats.as_dict(),
        **described,
        "placements": placements,
    }


def _mib(count: float) -> str:
    return f"{count / 2**20:,.1f}"


def table(figures: dict[str, Any]) -> str:
    """The figures as a table: placement, samples/s, ratio to device, peak RSS, shared bytes."""
    lines = [
        f"{figures['summary']}",
        f"{figures['device']} {figures['precision']}, batch {figures['batch']}, {figures['steps']} timed steps "
        f"after {figures['warmup']}, cache_bytes {_mib(figures['cache_bytes'])} MiB, {figures['rounds']} round(s)",
        f"{'placement':<10} {'samples/s':>10} {'vs device':>9} {'peak RSS MiB':>12} {'shared MiB':>10} "
        f"{'GPU MiB':>8} {'setup s':>8} {'loss':>13}",
    ]
    for name, p in figures["placements"].items():
        if p["status"] != "ok":
            lines.append(f"{name:<10} {p['status']}: {p['error']}")
            continue
        ratio = f"{p['ratio_to_device']:.3f}" if "ratio_to_device" in p else "-"
        lines.append(
            f"{name:<10} {p['samples_per_second']:>10.0f} {ratio:>9} {_mib(p['peak_rss_bytes']):>12} "
            f"{_mib(p['shared_bytes']):>10} {_mib(p['gpu_peak_bytes']):>8} {p['setup_seconds']:>8.2f} "
            f"{p['loss_first']:>6.3f}>{p['loss_last']:<6.3f}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table (one JSON object with ``--json``).

    Returns:
        0 when every requested placement that exists ran, 1 when one failed.
    """
    figures = measure(args)
    print(json.dumps(figures) if args.json else table(figures))
    return 1 if any(p["status"] == "failed" for p in figures["placements"].values()) else 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
