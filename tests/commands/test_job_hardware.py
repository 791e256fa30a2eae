"""Selection (NSGA-III, SPEA2) and hardware objectives in a job: ``menndl check`` refuses bad ones in one line.

The error cases run ``menndl.cli.main`` in this process (a job is refused before any data is read, so
each takes milliseconds); the valid job and one refusal also run as the real ``menndl`` command.  Every job
uses the embedded default dataset (digits).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import run_menndl

from menndl.cli import main
from menndl.energy import energy_unavailable
from menndl.errors import UserError
from menndl.job import parse_job

pytestmark = pytest.mark.timeout(120)

SMALL_SPACE = """
[space]
max_features = 3
max_head = 1
filters = [4, 16]
dense_units = [8, 32]
"""


def write_job(folder: Path, search: str, extra: str = "") -> Path:
    """A job file in ``folder`` whose ``[search]`` table holds ``search`` (plus evaluations) and ``extra`` tables."""
    path = folder / "job.toml"
    path.write_text(f'name = "hardware"\n\n[search]\nevaluations = 4\n{search}\n{SMALL_SPACE}\n{extra}\n')
    return path


def check_error(capsys: pytest.CaptureFixture[str], job: Path) -> str:
    """Run ``menndl check JOB`` in this process; assert exit 2 and one ``menndl: error:`` line; return that line."""
    status = main(["check", str(job)])
    captured = capsys.readouterr()
    assert status == 2, captured.out + captured.err
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("menndl: error: "), captured.err
    assert str(job) in lines[0]  # the file is named
    assert captured.out == ""  # nothing described: refused before the data was read
    return lines[0]


FOUR = 'objectives = ["accuracy", "params", "train_seconds", "flops"]\n'


@pytest.mark.parametrize(
    "search, extra, fragments",
    [
        ('objectives = ["accuracy", "speed"]', "", ["search.objectives", "unknown objective 'speed'", "latency"]),
        ('selection = "nsga4"', "", ["search.selection", "nsga2, nsga3, spea2", "'nsga4'"]),
        (
            FOUR + 'selection = "nsga3"\nreference_points = [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]',
            "",
            ["search.reference_points[0]", "expected 4 values", "got 3", "accuracy, params, train_seconds, flops"],
        ),
        (
            FOUR + 'selection = "nsga3"\nreference_points = [[0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0]]',
            "",
            ["search.reference_points[1]", "expected 4 values", "got 3"],
        ),
        (
            'objectives = ["accuracy", "params"]\nreference_points = [[0.5, 0.5]]',
            "",
            ["search.reference_points", 'only used with selection = "nsga3"', '"nsga2"'],
        ),
        (
            'objectives = ["accuracy", "params"]\nselection = "nsga3"\nreference_points = [[0.5, 0.5]]\n'
            "reference_divisions = 4",
            "",
            ["search.reference_points", "not both"],
        ),
        ('selection = "spea2"\npopulation = 600', "", ["search.selection", "spea2", "at most 500", "600", "nsga3"]),
        ('selection = "nsga3"\nstrategy = "random"', "", ["search.selection", '"nsga3"', '"random"']),
        ('selection = "nsga3"\naging = true', "", ["search.selection", '"nsga3"', "aging"]),
        ("max_latency = 0", "", ["search.max_latency", "> 0"]),
        ("max_memory = -5", "", ["search.max_memory", "> 0"]),
        ("", '[measure]\nprecision = "fp8"', ["measure.precision", "'fp8'", "training, fp32, bf16, fp16"]),
        ("", '[measure]\nrecord = ["power"]', ["measure.record", "'power'", "latency, memory, energy"]),
        ("", '[measure]\nruntime = "tensorrt"', ["measure.runtime", "'tensorrt'", "torch, onnxruntime"]),
        ("", '[measure]\nruntime = "onnxruntime"\nprecision = "bf16"', ["measure.precision", "fp32", "'bf16'"]),
        (
            'objectives = ["accuracy", "latency"]',
            '[training]\ndevice = "cuda"\n[measure]\nruntime = "onnxruntime"',
            ["search.objectives 'latency'", "not measurable", "CPU only"],
        ),
        (
            'objectives = ["accuracy", "latency"]',
            '[training]\ndevice = "cpu"\nprecision = "fp16"',
            ["search.objectives 'latency'", "not measurable", "fp16", "measure.precision"],
        ),
    ],
)
def test_bad_selection_and_hardware_settings_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], search: str, extra: str, fragments: list[str]
) -> None:
    line = check_error(capsys, write_job(tmp_path, search, extra))
    for fragment in fragments:
        assert fragment in line, line


NO_ENERGY = energy_unavailable("auto")


@pytest.mark.skipif(NO_ENERGY is None, reason="this machine can measure energy (RAPL or NVML)")
@pytest.mark.parametrize(
    "search, extra, user",
    [
        ('objectives = ["accuracy", "energy"]', "", "search.objectives 'energy'"),
        ('objectives = ["accuracy", "train_energy"]', "", "search.objectives 'train_energy'"),
        ("max_energy = 0.5", "", "search.max_energy"),
        ("", '[measure]\nrecord = ["energy"]', "measure.record"),
    ],
)
def test_energy_is_refused_where_nothing_measures_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], search: str, extra: str, user: str
) -> None:
    line = check_error(capsys, write_job(tmp_path, search, extra))
    assert f"{user}: energy is not measurable on this machine" in line, line
    assert NO_ENERGY is not None and NO_ENERGY in line  # the reason: no NVML, no RAPL


@pytest.mark.skipif(NO_ENERGY is None, reason="this machine can measure energy (RAPL or NVML)")
def test_energy_objective_refused_by_the_real_command(tmp_path: Path) -> None:
    job = write_job(tmp_path, 'objectives = ["accuracy", "energy"]')
    out = run_menndl(["check", str(job)], timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "energy" in lines[0] and "search.objectives" in lines[0]
    assert list(tmp_path.iterdir()) == [job]  # nothing written


def test_valid_nsga3_job_with_four_objectives_passes_check(tmp_path: Path) -> None:
    job = write_job(tmp_path, 'objectives = ["accuracy", "params", "latency", "memory"]\nselection = "nsga3"\n'
                    "population = 24\nreference_divisions = 3")  # fmt: skip
    out = run_menndl(["check", str(job)], timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].endswith("job.toml: ok")
    assert "objectives accuracy, params, latency, memory" in out.stdout and "nsga3" in out.stdout
    assert list(tmp_path.iterdir()) == [job]


def test_valid_nsga3_job_with_its_own_reference_points_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    points = "[[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0.25, 0.25, 0.25, 0.25]]"
    job = write_job(tmp_path, FOUR + f'selection = "nsga3"\nreference_points = {points}')
    assert main(["check", str(job)]) == 0, capsys.readouterr().err
    assert "objectives accuracy, params, train_seconds, flops" in capsys.readouterr().out
    parsed = parse_job(job.read_text()).search
    assert len(parsed.reference_points) == 5 and parsed.reference_points[4] == (0.25,) * 4


def test_an_all_zero_reference_point_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path, 'objectives = ["accuracy", "params"]\nselection = "nsga3"\n'
                    "reference_points = [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]")  # fmt: skip
    line = check_error(capsys, job)
    assert "search.reference_points[1]" in line


def test_nsga3_with_one_objective_is_checked_or_refused_promptly(tmp_path: Path) -> None:
    job = write_job(tmp_path, 'objectives = ["accuracy"]\nselection = "nsga3"')
    try:
        out = run_menndl(["check", str(job)], timeout=8, cwd=tmp_path)  # a check takes well under a second
    except subprocess.TimeoutExpired:
        pytest.fail("menndl check of a one-objective nsga3 job did not finish in 8 s")
    assert out.returncode in (0, 2) and "Traceback" not in out.stderr, out.stderr
    if out.returncode == 2:  # refused: in one line, naming the setting
        assert len(out.stderr.strip().splitlines()) == 1 and "search." in out.stderr


def test_reference_divisions_beyond_any_population_are_refused() -> None:
    text = ('[search]\nevaluations = 3\nobjectives = ["accuracy", "params", "flops", "train_seconds", "latency"]\n'
            'selection = "nsga3"\nreference_divisions = 1000\n')  # fmt: skip
    with pytest.raises(UserError, match="search.reference_divisions"):
        parse_job(text)


def test_spea2_at_the_population_limit_is_accepted() -> None:
    job = parse_job('[search]\nevaluations = 3\nselection = "spea2"\npopulation = 500\n')
    assert job.search.selection == "spea2" and job.search.population == 500


def measurements(search: str, measure: str = "") -> list[str]:
    """``Job.measurements`` of a job with these ``[search]`` lines and ``[measure]`` lines."""
    text = f"[search]\nevaluations = 3\n{search}\n"
    if measure:
        text += f"[measure]\n{measure}\n"
    return parse_job(text).measurements


@pytest.mark.parametrize(
    "search, measure, expected",
    [
        ("", "", []),  # accuracy, params, train_seconds: every training gives them
        ('objectives = ["accuracy", "flops"]', "", []),
        ('objectives = ["accuracy", "latency"]', "", ["latency"]),
        ('objectives = ["accuracy", "batch_latency"]', "", ["latency"]),
        ('objectives = ["accuracy", "train_memory"]', "", ["memory"]),
        ('objectives = ["accuracy", "train_energy", "latency"]', "", ["latency", "energy"]),
        ('objectives = ["energy", "memory", "latency"]', "", ["latency", "memory", "energy"]),
        ("max_latency = 0.01", "", ["latency"]),
        ("max_memory = 1000000", "", ["memory"]),
        ("max_energy = 2.5", "", ["energy"]),
        ('objectives = ["accuracy", "memory"]\nmax_latency = 0.5', "", ["latency", "memory"]),
        ("", 'record = ["energy", "latency"]', ["latency", "energy"]),
        ('objectives = ["accuracy", "memory"]', 'record = ["memory"]', ["memory"]),
        ('objectives = ["latency", "batch_latency"]\nmax_latency = 1.0', 'record = ["latency"]', ["latency"]),
        ("max_energy = 1.0", 'record = ["memory"]', ["memory", "energy"]),
    ],
)
def test_measurements_from_objectives_limits_and_record(search: str, measure: str, expected: list[str]) -> None:
    assert measurements(search, measure) == expected
