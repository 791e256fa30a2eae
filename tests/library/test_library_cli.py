"""The library commands on a real library from a real (tiny) search: query, export, train, plot, merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TINY_JOB, run_menndl

from menndl.errors import UserError
from menndl.library.query import pareto_rows, parse_where
from menndl.library.reader import Library
from menndl.library.writer import LibraryWriter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library from a real 6-evaluation search on the digits (2 epochs each)."""
    folder = tmp_path_factory.mktemp("lib")
    job = folder / "tiny.toml"
    job.write_text(TINY_JOB.format(source="digits") + "\n[library]\nkeep_weights = 2\n")
    library = folder / "tiny.h5"
    done = run_menndl(["run", str(job), "--library", str(library), "--workers", "2"], timeout=300)
    assert done.returncode == 0, done.stderr
    return library


def _json(args: list[str]) -> object:
    done = run_menndl(args, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_top_pareto_show_stats_lineage(searched: Path) -> None:
    lib = str(searched)
    top = _json(["library", lib, "top", "--limit", "3", "--json"])
    assert isinstance(top, list) and 1 <= len(top) <= 3
    accuracies = [row["accuracy"] for row in top]
    assert accuracies == sorted(accuracies, reverse=True)
    small = _json(["library", lib, "top", "--by", "params", "--where", "params<1e9 and accuracy>=0", "--json"])
    assert [r["params"] for r in small] == sorted(r["params"] for r in small)
    front = _json(["library", lib, "pareto", "--json"])
    assert front and all(r["status"] == "ok" for r in front)
    best = top[0]["id"]
    shown = _json(["library", lib, "show", str(best), "--json"])
    assert shown["id"] == best and isinstance(shown["genome"], dict)
    table = run_menndl(["library", lib, "show", str(best)], timeout=60)
    assert "total" in table.stdout and "classifier" in table.stdout
    finished = datetime.fromtimestamp(shown["finished_at"], tz=timezone.utc).isoformat(timespec="seconds")
    assert f"finished_at: {finished.replace('+00:00', 'Z')}" in table.stdout  # a date, not 1.797e+09
    stats = _json(["library", lib, "stats", "--json"])
    assert stats["evaluations"] == 6 and sum(stats["status"].values()) == 6
    # keep_weights = 2: at most 2 kept (the workers send weights once WORKER's side is merged)
    assert len(stats["kept_weights"]) <= 2
    chain = _json(["library", lib, "lineage", "5", "--json"])
    assert chain[0]["id"] == 5
    for row in chain[1:]:
        assert any(row["id"] in other["parents"] for other in chain)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["library", "no-such.h5", "stats"], "does not exist"),
        (["library", "{job}", "stats"], "not an HDF5 file"),
        (["library", "{lib}", "top", "--where", "params<1e5 or 1"], "cannot parse"),
        (["library", "{lib}", "top", "--where", "__import__('os')<1"], "cannot parse"),
        (["library", "{lib}", "top", "--where", "paramz<1"], "unknown field"),
        (["library", "{lib}", "show", "999"], "no evaluation with id 999"),
        (["export", "{lib}", "999", "--format", "onnx", "-o", "x.onnx"], "no evaluation with id 999"),
        (["library", "{new}", "stats"], "newer menndl"),
    ],
)
def test_bad_input_is_one_line_exit_2(searched: Path, tmp_path: Path, args: list[str], expected: str) -> None:
    newer = tmp_path / "newer.h5"
    with LibraryWriter(newer, job_text="") as writer:
        writer.append({"id": 0})
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = np.int64(99)
    job = tmp_path / "job.toml"
    job.write_text("name = 'x'\n")
    args = [a.format(lib=searched, job=job, new=newer) for a in args]
    done = run_menndl(args, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("menndl: error:"), done.stderr
    assert expected in done.stderr


def test_export_round_trip(searched: Path, tmp_path: Path) -> None:
    """TorchScript and ONNX (checked with onnxruntime) give the decoded model's outputs on standardised inputs."""
    import onnxruntime
    import torch

    from menndl.library.export import build, example_input, export, input_stats

    with Library.open(searched) as lib:
        eval_id = lib.weight_ids()[0] if lib.weight_ids() else int(lib.column("id")[0])
        model, _, origin = build(lib, eval_id)
        x = example_input(lib, batch=5)
        stats = input_stats(lib)
        assert stats is not None  # the search recorded its standardisation: exports take samples as stored
        mean = torch.tensor(stats["mean"]).reshape(1, -1, 1, 1)
        std = torch.tensor(stats["std"]).reshape(1, -1, 1, 1)
        with torch.no_grad():
            want = model((x - mean) / std).numpy()
        for fmt in ("torchscript", "onnx", "state-dict"):
            export(lib, eval_id, fmt, tmp_path / f"m.{fmt}")
    scripted = torch.jit.load(str(tmp_path / "m.torchscript"))
    np.testing.assert_allclose(scripted(x).detach().numpy(), want, rtol=1e-5, atol=1e-5)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    state = torch.load(tmp_path / "m.state-dict", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert "library" in origin or "fresh" in origin


def test_python_export_runs_without_menndl(searched: Path, tmp_path: Path) -> None:
    import torch

    from menndl.library.export import build, example_input, export, standardised

    with Library.open(searched) as lib:
        eval_id = int(lib.column("id")[0])
        export(lib, eval_id, "python", tmp_path / "model.py")
        network, _, _ = build(lib, eval_id)
        model = standardised(lib, network)  # the export takes samples as stored, like the search's data file
        x = example_input(lib)
    np.save(tmp_path / "x.npy", x.numpy())
    code = (
        "import sys, numpy, torch; sys.path.insert(0, '.'); import model\n"
        "assert 'menndl' not in sys.modules\n"
        "print(model.build()(torch.from_numpy(numpy.load('x.npy'))).detach().numpy().tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        np.testing.assert_allclose(np.array(json.loads(done.stdout)), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_train_then_export_with_the_trained_weights(searched: Path, tmp_path: Path) -> None:
    import torch

    weights = tmp_path / "w.pt"
    result = _json(["train", str(searched), "0", "--epochs", "2", "-o", str(weights), "--json", "--device", "cpu"])
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_samples"] > 0
    state = torch.load(weights, weights_only=True)
    out = tmp_path / "m.pt"
    done = run_menndl(
        ["export", str(searched), "0", "--format", "torchscript", "-o", str(out), "--weights", str(weights)],
        timeout=120,
    )
    assert done.returncode == 0 and "weights from" in done.stderr
    loaded = torch.jit.load(str(out)).state_dict()
    for name, tensor in state.items():  # the network sits behind the search's standardisation
        assert torch.equal(loaded[f"network.{name}"], tensor)
    assert {"mean", "std"} <= set(loaded)


def test_plot_writes_pngs(searched: Path, tmp_path: Path) -> None:
    done = run_menndl(["plot", str(searched), "-o", str(tmp_path / "plots")], timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("pareto.png", "progress.png"):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_merge(searched: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged.h5"
    done = run_menndl(["library", "merge", str(searched), str(searched), "-o", str(out)], timeout=120)
    assert done.returncode == 0, done.stderr
    with Library.open(searched) as a, Library.open(out) as merged:
        n = len(a)
        assert len(merged) == 2 * n
        assert sorted(merged.column("id").tolist()) == list(range(2 * n))
        second = merged.rows(list(range(n, 2 * n)))
        for row, original in zip(second, a.records()):
            assert row["hash"] == original["hash"]
            assert json.loads(row["parents"]) == [p + n for p in json.loads(original["parents"])]
        assert merged.pareto_ids()


def test_where_grammar_and_pareto_rows() -> None:
    assert parse_where("params<1e5 and accuracy >= 0.9 and seconds!=3") == [
        ("params", "<", 1e5),
        ("accuracy", ">=", 0.9),
        ("train_seconds", "!=", 3.0),
    ]
    for bad in ("params", "params < x", "1 < params", "params<1; import os", "host==a"):
        with pytest.raises(UserError):
            parse_where(bad)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=(60, 2)).astype(float)
    got = set(pareto_rows(values, [1.0, -1.0]).tolist())
    brute = set()
    for i, (a, p) in enumerate(values):
        dominated = any((b >= a and q <= p and (b > a or q < p)) for b, q in values)
        first = min(j for j, row in enumerate(values) if (row == values[i]).all())
        if not dominated and first == i:
            brute.add(i)
    assert {tuple(values[i]) for i in got} == {tuple(values[i]) for i in brute}


LOAD_WITHOUT_MENNDL = """
import sys
try:
    import menndl  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("menndl is importable here: not a test of loading without it")
import json, numpy, onnxruntime, torch
program = torch.export.load(sys.argv[1]).module()
session = onnxruntime.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
outputs = []
for path in sys.argv[3:]:
    x = numpy.load(path)
    with torch.no_grad():
        pt2 = program(torch.from_numpy(x)).numpy()
    onnx = session.run(None, {session.get_inputs()[0].name: x})[0]
    outputs.append({"pt2": pt2.tolist(), "onnx": onnx.tolist()})
print(json.dumps(outputs))
"""


def _without_menndl() -> tuple[list[str], dict[str, str]]:
    """An interpreter that has torch, numpy and onnxruntime but cannot import menndl (as in a fresh venv).

    ``-S`` skips site processing, so the editable install's ``.pth`` hook is not run; the venv's
    site-packages is put on the path for the third-party packages alone.
    """
    import onnxruntime
    import torch

    paths = sorted({str(Path(module.__file__).parents[1]) for module in (torch, onnxruntime, np)})
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(paths)}
    return [sys.executable, "-S", "-c", LOAD_WITHOUT_MENNDL], env


def test_pt2_and_onnx_of_every_front_member_match_the_model_and_load_without_menndl(
    searched: Path, tmp_path: Path
) -> None:
    """torch.export and ONNX exports of the Pareto front, at batch 1 and 7, run where menndl is not installed."""
    import torch

    from menndl.library.export import build, example_input, export, standardised

    command, env = _without_menndl()
    with Library.open(searched) as lib:
        front = [int(i) for i in lib.pareto_ids()]
        kept = set(lib.weight_ids())
        assert front and kept & set(front)  # trained weights for at least one member
        for eval_id in front:
            network, _, _ = build(lib, eval_id)
            model = standardised(lib, network)
            export(lib, eval_id, "pt2", tmp_path / "m.pt2")
            export(lib, eval_id, "onnx", tmp_path / "m.onnx")
            inputs = [example_input(lib, batch=batch) for batch in (1, 7)]  # the batch dimension is free
            for batch, x in zip((1, 7), inputs):
                np.save(tmp_path / f"x{batch}.npy", x.numpy())
            done = subprocess.run([*command, str(tmp_path / "m.pt2"), str(tmp_path / "m.onnx"),
                                   str(tmp_path / "x1.npy"), str(tmp_path / "x7.npy")], env=env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            assert done.returncode == 0, done.stderr[-2000:]
            for x, got in zip(inputs, json.loads(done.stdout)):
                with torch.no_grad():
                    want = model(x).numpy()
                np.testing.assert_allclose(np.array(got["pt2"]), want, rtol=0, atol=1e-5)
                np.testing.assert_allclose(np.array(got["onnx"]), want, rtol=0, atol=1e-5)


def test_torchscript_export_says_once_that_it_is_deprecated(searched: Path, tmp_path: Path) -> None:
    done = run_menndl(["export", str(searched), "0", "--format", "torchscript", "-o", str(tmp_path / "m.ts")],
                      timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "deprecated" in line]
    assert notes == ["menndl: note: TorchScript is deprecated in torch 2.13 (torch.jit); --format pt2 is its successor"]
