"""``menndl library LIB pareto|top``: tables of the library's objective columns, fronts over any objectives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from menndl.cli import main
from menndl.library.writer import LibraryWriter

# id, status, accuracy, params, latency (s), memory (bytes, -1: not measured)
ROWS = [
    (0, "ok", 0.90, 1000, 0.010, 4_000_000),  # on the 3-objective front: accurate
    (1, "ok", 0.80, 100, 0.020, 1_000_000),  # on it: small
    (2, "ok", 0.70, 200, 0.001, 2_000_000),  # on it: fast
    (3, "ok", 0.60, 300, 0.030, 3_000_000),  # dominated by 1
    (4, "ok", 0.85, 2000, 0.020, 5_000_000),  # dominated by 0
    (5, "failed", None, 400, 0.0005, -1),  # failed: never on a front, left out of top
    (6, "ok", 0.95, 5000, None, -1),  # latency not measured: off any front over latency
]


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A small library of a search over accuracy, params and latency."""
    path = tmp_path / "lib.h5"
    with LibraryWriter(path, job_text="", attrs={"objectives": "accuracy,params,latency"}) as writer:
        for eval_id, status, accuracy, params, latency, memory in ROWS:
            writer.append(
                {
                    "id": eval_id,
                    "operator": "mutate" if eval_id else "random",
                    "status": status,
                    "accuracy": accuracy,
                    "params": params,
                    "latency": latency,
                    "memory": memory,
                    "train_seconds": 1.0 + eval_id,
                }
            )
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    header, *lines = text.strip().splitlines()
    return header.split(), [line.split() for line in lines]


def test_pareto_over_the_library_objectives(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "library", str(library), "pareto")
    assert status == 0, err
    header, rows = _table(out)
    assert header == ["id", "accuracy", "params", "latency", "operator", "status"]
    assert [row[0] for row in rows] == ["0", "1", "2"]  # most accurate first
    assert rows[2] == ["2", "0.7", "200", "0.001", "mutate", "ok"]
    widths = [len(cell) for cell in out.splitlines()[0].split("  ") if cell]
    for line in out.splitlines()[1:]:  # right-aligned under headers at least as wide as their names
        assert len(line) == len(out.splitlines()[0])
    assert all(w >= len(name) for w, name in zip(widths, header))


def test_pareto_objectives_option(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "library", str(library), "pareto", "--objectives", "accuracy,params")
    assert status == 0, err
    header, rows = _table(out)
    assert header == ["id", "accuracy", "params", "operator", "status"]
    assert [row[0] for row in rows] == ["6", "0", "1"]
    status, out, err = _run(capsys, "library", str(library), "pareto", "--objectives", "latency,memory")
    assert status == 0, err
    header, rows = _table(out)
    assert header == ["id", "latency", "memory", "params", "operator", "status"]
    assert {row[0] for row in rows} == {"1", "2"}
    status, out, _ = _run(capsys, "library", str(library), "pareto", "--json", "--objectives", "accuracy,latency")
    front = json.loads(out)
    assert [row["id"] for row in front] == [0, 2] and "genome" in front[0] and front[0]["latency"] == 0.01


def test_pareto_bad_objective_is_one_line(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "library", str(library), "pareto", "--objectives", "accuracy,speed")
    lines = err.strip().splitlines()
    assert status == 2 and not out and len(lines) == 1
    assert "'speed'" in lines[0] and "batch_latency" in lines[0]


def test_top_by_latency(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "library", str(library), "top", "--by", "latency")
    assert status == 0, err
    header, rows = _table(out)
    assert header == ["id", "accuracy", "params", "latency", "operator", "status"]
    assert [row[0] for row in rows] == ["2", "0", "1", "4", "3"]  # ascending; the tie at 0.02: fewer params first
    latencies = [float(row[3]) for row in rows]
    assert latencies == sorted(latencies)


def test_top_shows_the_ranking_column(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "library", str(library), "top", "--by", "memory", "--limit", "2")
    assert status == 0, err
    header, rows = _table(out)
    assert header == ["id", "accuracy", "params", "latency", "memory", "operator", "status"]
    assert len(rows) == 2 and "1,000,000" in {row[4] for row in rows}


def test_top_by_memory_leaves_unmeasured_rows_out(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "library", str(library), "top", "--by", "memory", "--limit", "2")
    assert status == 0, err
    assert [row[0] for row in _table(out)[1]] == ["1", "2"]


@pytest.mark.parametrize("by", ["seconds", "accuracy", "params", "flops", "latency", "energy", "train_energy"])
def test_top_accepts_every_ranking(library: Path, capsys: pytest.CaptureFixture[str], by: str) -> None:
    status, _, err = _run(capsys, "library", str(library), "top", "--by", by)
    assert status == 0, err
