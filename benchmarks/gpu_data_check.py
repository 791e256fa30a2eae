"""GPU data check: the stream and node placements against device, bf16 on one GPU, unattended in minutes.

It generates a learnable dataset in ``--dir`` (default /tmp; 4 GiB of 1x128x128 float32 by default), runs
``menndl bench data --device cuda --precision bf16`` for the three placements (each in its own process,
interleaved rounds), and prints the stream/device and node/device throughput ratios and whether each is
at least 0.9, with the torch and CUDA versions and the GPU's name.  Everything (the generator's report,
the benchmark's JSON, the summary) is also written to ``$OUT`` when it is set.  The dataset is deleted
at the end unless ``--keep``.

    python benchmarks/gpu_data_check.py                     # on the GPU machine, about 2-4 minutes
    python benchmarks/gpu_data_check.py --device cpu --gib 0.05 --shape 1 32 32 --steps 5 --rounds 1
                                                            # smoke test of the same code on the CPU

``--deadline`` (default 280 s) bounds the whole run: each benchmark child gets what is left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
THRESHOLD = 0.9


def versions() -> dict[str, Any]:
    """torch, CUDA and cuDNN versions and the GPU's name (in a subprocess: this one stays torch-free)."""
    probe = (
        "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
        "'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version() if c else None, "
        "'gpu': torch.cuda.get_device_name(0) if c else None, 'gpus': torch.cuda.device_count() if c else 0, "
        "'bf16': bool(c and torch.cuda.is_bf16_supported())}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        found = {"error": done.stderr.strip()[-500:]}
    found["python"] = platform.python_version()
    found["host"] = platform.node()
    return found


def main() -> int:
    """Generate, benchmark, summarise; 0 when the benchmark ran (whatever the ratios), 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default=None, help="default bf16 (fp32 on cpu)")
    parser.add_argument("--gib", type=float, default=4.0, help="dataset size (default 4 GiB)")
    parser.add_argument("--shape", type=int, nargs="+", default=[1, 128, 128])
    parser.add_argument("--dtype", choices=("float32", "uint8"), default="float32")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the dataset goes (default /tmp)")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per placement (default 300)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--cache-bytes", default="", help="stream bound (default: a quarter of the training split)")
    parser.add_argument("--placements", nargs="+", default=["device", "node", "stream"])
    parser.add_argument("--deadline", type=float, default=280.0, help="seconds for the whole run (default 280)")
    parser.add_argument("--keep", action="store_true", help="keep the generated dataset")
    args = parser.parse_args()
    started = time.perf_counter()
    precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        log_lines.append(text)
        if out is not None:
            (out / "gpu_data_check.log").write_text("\n".join(log_lines) + "\n")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    found = versions()
    say(f"torch {found.get('torch')}, CUDA {found.get('cuda')}, cuDNN {found.get('cudnn')}, GPU {found.get('gpu')} "
        f"(x{found.get('gpus')}, bf16 {found.get('bf16')}), python {found.get('python')}")  # fmt: skip
    if args.device == "cuda" and not found.get("gpu"):
        say("no CUDA device visible: nothing measured (use --device cpu for a smoke test)")
        return 1
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"menndl-gpu-data-check-{os.getpid()}.h5"
    generate = [
        sys.executable, str(REPO / "benchmarks" / "make_large_dataset.py"), str(path), "--gib", str(args.gib),
        "--shape", *map(str, args.shape), "--dtype", args.dtype, "--json",
    ]  # fmt: skip
    try:
        done = subprocess.run(generate, capture_output=True, text=True, env=env, timeout=max(30.0, args.deadline / 2))
        if done.returncode != 0:
            say(f"generating the dataset failed: {done.stderr.strip()[-1000:]}")
            return 1
        made = json.loads(done.stdout.strip().splitlines()[-1])
        say(f"dataset {path}: {made['samples']} samples of {made['shape']} {made['dtype']}, "
            f"{made['sample_bytes'] / 2**30:.2f} GiB in {made['seconds']:.1f} s "
            f"({made['gib_per_second']:.2f} GiB/s)")  # fmt: skip
        train_bytes = int(made["sample_bytes"] * 0.6)  # the default splits: 60% train
        cache = args.cache_bytes or str(max(2**20, train_bytes // 4))
        left = args.deadline - (time.perf_counter() - started)
        per_child = max(30.0, left / max(1, args.rounds * len(args.placements)) - 5)
        bench = [
            sys.executable, "-m", "menndl", "bench", "data", "--source", str(path), "--device", args.device,
            "--precision", precision, "--placements", *args.placements, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--batch", str(args.batch), "--rounds", str(args.rounds),
            "--cache-bytes", cache, "--timeout", f"{per_child:.0f}", "--json",
        ]  # fmt: skip
        say("running: " + " ".join(bench[1:]))
        done = subprocess.run(bench, capture_output=True, text=True, env=env, timeout=max(60.0, left))
        try:
            figures = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            say(f"menndl bench data failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
            return 1
        if out is not None:
            (out / "bench_data.json").write_text(json.dumps({"versions": found, "dataset": made, **figures}, indent=1))
        say(figures["summary"])
        say(f"{args.device} {precision}, batch {args.batch}, {args.steps} steps after {args.warmup}, "
            f"{args.rounds} interleaved rounds, stream cache {int(cache) / 2**20:.0f} MiB")  # fmt: skip
        placements = figures["placements"]
        for name, p in placements.items():
            if p["status"] == "ok":
                say(f"  {name:<7} {p['samples_per_second']:>10.0f} samples/s  "
                    f"peak RSS {p['peak_rss_bytes'] / 2**20:>8.0f} MiB  shared {p['shared_bytes'] / 2**20:>7.0f} MiB  "
                    f"GPU {p['gpu_peak_bytes'] / 2**20:>7.0f} MiB  "
                    f"data on {p['home'] or '?'}  loss {p['loss_first']:.3f}>{p['loss_last']:.3f}")  # fmt: skip
            else:
                say(f"  {name:<7} {p['status']}: {p['error']}")
        verdicts = {}
        for name in ("stream", "node"):
            p = placements.get(name, {})
            if p.get("status") == "ok" and "ratio_to_device" in p:
                ratio = p["ratio_to_device"]
                verdicts[name] = {"ratio": ratio, "pass": ratio >= THRESHOLD}
                say(f"{name}/device = {ratio:.3f}: {'>=' if ratio >= THRESHOLD else '<'} {THRESHOLD} "
                    f"({'PASS' if ratio >= THRESHOLD else 'FAIL'})")  # fmt: skip
            else:
                verdicts[name] = {"ratio": None, "pass": None}
                say(f"{name}/device: not measured ({p.get('status', 'not requested')})")
        summary = {"versions": found, "verdicts": verdicts, "seconds": time.perf_counter() - started}
        if out is not None:
            (out / "summary.json").write_text(json.dumps(summary, indent=1))
        say(f"done in {summary['seconds']:.0f} s")
        return 0 if done.returncode == 0 else 1
    except subprocess.TimeoutExpired as exc:
        say(f"ran past the deadline: {exc}")
        return 1
    finally:
        if not args.keep:
            for leftover in (path,):
                if leftover.exists():
                    leftover.unlink()


if __name__ == "__main__":
    sys.exit(main())
