"""A regression search end to end, and the job mistakes a regression (or a classification) refuses in one line."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import refused, run_menndl

pytestmark = pytest.mark.timeout(300)

JOB = """
name = "regression"
seed = 2

[data]
source = "{source}"
{data}

[search]
population = 4
evaluations = {evaluations}
{search}

[space]
max_features = 3
max_head = 1
filters = [4, 16]
dense_units = [8, 32]

[training]
epochs = 1
max_seconds = 5
{training}
"""


def write_job(folder: Path, source: str = "oscillator1d", *, data: str = "", search: str = "", training: str = "",
              evaluations: int = 4) -> Path:  # fmt: skip
    path = folder / "job.toml"
    path.write_text(JOB.format(source=source, data=data, search=search, training=training, evaluations=evaluations))
    return path


@pytest.mark.parametrize(
    "source, tables, fragments",
    [
        ("oscillator1d", {"search": 'objectives = ["accuracy", "params"]'},
         ["search.objectives", "'accuracy'", "regression", "r2 or mse"]),
        ("digits", {"search": 'objectives = ["r2", "params"]'}, ["search.objectives", "'r2'", "classification"]),
        ("digits", {"search": 'objectives = ["accuracy", "mse"]'}, ["'mse'", "classification"]),
        ("oscillator1d", {"search": '[library]\nseed_by = "accuracy"'}, ["library.seed_by", "'accuracy'"]),
        ("digits", {"training": 'loss = "huber"'}, ["training.loss = 'huber'", "classification", "cross_entropy"]),
        ("oscillator1d", {"training": 'loss = "cross_entropy"'}, ["'cross_entropy'", "regression", "mse, huber"]),
        ("oscillator1d", {"training": 'loss = "l1"'}, ["training.loss", "'l1'", "huber"]),
        ("oscillator1d", {"data": 'task = "ranking"'}, ["data.task", "'ranking'", "regression"]),
        ("digits", {"data": 'task = "regression"'}, ["'digits' is a classification dataset"]),
        ("oscillator1d", {"data": "num_classes = 3"}, ["data.num_classes = 3", "regression targets"]),
    ],  # fmt: skip
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_task_mistakes_are_one_line_before_any_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, tables: dict[str, str], fragments: list[str],
    command: str,
) -> None:  # fmt: skip
    line = refused(capsys, write_job(tmp_path, source, **tables), command)
    for fragment in fragments:
        assert fragment in line, line


def test_nan_targets_in_a_file_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 2))
    y[11, 1] = np.nan
    with h5py.File(tmp_path / "signals.h5", "w") as handle:
        handle["x"] = rng.normal(size=(50, 1, 12)).astype(np.float32)
        handle["y"] = y
    line = refused(capsys, write_job(tmp_path, "signals.h5"))
    assert "signals.h5" in line and "'y'" in line and "sample 11" in line and "NaN" in line


def test_a_regression_search_trains_ranks_retrains_and_simulates(tmp_path: Path) -> None:
    job = write_job(tmp_path, evaluations=4)  # default objectives: r2 takes accuracy's place
    library = tmp_path / "lib.h5"
    out = run_menndl(["run", str(job), "--library", str(library), "--workers", "2"], timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "best validation r2" in out.stdout and "regression of 3 targets" in out.stderr
    with h5py.File(library, "r") as handle:
        attrs = dict(handle.attrs)
        r2, mse = handle["evaluations/r2"][()], handle["evaluations/mse"][()]
        accuracy, status = handle["evaluations/accuracy"][()], handle["evaluations/status"].asstr()[()]
    assert attrs["task"] == "regression" and attrs["objectives"] == "r2,params,train_seconds"
    assert int(attrs["num_classes"]) == 3
    stats = json.loads(attrs["target_stats"])
    assert len(stats["mean"]) == 3 and all(s > 0 for s in stats["std"])
    ok = status == "ok"
    assert ok.sum() >= 3 and np.isfinite(r2[ok]).all() and (mse[ok] > 0).all() and np.isnan(accuracy).all()

    top = run_menndl(["library", str(library), "top", "--json"], timeout=60)
    assert top.returncode == 0, top.stderr
    ranked = [row["r2"] for row in json.loads(top.stdout)]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == ok.sum()
    best = json.loads(top.stdout)[0]["id"]
    stats_out = run_menndl(["library", str(library), "stats", "--json"], timeout=60)
    assert json.loads(stats_out.stdout)["best_r2"] == pytest.approx(max(ranked))

    trained = run_menndl(["train", str(library), str(best), "--epochs", "1", "--json", "-o", str(tmp_path / "w.pt")],
                         timeout=120)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert result["test_samples"] == 1000 and np.isfinite(result["test_r2"]) and result["test_mse"] > 0
    assert result["search_validation_r2"] == pytest.approx(max(ranked))
    assert result["target_mean"] == pytest.approx(stats["mean"]) and result["target_std"] == pytest.approx(stats["std"])

    simulated = run_menndl(["simulate", str(job), "--workers", "8", "--evaluations", "40", "--eval-time", "fixed:1",
                            "--no-library", "--json"],
                           timeout=120)  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["evaluations"] == 40
