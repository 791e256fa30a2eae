"""Workers run below the master's CPU priority, so that a master sharing cores with them is never starved."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import os; from menndl.worker.loop import _lower_priority; _lower_priority(); print(os.nice(0))"


def _niceness_after(setting: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MENNDL_WORKER_NICE"}
    if setting is not None:
        env["MENNDL_WORKER_NICE"] = setting
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.parametrize(("setting", "raised_by"), [(None, 5), ("3", 3), ("0", 0), ("junk", 5)])
def test_worker_niceness(setting: str | None, raised_by: int) -> None:
    base = os.nice(0)
    assert _niceness_after(setting) == min(19, base + raised_by)
