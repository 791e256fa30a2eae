"""User mistakes on the command line: one line on stderr, exit status 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_menndl

pytestmark = pytest.mark.timeout(120)


def assert_one_line_error(out, *fragments: str) -> None:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("menndl: error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[search]\nevaluations = 5\nturbo = true\n", "unknown key 'search.turbo'"),
        ("[training]\nepochs = 'ten'\n[search]\nevaluations = 3\n", "training.epochs: expected an integer"),
        ("[search]\nevaluations = 3\n[data]\nsource = 'missing.h5'\n", "missing.h5"),
        ("[search]\nevaluations = 3\n[data]\nsource = 'broken.h5'\n", "broken.h5"),
    ],
)
def test_bad_job_file(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "broken.h5").write_text("this is not HDF5")
    job = tmp_path / "bad.toml"
    job.write_text(text)
    library = tmp_path / "lib.h5"
    out = run_menndl(["run", str(job), "--library", str(library)], timeout=60)
    assert_one_line_error(out, fragment)
    assert not library.exists()


def test_missing_job_file(tmp_path: Path) -> None:
    assert_one_line_error(run_menndl(["run", str(tmp_path / "nope.toml")], timeout=60), "nope.toml", "not found")


def test_existing_library_is_refused_and_kept(tiny_job: Path, tmp_path: Path) -> None:
    library = tmp_path / "kept.h5"
    library.write_bytes(b"precious")
    out = run_menndl(["run", str(tiny_job), "--library", str(library)], timeout=60)
    assert_one_line_error(out, "already exists")
    assert library.read_bytes() == b"precious"


def test_bad_override(tiny_job: Path) -> None:
    assert_one_line_error(run_menndl(["run", str(tiny_job), "--evaluations", "0"], timeout=60), "--evaluations")
    assert_one_line_error(run_menndl(["run", str(tiny_job), "--workers", "0"], timeout=60), "--workers")


def test_output_piped_to_a_reader_that_leaves_ends_quietly() -> None:
    """``menndl check JOB | head -1``: no traceback when the reader closes the pipe, exit status 141."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before menndl writes
    with os.fdopen(write_end, "wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "menndl", "check", str(root / "jobs" / "digits.toml")],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=100, cwd=root)  # fmt: skip
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
