"""Does a segmentation search beat a hand-written U-Net of similar size?  (issue 21, acceptance 1)

    menndl run jobs/shapes2d.toml --library LIB               # the search (at most 30 minutes on 2 cores)
    python benchmarks/segmentation_check.py LIB [--epochs 20] [--seeds 0 1 2] [--size-factor 2]

From the search's Pareto front (validation mIoU against parameters) it takes the member with the best
validation mIoU among those with at most ``--size-factor`` times the baseline's parameters (the
baseline is `segmentation_baseline.baseline_unet`), and the front's best overall.  Each is retrained
by ``menndl train LIB ID --epochs E --seed S`` (training and validation splits, 2,000 images; tested
on the 500 test images), and the baseline is trained as long on the same 2,000 images
(`segmentation_baseline.train_baseline`), once per seed.  Printed: parameters, the median test mIoU
and pixel accuracy over the seeds, and whether the searched network's median mIoU is at least the
baseline's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from front_retrain import front_choices, retrain  # noqa: E402
from segmentation_baseline import baseline_unet, train_baseline  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Retrain the chosen front members and the baseline; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("library", metavar="LIB")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size-factor", type=float, default=2.0, help="'similar size': at most this x baseline")
    parser.add_argument("--width", type=int, default=8, help="the baseline U-Net's first-level channels")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the baseline (menndl train: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from menndl.data.builtin import load_shapes2d_raw

    raw = load_shapes2d_raw()
    assert raw.x_test is not None and raw.y_test is not None
    x, x_test = raw.x.take(np.arange(len(raw.x))), raw.x_test.take(np.arange(len(raw.x_test)))
    classes = int(max(raw.y.max(), raw.y_test.max())) + 1
    baseline_params = sum(p.numel() for p in baseline_unet(x.shape[1], classes, args.width).parameters())
    choices = front_choices(args.library, "miou", args.size_factor * baseline_params)
    out: dict[str, Any] = {"epochs": args.epochs, "seeds": args.seeds}
    runs = [train_baseline(x, raw.y, x_test, raw.y_test, classes=classes, epochs=args.epochs, seed=seed,
                           threads=args.threads, width=args.width) for seed in args.seeds]  # fmt: skip
    out["baseline"] = {
        "params": baseline_params,
        "miou": statistics.median(r["miou"] for r in runs),
        "pixel_accuracy": statistics.median(r["pixel_accuracy"] for r in runs),
        "miou_per_seed": [r["miou"] for r in runs],
    }
    folder = Path(args.library).resolve().parent
    for name, row in choices.items():
        results = [retrain(args.library, int(row["id"]), args.epochs, seed, folder / f"retrained-{row['id']}.pt")
                   for seed in args.seeds]  # fmt: skip
        out[name] = {
            "id": int(row["id"]),
            "params": int(row["params"]),
            "validation_miou": float(row["miou"]),
            "miou": statistics.median(r["test_miou"] for r in results),
            "pixel_accuracy": statistics.median(r["test_pixel_accuracy"] for r in results),
            "miou_per_seed": [r["test_miou"] for r in results],
        }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"retrained {args.epochs} epochs on 2,000 images, tested on 500; median over seeds {args.seeds}")
    print(f"{'model':>26} {'params':>8} {'test mIoU':>9} {'pixel acc':>9}  per seed")
    for name, label in (("baseline", "hand-written U-Net"), ("similar", "searched, similar size"),
                        ("best", "searched, front's best")):  # fmt: skip
        if name in out:
            entry = out[name]
            where = f" (id {entry['id']})" if "id" in entry else ""
            seeds = ", ".join(f"{v:.4f}" for v in entry["miou_per_seed"])
            print(f"{label + where:>26} {entry['params']:>8,} {entry['miou']:>9.4f} {entry['pixel_accuracy']:>9.4f}  "
                  f"{seeds}")  # fmt: skip
    if "similar" in out:
        verdict = "at least" if out["similar"]["miou"] >= out["baseline"]["miou"] else "BELOW"
        ratio = out["similar"]["params"] / baseline_params
        print(f"searched network of {ratio:.2f}x the baseline's parameters: median test mIoU {verdict} the baseline's")
    else:
        print(f"no front member within {args.size_factor:g}x the baseline's {baseline_params:,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
