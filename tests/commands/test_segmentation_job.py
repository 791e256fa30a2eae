"""A segmentation search end to end, and the mask and job mistakes it refuses in one line before any worker."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import refused, run_menndl

from menndl.cli import main

pytestmark = pytest.mark.timeout(300)

JOB = """
name = "segmentation"
seed = 3

[data]
source = "{source}"
{data}

[search]
population = 4
evaluations = {evaluations}
{search}

[space]
max_features = 4
filters = [4, 12]

[training]
epochs = 1
max_seconds = 10
{training}
"""


def write_job(folder: Path, source: str = "shapes2d", *, data: str = "", search: str = "", training: str = "",
              evaluations: int = 4) -> Path:  # fmt: skip
    path = folder / "job.toml"
    path.write_text(JOB.format(source=source, data=data, search=search, training=training, evaluations=evaluations))
    return path


def masks_file(folder: Path, name: str = "cells.h5", *, y: np.ndarray | None = None, x_shape: tuple[int, ...] = (40, 1,
               12, 10)) -> str:  # fmt: skip
    """An HDF5 file of random images and masks (three classes, 12x10 pixels), ``y`` replacing the masks."""
    rng = np.random.default_rng(0)
    if y is None:
        y = rng.integers(0, 3, size=(x_shape[0], *x_shape[2:])).astype(np.uint8)
    with h5py.File(folder / name, "w") as handle:
        handle["x"] = rng.normal(size=x_shape).astype(np.float32)
        handle["y"] = y
    return name


@pytest.mark.parametrize(
    "tables, fragments",
    [
        ({"search": 'objectives = ["accuracy", "params"]'}, ["search.objectives", "'accuracy'", "segmentation",
                                                             "miou or pixel_accuracy"]),
        ({"search": 'objectives = ["r2", "params"]'}, ["'r2'", "segmentation"]),
        ({"search": '[library]\nseed_by = "mse"'}, ["library.seed_by", "'mse'"]),
        ({"training": 'loss = "mse"'}, ["training.loss = 'mse'", "segmentation", "cross_entropy_dice"]),
        ({"training": 'class_weights = [1.0, 2.0]'}, ["training.class_weights has 2 weights", "4 classes"]),
        ({"training": 'class_weights = [1.0, 0.0, 1.0, 1.0]'}, ["training.class_weights", "positive"]),
        ({"training": 'class_weights = "inverse"'}, ["training.class_weights", "balanced", "'inverse'"]),
        ({"data": "num_classes = 3"}, ["'y'", "label 3 is outside 0..2", "data.num_classes = 3", "pixel"]),
        ({"data": "ignore_label = -2"}, ["data.ignore_label", "-2"]),
        ({"data": 'task = "classification"'}, ["'shapes2d' is a segmentation dataset"]),
    ],  # fmt: skip
)
@pytest.mark.parametrize("command", ["check", "run"])
def test_segmentation_job_mistakes_are_one_line_before_any_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tables: dict[str, str], fragments: list[str], command: str,
) -> None:  # fmt: skip
    line = refused(capsys, write_job(tmp_path, **tables), command)
    for fragment in fragments:
        assert fragment in line, line


def test_segmentation_settings_are_refused_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "'miou' is not measured for a regression task" in refused(
        capsys, write_job(tmp_path, "oscillator1d", search='objectives = ["miou", "params"]'))
    assert "data.ignore_label = 255 is for segmentation masks" in refused(
        capsys, write_job(tmp_path, "digits", data="ignore_label = 255"))
    assert "training.class_weights weighs the pixels of segmentation masks" in refused(
        capsys, write_job(tmp_path, "digits", training='class_weights = "balanced"'))


@pytest.mark.parametrize(
    "y, fragments",
    [
        (np.zeros((40, 12, 9), np.uint8), ["'y' has shape (40, 12, 9)", "expected masks (40, 12, 10)", "(12, 10)"]),
        (np.zeros((40, 10, 12), np.uint8), ["'y' has shape (40, 10, 12)", "expected masks (40, 12, 10)"]),
        (np.full((40, 12, 10), 0.5, np.float32), ["'y' has dtype float32", "integer segmentation masks"]),
        (np.zeros((40, 12, 10), np.int16) - 1, ["negative labels", "sample 0, pixel (0, 0)"]),
        (np.zeros((40, 12, 10), np.uint8), ["only class 0", "at least 2 classes"]),
    ],  # fmt: skip
)
def test_bad_masks_in_a_file_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], y: np.ndarray,
                                          fragments: list[str]) -> None:  # fmt: skip
    data = 'task = "segmentation"' if y.dtype.kind == "f" or y.shape[1:] != (12, 10) else ""
    line = refused(capsys, write_job(tmp_path, masks_file(tmp_path, y=y), data=data))
    assert "cells.h5" in line
    for fragment in fragments:
        assert fragment in line, line


def test_a_label_beyond_num_classes_is_named_with_its_pixel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    y = np.random.default_rng(1).integers(0, 3, size=(40, 12, 10)).astype(np.uint8)
    y[7, 4, 5] = 9
    line = refused(capsys, write_job(tmp_path, masks_file(tmp_path, y=y), data="num_classes = 3"))
    assert "sample 7, pixel (4, 5): label 9 is outside 0..2" in line
    y[7, 4, 5] = 255  # the ignore label is no class: it passes
    job = write_job(tmp_path, masks_file(tmp_path, y=y), data="num_classes = 3\nignore_label = 255")
    assert main(["check", str(job)]) == 0
    assert "3 classes per pixel; ignored label 255" in capsys.readouterr().out


def test_masks_are_inferred_and_kept_compact(tmp_path: Path) -> None:
    from menndl.data import open_configured

    name = masks_file(tmp_path, y=np.random.default_rng(2).integers(0, 3, size=(40, 12, 10)).astype(np.int64))
    with open_configured({"source": name}, tmp_path) as data:
        assert data.task == "segmentation" and data.num_classes == 3 and data.outputs == 3
        assert data.train.y.dtype == np.uint8 and data.train.y.shape[1:] == (12, 10)
        assert sum(data.class_pixels()) == data.train.y.size


def test_a_segmentation_search_trains_ranks_retrains_exports_and_simulates(tmp_path: Path) -> None:
    job = write_job(tmp_path, evaluations=4, data="ignore_label = 255",
                    training='loss = "cross_entropy_dice"\nclass_weights = "balanced"')  # fmt: skip
    library = tmp_path / "lib.h5"
    out = run_menndl(["run", str(job), "--library", str(library), "--workers", "2"], timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "best validation miou" in out.stdout and "segmentation into 4 classes" in out.stderr
    with h5py.File(library, "r") as handle:
        attrs = dict(handle.attrs)
        miou, pixel = handle["evaluations/miou"][()], handle["evaluations/pixel_accuracy"][()]
        status = handle["evaluations/status"].asstr()[()]
        genomes = [json.loads(g) for g in handle["evaluations/genome"].asstr()[()]]
    assert attrs["task"] == "segmentation" and attrs["objectives"] == "miou,params,train_seconds"
    assert int(attrs["num_classes"]) == 4
    settings = json.loads(attrs["segmentation"])
    assert settings["ignore_label"] == 255 and len(settings["class_weights"]) == 4
    assert settings["class_weights"][0] < min(settings["class_weights"][1:])  # background: most pixels, least weight
    ok = status == "ok"
    assert ok.sum() >= 3 and ((miou[ok] >= 0) & (miou[ok] <= 1)).all() and (pixel[ok] > 0).all()
    assert all(g["head"] == [] and g["reduce"] is None for g in genomes)

    top = run_menndl(["library", str(library), "top", "--json"], timeout=60)
    assert top.returncode == 0, top.stderr
    rows = json.loads(top.stdout)
    assert [r["miou"] for r in rows] == sorted((r["miou"] for r in rows), reverse=True)
    best = rows[0]["id"]
    shown = run_menndl(["library", str(library), "show", str(best)], timeout=60)
    assert shown.returncode == 0 and "conv 1x1 (classifier, per pixel)" in shown.stdout, shown.stderr
    plotted = run_menndl(["plot", str(library), "-o", str(tmp_path / "plots")], timeout=120)
    assert plotted.returncode == 0 and (tmp_path / "plots" / "pareto.png").stat().st_size > 0, plotted.stderr
    trained = run_menndl(["train", str(library), str(best), "--epochs", "1", "--json", "-o", str(tmp_path / "w.pt")],
                         timeout=120)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert result["test_samples"] == 500 and 0 <= result["test_miou"] <= 1 and 0 < result["test_pixel_accuracy"] <= 1

    exported = run_menndl(["export", str(library), str(best), "--format", "onnx", "-o", str(tmp_path / "m.onnx"),
                           "--weights", str(tmp_path / "w.pt")], timeout=120)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    logits = session.run(None, {session.get_inputs()[0].name: np.zeros((2, 1, 32, 32), np.float32)})[0]
    assert logits.shape == (2, 4, 32, 32)

    simulated = run_menndl(["simulate", str(job), "--workers", "8", "--evaluations", "40", "--eval-time", "fixed:1",
                            "--no-library", "--json"], timeout=120)  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    assert json.loads(simulated.stdout)["evaluations"] == 40


def test_the_example_job_checks(capsys: pytest.CaptureFixture[str]) -> None:
    job = Path(__file__).resolve().parents[2] / "jobs" / "shapes2d.toml"
    assert main(["check", str(job)]) == 0
    out = capsys.readouterr().out
    assert "segmentation into 4 classes" in out and "objectives miou, params" in out and "up" in out


@pytest.mark.parametrize("strategy", ["random", "optuna"])
def test_the_baseline_strategies_search_decoders_too(tmp_path: Path, strategy: str) -> None:
    """Random search and Optuna (over the fixed-length encoding, decoder slots included) breed segmentation
    networks: simulated evaluations, a real library."""
    if strategy == "optuna":
        pytest.importorskip("optuna")
    job = write_job(tmp_path, search=f'strategy = "{strategy}"')
    library = tmp_path / "sim.h5"
    out = run_menndl(["simulate", str(job), "--workers", "4", "--evaluations", "60", "--eval-time", "fixed:1",
                      "--library", str(library)], timeout=180)  # fmt: skip
    assert out.returncode == 0, out.stderr
    with h5py.File(library, "r") as handle:
        genomes = [json.loads(g) for g in handle["evaluations/genome"].asstr()[()]]
    assert len(genomes) == 60 and all(g["head"] == [] and g["reduce"] is None for g in genomes)
    assert sum(bool(g.get("decoder")) for g in genomes) >= 10


def test_masks_too_large_to_read_whole_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Masks are read whole into every process (unlike the samples): more than a quarter of the free memory is
    refused before anything is read (here the machine is made to report 100 KB free)."""
    import menndl.data.files as files

    monkeypatch.setattr(files, "free_memory", lambda: 100_000)
    y = np.random.default_rng(0).integers(0, 3, size=(400, 12, 10)).astype(np.int64)  # 384 KB
    line = refused(capsys, write_job(tmp_path, masks_file(tmp_path, y=y, x_shape=(400, 1, 12, 10))))
    assert "'y' holds 375.0 KiB of labels, more than a quarter of the 97.7 KiB of memory free here" in line
    assert "segmentation masks too" in line


@pytest.mark.parametrize("spatial", [(24,), (6, 8, 7)])
def test_signals_and_volumes_are_segmented_too(tmp_path: Path, spatial: tuple[int, ...]) -> None:
    """A 1-D signal and a 3-D volume file (odd sizes): the search trains, early-stops by mIoU, and the best
    network exports to torch.export with logits of the input's size."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(48, 1, *spatial)).astype(np.float32)
    y = (x[:, 0] > 0.3).astype(np.uint8) + (x[:, 0] > 1.2)  # three classes, learnable from each voxel
    with h5py.File(tmp_path / "volumes.h5", "w") as handle:
        handle["x"], handle["y"] = x, y
    job = write_job(tmp_path, "volumes.h5", evaluations=3,
                    training="early_stopping = true\nearly_stopping_min_results = 1")  # fmt: skip
    job.write_text(job.read_text().replace("epochs = 1", "epochs = 4"))  # checkpoints at 1/4 and 1/2
    library = tmp_path / "lib.h5"
    out = run_menndl(["run", str(job), "--library", str(library), "--workers", "1"], timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "segmentation into 3 classes" in out.stderr
    with h5py.File(library, "r") as handle:
        status = handle["evaluations/status"].asstr()[()]
        miou = handle["evaluations/miou"][()]
        checkpoints = handle["evaluations/checkpoints"].asstr()[()]
    assert set(status) <= {"ok", "stopped-early"} and np.isfinite(miou).all()
    assert any(json.loads(c) for c in checkpoints if c)  # mIoU read at the early-stopping checkpoints
    best = json.loads(run_menndl(["library", str(library), "top", "--json"], timeout=60).stdout)[0]["id"]
    exported = run_menndl(["export", str(library), str(best), "--format", "pt2", "-o", str(tmp_path / "m.pt2")],
                          timeout=180)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    import torch

    program = torch.export.load(str(tmp_path / "m.pt2"))
    assert tuple(program.module()(torch.from_numpy(x[:2])).shape) == (2, 3, *spatial)
