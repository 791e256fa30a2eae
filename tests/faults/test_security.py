"""Files from someone else run no code: libraries, seed libraries, weights files; exports pickle no module.

A *marker* file stands for "code ran": every hostile payload here would create it if it were
executed (unpickled, evaluated, imported). After each command the marker must not exist.
"""

from __future__ import annotations

import ast
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from harness import GOOD_JOB_TEXT, REPO, env, finish, sleep_command, start

from menndl.cli import main

pytestmark = pytest.mark.timeout(180)


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lib")
    job = folder / "job.toml"
    job.write_text(GOOD_JOB_TEXT)
    path = folder / "lib.h5"
    status, _, stderr = finish(start(sleep_command(job, path, "--workers", "1", seconds=0.01)), timeout=60)
    assert status == 0, stderr
    return path


def hostile_copy(library: Path, folder: Path, marker: Path) -> Path:
    """The library with code-shaped payloads in every text field, attribute and a weights group."""
    evil = pickle.dumps(Payload(marker), protocol=0).decode("latin-1")
    expression = f"__import__('os').system('touch {marker}')"
    path = folder / "hostile.h5"
    shutil.copyfile(library, path)
    with h5py.File(path, "r+") as f:
        for name in ("error", "operator", "host", "device", "parents"):
            column = f["evaluations"][name]
            for i in range(column.shape[0]):
                column[i] = evil if i % 2 else expression
        f.attrs["menndl_version"] = evil
        f.attrs["objectives"] = expression
        group = f.require_group("weights").create_group("0")
        group.attrs["names"] = '["x"]'
        group.attrs["accuracy"] = 0.5
        group["x"] = np.void(pickle.dumps(Payload(marker)))  # an opaque blob where float32 arrays belong
    return path


def test_reading_a_hostile_library_runs_nothing(library: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    marker = tmp_path / "code-ran"
    hostile = hostile_copy(library, tmp_path, marker)
    commands = [
        ("library", str(hostile), "stats"), ("library", str(hostile), "top", "--all", "--json"),
        ("library", str(hostile), "show", "0"), ("library", str(hostile), "pareto"),
        ("library", str(hostile), "lineage", "3"),
        ("export", str(hostile), "1", "--format", "python", "-o", str(tmp_path / "m.py")),
        ("export", str(hostile), "0", "--format", "state-dict", "-o", str(tmp_path / "m.pt")),
    ]
    for command in commands:  # in this process (the real entry point), for speed
        status = main(list(command))
        err = capsys.readouterr().err
        assert status in (0, 2), (command, err)
        assert status == 0 or len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_a_pickle_given_as_weights_is_refused_unexecuted(library: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    marker = tmp_path / "code-ran"
    weights = tmp_path / "weights.pt"
    import torch

    torch.save({"layer.weight": Payload(marker)}, weights)  # what a hostile `menndl train` output could hold
    status = main(["export", str(library), "0", "--format", "python", "-o", str(tmp_path / "m.py"),
                   "--weights", str(weights)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("menndl: error: --weights"), err
    assert not marker.exists()


def test_a_hostile_library_file_name_cannot_inject_code_into_a_python_export(library: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    name = f"x\nopen({marker.name!r}, 'w').close()\n#.h5"  # relative: a file name holds no slash
    renamed = tmp_path / name
    shutil.copyfile(library, renamed)
    exported = tmp_path / "model.py"
    assert main(["export", str(renamed), "0", "--format", "python", "-o", str(exported)]) == 0
    run = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(exported)!r})['build']()"],
                         env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert not marker.exists()


def test_state_dict_export_holds_tensors_only(library: Path, tmp_path: Path) -> None:
    """A state-dict export loads with ``weights_only=True``: no module, no class, no code pickled."""
    import torch

    assert main(["export", str(library), "0", "--format", "state-dict", "-o", str(tmp_path / "m.pt")]) == 0
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state and all(isinstance(value, torch.Tensor) for value in state.values())


FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle", "joblib"}


def test_the_package_has_no_code_loading_paths() -> None:
    """No pickle/marshal imports, no eval/exec, no allow_pickle=True or weights_only=False in menndl/."""
    found = []
    for path in sorted((REPO / "menndl").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
                found.append(f"{path}:{node.lineno} {node.func.id}()")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                                 and node.module else [])  # fmt: skip
                found += [f"{path}:{node.lineno} import {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
            if isinstance(node, ast.keyword) and node.arg in ("allow_pickle", "weights_only"):
                if isinstance(node.value, ast.Constant) and node.value.value is (node.arg == "allow_pickle"):
                    found.append(f"{path}:{node.lineno} {node.arg}={node.value.value}")
    assert not found, found
