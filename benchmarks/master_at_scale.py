"""Issue 4's figure, repeated: master CPU per result at 27,648 simulated workers, library on and off.

One ``menndl simulate`` run carries about 10% of noise on a shared VM (a fixed CPU loop there
varied from 1.3 to 2.3 s within an hour), so this runs the same simulation several times,
alternating the library writer on and off, and prints every run and the medians.  The runs are
deterministic (same seed, same work), so their spread is the machine's, not the master's.

    python benchmarks/master_at_scale.py [--repeat 3] [--workers 27648] [--evaluations 250000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

JOB = Path(__file__).with_name("scale.toml")


def simulate(workers: int, evaluations: int, library: bool) -> dict[str, Any]:
    """One `menndl simulate` run in a fresh interpreter; its JSON figures."""
    command = [sys.executable, "-m", "menndl", "simulate", str(JOB), "--workers", str(workers),
               "--eval-time", "lognormal:60", "--evaluations", str(evaluations), "--json"]  # fmt: skip
    if not library:
        command.append("--no-library")
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Run the simulations, print each run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=27648)
    parser.add_argument("--evaluations", type=int, default=250000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"library": [], "no_library": []}
    for index in range(args.repeat):
        for name, library in (("library", True), ("no_library", False)):
            figures = simulate(args.workers, args.evaluations, library)
            runs[name].append(figures)
            if not args.json:
                print(f"run {index + 1} {name:10s}: master {1e3 * figures['master_seconds_per_result']:.3f} ms/result, "
                      f"utilization {figures['utilization']:.4f}", flush=True)  # fmt: skip
    summary = {
        name: {
            "master_ms_per_result": [round(1e3 * f["master_seconds_per_result"], 4) for f in figures],
            "median_master_ms_per_result": round(
                1e3 * statistics.median(f["master_seconds_per_result"] for f in figures), 4
            ),
            "median_utilization": round(statistics.median(f["utilization"] for f in figures), 5),
        }
        for name, figures in runs.items()
    }
    summary["workers"], summary["evaluations"] = args.workers, args.evaluations  # type: ignore[assignment]
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
