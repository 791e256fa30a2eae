"""Libraries written by the previous release (99bac8a) open, resume and merge with this one.

`tests/golden/previous-release/` holds two libraries that release wrote with
real training on digits: ``previous-release.h5``, a search that ended cleanly
(8 evaluations, 2 kept models), and ``previous-release-killed.h5`` with its
journal and kept-weights folder, a search of 40 evaluations killed with
SIGKILL after 13 results with 4 tasks in flight.  They are never rewritten:
each test works on a copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from menndl.library import Library

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "previous-release"


def _menndl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "menndl", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "previous"
    shutil.copytree(GOLDEN, folder)
    return folder


def test_a_clean_library_of_the_previous_release_opens_with_its_rows_front_and_weights(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    with Library.open(folder / "previous-release.h5") as library:
        records = library.records()
        assert len(records) == 8 and {r["status"] for r in records} == {"ok"}
        assert sorted(r["id"] for r in records) == list(range(8))  # (rows in the order results came)
        front = library.pareto_ids()
        assert front and set(front) <= set(range(8))
        kept = library.weight_ids()
        assert len(kept) == 2 and all(library.weights(i) for i in kept)
    status = _menndl("library", "previous-release.h5", "status", "--json", cwd=folder)
    assert status.returncode == 0, status.stderr  # finished: its budget was reached


def test_a_killed_library_of_the_previous_release_resumes_to_its_budget_without_retraining(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    library = folder / "previous-release-killed.h5"
    with Library.open(library) as live:  # read through its journal, as the release left it
        before = {r["id"]: r["hash"] for r in live.records()}
    assert len(before) == 13
    status = _menndl("library", library.name, "status", cwd=folder)
    assert status.returncode == 3, status.stdout + status.stderr  # can continue with --resume
    run = _menndl("run", "killed.toml", "--library", library.name, "--resume", "--workers", "2", cwd=folder)
    assert run.returncode == 0, run.stderr
    with Library.open(library) as resumed:
        records = resumed.records()
        assert len(records) == 40 and sorted(r["id"] for r in records) == list(range(40))
        assert {r["id"]: r["hash"] for r in records if r["id"] in before} == before  # nothing lost or rewritten
        hashes = [r["hash"] for r in records]
        assert len(set(hashes)) == len(hashes)  # no finished genome trained again
        assert resumed.weight_ids()
    assert not (folder / "previous-release-killed.h5.journal").exists()


def test_libraries_of_the_previous_release_merge(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    merged = _menndl("library", "merge", "previous-release.h5", "previous-release-killed.h5", "-o", "merged.h5",
                     cwd=folder)  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    with Library.open(folder / "merged.h5") as library:
        records = library.records()
        assert len(records) == 8 + 13
        assert sorted(r["id"] for r in records) == list(range(21))
        parents = [json.loads(r["parents"]) if isinstance(r["parents"], str) else list(r["parents"]) for r in records]
        assert all(p < r["id"] for r, ps in zip(records, parents) for p in ps)  # parents renumbered, kept


def test_the_previous_release_fingerprint_is_recomputed_from_the_data(tmp_path: Path) -> None:
    from menndl.data.dataset import open_configured
    from menndl.data.previous_fingerprint import previous_release_fingerprint
    from menndl.data.scan import scan_dataset

    with Library.open(GOLDEN / "previous-release.h5") as library:
        recorded = str(library.attrs["dataset_fingerprint"])
        assert "dataset_identity" not in library.attrs
    with open_configured({"source": "digits"}, None) as digits:
        assert previous_release_fingerprint(digits) == recorded
        assert scan_dataset(digits).fingerprint != recorded  # this release's digest differs: both must be known
    with open_configured({"source": "digits", "split_seed": 1}, None) as other_split:
        assert previous_release_fingerprint(other_split) != recorded


def test_a_model_of_the_previous_release_trains_from_its_library(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    run = _menndl("train", "previous-release.h5", "0", "--epochs", "1", "--device", "cpu", "-o", "w.pt", "--json",
                  cwd=folder)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["id"] == 0 and (folder / "w.pt").stat().st_size > 0
