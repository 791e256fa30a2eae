"""The search-quality measures (hypervolume, anytime curve) and benchmarks/search_quality.py end to end."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from menndl.bench.quality import anytime_best, hypervolume, size_score

ROOT = Path(__file__).resolve().parents[2]


def _grid_hypervolume(points: list[tuple[float, float]], cells: int = 400) -> float:
    """Brute force: the fraction of grid cell centres some point dominates."""
    centres = (np.arange(cells) + 0.5) / cells
    acc, size = np.meshgrid(centres, centres, indexing="ij")
    covered = np.zeros_like(acc, dtype=bool)
    for accuracy, params in points:
        covered |= (acc <= accuracy) & (size <= size_score(params))
    return float(covered.mean())


def test_size_score_ends_and_clipping() -> None:
    assert size_score(100) == 1.0 and size_score(10) == 1.0
    assert size_score(1e6) == 0.0 and size_score(1e9) == 0.0
    assert size_score(1e4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="size_range"):
        size_score(10, (5, 5))


def test_hypervolume_matches_a_brute_force_count() -> None:
    rng = random.Random(3)
    for _ in range(20):
        points = [(rng.random(), 10 ** rng.uniform(1.5, 6.5)) for _ in range(rng.randrange(1, 12))]
        assert hypervolume(points) == pytest.approx(_grid_hypervolume(points), abs=6e-3)


def test_hypervolume_simple_cases() -> None:
    assert hypervolume([]) == 0.0
    assert hypervolume([(0.9, 1e4)]) == pytest.approx(0.45)
    assert hypervolume([(0.9, 1e4), (0.5, 1e4), (0.8, 1e5)]) == pytest.approx(0.45)  # dominated points add nothing
    assert hypervolume([(0.9, 1e4), (0.5, 100)]) == pytest.approx(0.45 + 0.5 * 0.5)
    assert hypervolume([(math.nan, 100), (0.5, 100)]) == pytest.approx(0.5)
    order = [(0.2, 300), (0.9, 5e4), (0.6, 2e3)]
    assert hypervolume(order) == pytest.approx(hypervolume(order[::-1]))


def test_anytime_curves() -> None:
    assert anytime_best([]) == []
    best = anytime_best([math.nan, 0.5, 0.4, math.nan, 0.7, 0.6])
    assert math.isnan(best[0]) and best[1:] == [0.5, 0.5, 0.5, 0.7, 0.7]


@pytest.mark.timeout(600)
def test_benchmark_runs_every_strategy_and_retrains(tmp_path: Path) -> None:
    """Real searches (digits, one epoch per candidate) for the three strategies, measured and retrained."""
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks" / "search_quality.py"),
               "--job", str(ROOT / "jobs" / "digits.toml"),
               "--seeds", "1", "--evaluations", "6", "--epochs", "1", "--workers", "1", "--retrain-epochs", "1",
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=580, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    runs = summary["runs"]
    assert sorted(run["strategy"] for run in runs) == ["nsga2", "optuna", "random"]
    for run in runs:
        assert run["evaluations"] == 6
        assert 0.0 < run["hypervolume"] <= 1.0
        assert 0.0 < run["test_accuracy"] <= 1.0  # measured by `menndl train` on the untouched test split
        assert run["top_params"] > 0
        curve = run["anytime"]  # best validation accuracy after each evaluation: never falls
        assert len(curve) == 6 and curve == sorted(curve) and curve[-1] == run["best_accuracy"]
    operators = {run["strategy"]: set(run["operators"]) for run in runs}
    assert operators["random"] == {"random"}
    assert operators["optuna"] == {"optuna"}
    assert "nsga2 - random" in done.stdout and "nsga2 - optuna" in done.stdout
    # A second invocation reuses the finished runs instead of training again.
    again = subprocess.run(command + ["--retrain-epochs", "0"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert all(run["reused"] for run in json.loads((out / "summary.json").read_text())["runs"])


@pytest.mark.timeout(300)
def test_benchmark_runs_on_a_user_hdf5_dataset(tmp_path: Path) -> None:
    """--data FILE.h5: the job's data and its rank-specific space keys are replaced by the user's file."""
    import h5py

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    x = (rng.normal(size=(300, 2, 12)) + y[:, None, None]).astype(np.float32)  # 2 channels, length 12
    data = tmp_path / "signals.h5"
    with h5py.File(data, "w") as handle:
        handle["x"], handle["y"] = x, y
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks" / "search_quality.py"), "--data", str(data),
               "--strategies", "nsga2,random", "--seeds", "1", "--evaluations", "4", "--epochs", "2",
               "--workers", "1", "--retrain-epochs", "2", "--set", "search.population=2",
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = json.loads((out / "summary.json").read_text())["runs"]
    assert [run["evaluations"] for run in runs] == [4, 4]
    assert all(run["test_accuracy"] > 1 / 3 for run in runs)  # the classes are separable: better than chance
    job = (out / "nsga2-s0.toml").read_text()
    assert str(data) in job and "population = 2" in job and "kernels" not in job


def test_benchmark_rejects_bad_options(tmp_path: Path) -> None:
    script = str(ROOT / "benchmarks" / "search_quality.py")
    for argv, expected in ((["--strategies", "grid"], "--strategies"), (["--seeds", "0"], "--seeds"),
                           (["--data", str(tmp_path / "none.h5")], "--data"),
                           (["--set", "population", "--out", str(tmp_path)], "--set")):  # fmt: skip
        done = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode != 0 and expected in done.stderr, (argv, done.stderr)
        assert "Traceback" not in done.stderr
