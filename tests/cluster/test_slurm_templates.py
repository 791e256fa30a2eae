"""Golden-file tests of the batch templates: their #SBATCH lines and the commands they run.

Each template runs under bash with stand-ins for ``srun``, ``scontrol``, ``sbatch`` and ``menndl``
that log their arguments, in a fixed SLURM environment; the log must equal tests/golden/NAME.txt.
``MENNDL_UPDATE_GOLDEN=1 pytest tests/cluster/test_slurm_templates.py`` rewrites the golden files after an
intended change (review the diff). tests/cluster/test_slurm.py runs the same templates under a real SLURM.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TEMPLATES = ("gpu.sbatch", "cpu.sbatch", "chain.sh")

STUB = """#!/bin/bash
echo "{name} $*" >> "$STUB_DIR/log"
{body}
"""
BODIES = {
    # `menndl library LIB status [--json]`: the state and row count the scenario put in files.
    "menndl": 'if [[ "$1" == library ]]; then\n'
              '  [[ "$*" == *--json* ]] && echo "{\\"evaluations\\": $(cat "$STUB_DIR/evaluations")}"\n'
              '  exit "$(cat "$STUB_DIR/state")"\nfi',
    # The search step: progress and the state it leaves behind.
    "srun": 'if [[ "$*" == *" run "* ]]; then\n'
            '  echo "$STUB_AFTER_EVALUATIONS" > "$STUB_DIR/evaluations"\n'
            '  echo "$STUB_AFTER_STATE" > "$STUB_DIR/state"\nfi',
    # The mpirun on PATH: Open MPI 5 where the scenario says so (auto then takes it), MPICH's Hydra otherwise.
    "mpirun": 'if [[ "$1" == --version ]]; then\n'
              '  [[ -n "${STUB_OPEN_MPI:-}" ]] && echo "mpirun (Open MPI) 5.0.11" || echo "HYDRA build details:"\n'
              'elif [[ "$*" == *" run "* ]]; then\n'
              '  echo "$STUB_AFTER_EVALUATIONS" > "$STUB_DIR/evaluations"\n'
              '  echo "$STUB_AFTER_STATE" > "$STUB_DIR/state"\nfi',
    "scontrol": "",
    "sbatch": 'n=$(( $(cat "$STUB_DIR/jobs" 2>/dev/null || echo 100) + 1 ))\n'
              'echo $n > "$STUB_DIR/jobs"; echo "$n;cluster"',
}  # fmt: skip

SCENARIOS = {
    # 2 nodes x 4 GPUs, a requeued job (restart 1) continuing an unfinished library that then makes progress.
    "gpu-requeue": dict(
        template="gpu.sbatch", args=["job.toml", "lib.h5"], library=True, state="3", evaluations="5",
        after=("9", "3"),
        env={"SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_PER_NODE": "a100:4", "SLURM_NTASKS_PER_NODE": "5(x2)",
             "SLURM_NTASKS": "10", "SLURM_RESTART_COUNT": "1"},
    ),
    # 2 CPU nodes x 8 tasks, a new library, the search finishes in this job: no requeue.
    "cpu-finish": dict(
        template="cpu.sbatch", args=["job.toml", "lib.h5"], library=False, state="2", evaluations="0",
        after=("40", "0"),
        env={"SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "8(x2)", "SLURM_NTASKS": "16"},
    ),
    # The same with Open MPI 5 as the venv's MPI: auto launches mpirun --with-ft ulfm, one log per rank.
    "cpu-ulfm": dict(
        template="cpu.sbatch", args=["job.toml", "lib.h5"], library=False, state="2", evaluations="0",
        after=("40", "0"),
        env={"SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS_PER_NODE": "8(x2)", "SLURM_NTASKS": "16",
             "STUB_OPEN_MPI": "1"},
    ),
    # A GPU job told to use srun although mpirun is Open MPI 5.
    "gpu-srun-chosen": dict(
        template="gpu.sbatch", args=["job.toml", "lib.h5"], library=False, state="2", evaluations="0",
        after=("8", "0"),
        env={"SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_PER_NODE": "4", "SLURM_NTASKS_PER_NODE": "5(x2)",
             "SLURM_NTASKS": "10", "STUB_OPEN_MPI": "1", "MENNDL_LAUNCHER": "srun"},
    ),
    # A misspelt launcher: one line, exit 2, no step started.
    "cpu-bad-launcher": dict(
        template="cpu.sbatch", args=["job.toml", "lib.h5"], library=False, state="2", evaluations="0",
        after=("0", "2"), env={"SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "4", "MENNDL_LAUNCHER": "mpiexec"},
    ),
    # A finished library: the job exits at once without starting a step.
    "cpu-finished-already": dict(
        template="cpu.sbatch", args=["job.toml", "lib.h5"], library=True, state="0", evaluations="40",
        after=("40", "0"), env={"SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "4"},
    ),
    # Unfinished but no progress in this job (a broken setup): no requeue, a failing exit status.
    "cpu-no-progress": dict(
        template="cpu.sbatch", args=["job.toml", "lib.h5"], library=True, state="3", evaluations="7",
        after=("7", "3"), env={"SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "4"},
    ),
    "chain": dict(
        template="chain.sh", args=["3", "--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=5", "slurm/gpu.sbatch",
                                   "job.toml", "lib.h5"],
        library=False, state="2", evaluations="0", after=("0", "2"), env={},
    ),
}  # fmt: skip


def _sbatch_lines(template: str) -> list[str]:
    return [line for line in (REPO / "slurm" / template).read_text().splitlines() if line.startswith("#SBATCH")]


def _run(name: str, tmp_path: Path) -> str:
    scenario = SCENARIOS[name]
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for command, body in BODIES.items():
        path = stubs / command
        path.write_text(STUB.format(name=command, body=body))
        path.chmod(0o755)
    (tmp_path / "state").write_text(scenario["state"])
    (tmp_path / "evaluations").write_text(scenario["evaluations"])
    work = tmp_path / "work"
    work.mkdir()
    if scenario["library"]:
        (work / "lib.h5").write_text("")
    env = {
        "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), "STUB_DIR": str(tmp_path),
        "STUB_AFTER_EVALUATIONS": scenario["after"][0], "STUB_AFTER_STATE": scenario["after"][1],
        "SLURM_JOB_ID": "1234", "MENNDL_LOGS": "logs", **scenario["env"],
    }  # fmt: skip
    out = subprocess.run(["bash", str(REPO / "slurm" / scenario["template"]), *scenario["args"]], cwd=work, env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    log = (tmp_path / "log").read_text() if (tmp_path / "log").exists() else ""
    header = "\n".join(_sbatch_lines(scenario["template"]))
    said = "".join(line.split("]: ", 1)[1] + "\n" for line in out.stdout.splitlines() if "]: " in line)
    return f"{header}\n--- commands\n{log}--- said\n{said}--- exit status {out.returncode}\n"


@pytest.mark.parametrize("template", TEMPLATES)
def test_templates_parse(template: str) -> None:
    out = subprocess.run(["bash", "-n", str(REPO / "slurm" / template)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("template", ["gpu.sbatch", "cpu.sbatch"])
def test_templates_carry_the_checkpoint_settings(template: str) -> None:
    lines = _sbatch_lines(template)
    for option in ("--signal=B:USR2@600", "--requeue", "--open-mode=append"):
        assert f"#SBATCH {option}" in lines
    text = (REPO / "slurm" / template).read_text()
    assert "--unbuffered" in text and "--output=\"$LOGS/rank-%t.out\"" in text and "trap " in text


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_template_commands_match_golden(name: str, tmp_path: Path) -> None:
    got = _run(name, tmp_path)
    golden = GOLDEN / f"{name}.txt"
    if os.environ.get("MENNDL_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(got)
    assert golden.exists(), f"{golden} missing: run with MENNDL_UPDATE_GOLDEN=1 and review it"
    assert got == golden.read_text()
