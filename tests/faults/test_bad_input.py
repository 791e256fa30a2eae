"""Every malformed input is one line ``menndl: error: ...``, exit status 2, no traceback, nothing lost.

The corpus (`corpus.py`, over 200 cases: job files, datasets, libraries, seed genomes, command
lines) runs through the real command-line entry point in this process (fast), a sample of it as
real ``menndl`` subprocesses. A library that exists before each case must be byte-identical after.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from corpus import CASES, GOOD_JOB, KEEP_SOURCE, Case
from harness import BIN, env, finish, sleep_command, start

from menndl.cli import main
from menndl.master import search

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def keep_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real library from a short search (sleep evaluator) on the corpus' good job."""
    folder = tmp_path_factory.mktemp("keep")
    job = folder / "job.toml"
    job.write_text(GOOD_JOB.format(source="digits"))
    library = folder / "keep.h5"
    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "1", seconds=0.01)), timeout=60)
    assert status == 0, stderr
    KEEP_SOURCE[:] = [library]
    return library


def materialize(case: Case, folder: Path, keep: Path) -> list[str]:
    """Write the case's files; return its command line."""
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return [arg.replace("{d}", str(folder)).replace("{keep}", str(keep)) for arg in case.argv]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_outcome(case: Case, status: int, stdout: str, stderr: str, folder: Path) -> None:
    assert "Traceback" not in stderr + stdout, stderr
    lines = stderr.strip().splitlines()
    assert status == 2, f"exit {status}: {stderr[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("menndl: error: "), stderr
    assert case.fragment in lines[0], f"{case.fragment!r} not named in: {lines[0]}"
    assert not (folder / "new.h5").exists() and not (folder / "merged.h5").exists()


@pytest.fixture
def no_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard: a malformed input that got as far as starting a search fails the case at once."""

    def refuse(self):
        raise AssertionError("the search started: the malformed input was not refused")

    monkeypatch.setattr(search.Search, "run", refuse)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malformed_input_is_one_line_and_exit_2(case: Case, tmp_path: Path, keep_source: Path, no_search,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    keep = tmp_path / "keep.h5"
    shutil.copyfile(keep_source, keep)
    before = digest(keep)
    argv = materialize(case, tmp_path, keep)
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = int(exc.code or 0)
    out = capsys.readouterr()
    check_outcome(case, status, out.out, out.err, tmp_path)
    assert digest(keep) == before, "the library that existed was changed"
    assert not keep.with_name(keep.name + ".journal").exists()


SAMPLE = [case for i, case in enumerate(CASES) if i % 40 == 0]


@pytest.mark.parametrize("case", SAMPLE, ids=[case.id for case in SAMPLE])
def test_sample_as_real_processes(case: Case, tmp_path: Path, keep_source: Path) -> None:
    keep = tmp_path / "keep.h5"
    shutil.copyfile(keep_source, keep)
    before = digest(keep)
    argv = materialize(case, tmp_path, keep)
    out = subprocess.run([str(BIN / "menndl"), *argv], env=env(), capture_output=True, text=True, timeout=60)
    check_outcome(case, out.returncode, out.stdout, out.stderr, tmp_path)
    assert digest(keep) == before


def test_corpus_size() -> None:
    """Acceptance: at least 200 malformed inputs, across every kind."""
    kinds = {case.kind.split("-")[0] for case in CASES}
    assert len(CASES) >= 200 and kinds == {"job", "data", "library", "seed", "cli"}
