"""The library's disk: read-only, missing, full, or filling up mid-run; and a candidate that exhausts host memory.

Real failures, not mocks: a read-only or tiny tmpfs mount (root only: skipped with the reason
otherwise), a file size limit (RLIMIT_FSIZE: the kernel refuses the write with EFBIG, as a full disk
refuses it with ENOSPC), and an address-space limit (RLIMIT_AS) on a real training worker.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import HERE, env, finish, sleep_command, start, write_job
from ledger import assert_clean, read_ledger

pytestmark = pytest.mark.timeout(180)


def assert_one_line(stderr: str, *fragments: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("menndl: error: ")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def preflight(tmp_path: Path, library: Path, **kwargs) -> tuple[int, str]:
    job = write_job(tmp_path, evaluations=4)
    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "1"), **kwargs), timeout=60)
    return status, stderr


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A folder to mount a tmpfs on, unmounted afterwards; skips where mounting is not allowed."""
    point = tmp_path / "mnt"
    point.mkdir()
    probe = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {probe.stderr.decode().strip()}")
    subprocess.run(["umount", str(point)], check=True)
    yield point
    subprocess.run(["umount", str(point)], capture_output=True)


def test_read_only_folder_fails_before_workers_start(tmp_path: Path, mount_point: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,ro", "tmpfs", str(mount_point)], check=True)
    status, stderr = preflight(tmp_path, mount_point / "lib.h5")
    assert status == 2
    assert_one_line(stderr, str(mount_point), "not writable")
    assert "worker" not in stderr  # nothing started
    assert list(mount_point.iterdir()) == []


def test_nearly_full_disk_fails_before_workers_start(tmp_path: Path, mount_point: Path) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], check=True)
    status, stderr = preflight(tmp_path, mount_point / "lib.h5")
    assert status == 2
    assert_one_line(stderr, "MiB free in", "at least 16 MiB")
    assert list(mount_point.iterdir()) == []


def test_missing_folder_and_file_in_the_path_fail_before_workers_start(tmp_path: Path) -> None:
    status, stderr = preflight(tmp_path, tmp_path / "no" / "such" / "lib.h5")
    assert status == 2
    assert_one_line(stderr, "does not exist", str(tmp_path / "no"))
    assert not (tmp_path / "no").exists()
    (tmp_path / "plain").write_text("a file")
    status, stderr = preflight(tmp_path, tmp_path / "plain" / "lib.h5")
    assert status == 2
    assert_one_line(stderr, str(tmp_path / "plain"))


def test_file_size_limit_too_small_for_the_library_fails_before_workers_start(tmp_path: Path) -> None:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))

    status, stderr = preflight(tmp_path, tmp_path / "lib.h5", preexec_fn=limit)
    assert status == 2
    assert_one_line(stderr, "cannot write the library", "File too large")
    assert not (tmp_path / "lib.h5").exists() and not list(tmp_path.glob(".menndl-probe-*"))


def test_disk_full_mid_run_stops_cleanly_and_resume_completes(tmp_path: Path) -> None:
    """The library stops taking data mid-run: one line, exit 1, every record before kept; --resume finishes."""
    job, library, log = write_job(tmp_path, evaluations=300), tmp_path / "lib.h5", tmp_path / "finished.jsonl"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (250_000, 250_000))  # the worker log stays far below

    proc = start(sleep_command(job, library, "--workers", "2", seconds=0.01, log=log), preexec_fn=limit)
    status, _, stderr = finish(proc, timeout=120)
    assert status == 1, stderr
    line = assert_one_line(stderr, "file too large", "the search stopped", "--resume")
    kept = int(line.split("keeps the ")[1].split()[0])
    stopped = read_ledger(library)  # opens: the last good flush plus the journal
    assert 0 < stopped.rows == kept < 300
    assert not stopped.duplicate_ids and not stopped.trained_twice

    status, _, stderr = finish(start(sleep_command(job, library, "--workers", "2", "--resume", seconds=0.01,
                                                   log=log)), timeout=120)  # fmt: skip
    assert status == 0, stderr
    ledger = read_ledger(library, log)
    assert_clean(ledger, budget=300)  # what the workers finished as the disk filled was re-run, not lost


def test_candidate_that_exhausts_host_memory_is_recorded_and_the_worker_goes_on() -> None:
    """Under an address-space limit a 16 GB layer fails to allocate: status `oom`, the next candidate trains."""
    out = subprocess.run([sys.executable, str(HERE / "oom_worker.py"), str(2 * 2**30)], env=env(),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    huge, small = (json.loads(line) for line in out.stdout.splitlines())
    assert huge["status"] == "oom" and "allocate" in huge["error"][0]
    assert small["status"] == "ok"
