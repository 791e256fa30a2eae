"""benchmarks/optuna_hyperband.py: Optuna's TPE + HyperbandPruner on menndl's space, stopped at an epoch budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "benchmarks" / "optuna_hyperband.py")


@pytest.mark.timeout(300)
def test_study_stops_at_the_epoch_budget_and_writes_its_trials(tmp_path: Path) -> None:
    """A real study (digits, 2 epochs per trial, one worker): every epoch counted once, the budget exactly spent."""
    budget = 6
    command = [sys.executable, SCRIPT, "--job", str(ROOT / "jobs" / "digits.toml"), "--seed", "3",
               "--epoch-budget", str(budget), "--epochs", "2", "--workers", "1", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "optuna-hyperband seed 3:" in done.stdout and f"{budget} of {budget} epochs" in done.stdout
    report = json.loads((tmp_path / "optuna-hyperband-s3.json").read_text())
    assert report["seed"] == 3 and report["epoch_budget"] == budget and report["epochs"] == 2
    trials = report["trials"]
    assert trials and [t["finished_order"] for t in trials] == list(range(len(trials)))
    assert len({t["number"] for t in trials}) == len(trials)
    total = 0
    for trial in trials:
        total += trial["epochs"]
        assert trial["cumulative_epochs"] == total
        assert trial["state"] in ("complete", "pruned", "failed")
        assert trial["params"] > 0 and 0 <= trial["epochs"] <= trial["full_epochs"] <= 2
        if trial["state"] == "complete":
            assert trial["epochs"] == trial["full_epochs"] and not trial["stopped"]
        if trial["state"] == "pruned":
            assert 1 <= trial["epochs"] < trial["full_epochs"]
        if trial["state"] != "failed":
            assert 0.0 <= trial["accuracy"] <= 1.0
    assert report["total_epochs"] == total == budget
    scored = [t["accuracy"] for t in trials if t["state"] != "failed"]
    assert report["best_accuracy"] == max(scored)
    assert report["seconds"] > 0


def test_bad_options_are_refused(tmp_path: Path) -> None:
    for argv in (["--epoch-budget", "0"], ["--epoch-budget", "5", "--workers", "0"]):
        command = [sys.executable, SCRIPT, "--job", str(ROOT / "jobs" / "digits.toml"), "--out", str(tmp_path), *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 2 and "expected integers >= 1" in done.stderr, done.stderr
