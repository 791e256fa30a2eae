"""``menndl plot``: pairwise Pareto panels over a library's objectives, on real libraries and real PNGs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from menndl.cli import main
from menndl.commands.plot import axes_pair, use_log
from menndl.library.writer import LibraryWriter

# id, status, accuracy, params, latency (s), memory (bytes, -1: not measured), train_seconds
ROWS = [
    (0, "ok", 0.90, 1000, 0.010, 4_000_000, 3.0),
    (1, "ok", 0.80, 100, 0.020, 1_000_000, 1.0),
    (2, "ok", 0.70, 200, 0.001, 2_000_000, 2.0),
    (3, "ok", 0.60, 300, 0.030, 3_000_000, 4.0),
    (4, "ok", 0.85, 2000, 0.020, 5_000_000, 5.0),
    (5, "failed", None, 400, None, -1, 0.5),
    (6, "ok", 0.95, 5000, None, -1, 9.0),  # latency and memory not measured
]


def write_library(path: Path, objectives: str) -> Path:
    """A small library whose ``objectives`` attribute is ``objectives``."""
    with LibraryWriter(path, job_text="", attrs={"objectives": objectives}) as writer:
        for eval_id, status, accuracy, params, latency, memory, seconds in ROWS:
            writer.append(
                {
                    "id": eval_id,
                    "operator": "random",
                    "status": status,
                    "accuracy": accuracy,
                    "params": params,
                    "latency": latency,
                    "memory": memory,
                    "train_seconds": seconds,
                    "finished_at": 1_700_000_000.0 + eval_id,
                }
            )
    return path


def _plot(capsys: pytest.CaptureFixture[str], library: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    status = main(["plot", str(library), "-o", str(out), *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _pixels(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def test_panels_grow_with_the_objectives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two = write_library(tmp_path / "two.h5", "accuracy,params")
    four = write_library(tmp_path / "four.h5", "accuracy,params,latency,memory")
    status, out, err = _plot(capsys, two, tmp_path / "p2")
    assert status == 0, err
    assert out.split() == [str(tmp_path / "p2" / "pareto.png"), str(tmp_path / "p2" / "progress.png")]
    status, _, err = _plot(capsys, four, tmp_path / "p4")  # 6 panels; rows 5 and 6 left out where NaN / -1
    assert status == 0, err
    (w2, h2), (w4, h4) = _pixels(tmp_path / "p2" / "pareto.png"), _pixels(tmp_path / "p4" / "pareto.png")
    assert w4 > w2 and h4 > h2
    assert _pixels(tmp_path / "p4" / "progress.png") == _pixels(tmp_path / "p2" / "progress.png")
    status, _, err = _plot(capsys, four, tmp_path / "p3", "--objectives", "params,latency,train_seconds")
    assert status == 0, err
    w3, h3 = _pixels(tmp_path / "p3" / "pareto.png")  # 3 panels in one row
    assert w3 > w2 and h3 < h4


def test_bad_objective_name_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    library = write_library(tmp_path / "lib.h5", "accuracy,params")
    status, _, err = _plot(capsys, library, tmp_path / "plots", "--objectives", "accuracy,latncy")
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("menndl: error: --objectives: ")
    assert "'latncy'" in lines[0] and "latency" in lines[0] and "train_energy" in lines[0]
    status, _, err = _plot(capsys, library, tmp_path / "plots", "--objectives", "accuracy")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "at least 2" in err
    assert not (tmp_path / "plots").exists()


@pytest.mark.parametrize(
    ("objectives", "extra", "column"),
    [
        ("accuracy,params,energy", (), "energy"),  # from the library's attribute; float column, all NaN
        ("accuracy,params", ("--objectives", "accuracy,train_memory"), "train_memory"),  # int column, all -1
    ],
)
def test_unmeasured_column_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], objectives: str, extra: tuple[str, ...], column: str
) -> None:
    library = write_library(tmp_path / "lib.h5", objectives)
    status, _, err = _plot(capsys, library, tmp_path / "plots", *extra)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert f"column {column!r} holds no measured values in {library}" in lines[0]
    assert "latency" in lines[0]  # the columns that do have values are named
    assert not (tmp_path / "plots").exists()


def test_axes_and_log_scale() -> None:
    assert axes_pair("accuracy", "params") == ("params", "accuracy")
    assert axes_pair("latency", "accuracy") == ("latency", "accuracy")
    assert axes_pair("params", "latency") == ("params", "latency")
    assert use_log("params", np.array([10.0, 5000.0]))
    assert not use_log("params", np.array([100.0, 900.0]))  # spans less than 10x
    assert not use_log("accuracy", np.array([0.01, 0.99]))
    assert not use_log("flops", np.array([0.0, 1e6]))  # not all positive


def test_every_objective_has_an_axis_label() -> None:
    from menndl.commands.plot import LABELS
    from menndl.objectives import DIRECTIONS

    assert set(DIRECTIONS) <= set(LABELS), set(DIRECTIONS) - set(LABELS)
