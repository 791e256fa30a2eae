"""Energy counters without hardware: RAPL on a fake powercap tree, and the one-line reasons when there is none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from menndl.energy import RaplCounter, energy_unavailable, rapl_packages

RANGE_0 = 262_143_328_850  # a real package's max_energy_range_uj
RANGE_1 = 65_532_610_987


def domain(root: Path, name: str, energy: str | None, max_range: int | None = None) -> Path:
    """A powercap domain folder ``root/name`` with ``energy_uj`` (when given) and ``max_energy_range_uj``."""
    path = root / name
    path.mkdir()
    (path / "name").write_text(f"package-{name[-1]}\n")
    if energy is not None:
        (path / "energy_uj").write_text(energy)
    if max_range is not None:
        (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """Two readable packages, a sub-domain of package 0 (the core), a garbage, an empty and an unreadable domain."""
    root = tmp_path / "powercap"
    root.mkdir()
    domain(root, "intel-rapl:0", "1000000\n", RANGE_0)
    domain(root, "intel-rapl:1", "2000000\n", RANGE_1)
    domain(root, "intel-rapl:0:0", "5000000\n", RANGE_0)  # a sub-domain: counted in its package already
    domain(root, "intel-rapl:2", "not a number\n", RANGE_0)  # garbage: skipped
    domain(root, "intel-rapl:3", None, RANGE_0)  # no energy_uj at all: skipped
    (domain(root, "intel-rapl:4", None, RANGE_0) / "energy_uj").mkdir()  # unreadable even by root: skipped
    (root / "dtpm").mkdir()  # another powercap control type: not RAPL
    return root


def set_energy(package: Path, microjoules: int) -> None:
    """Write a new reading of ``package``'s counter."""
    (package / "energy_uj").write_text(f"{microjoules}\n")


def test_packages_are_the_readable_top_level_domains(powercap: Path) -> None:
    assert [p.name for p in rapl_packages(powercap)] == ["intel-rapl:0", "intel-rapl:1"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_package_is_skipped(powercap: Path) -> None:
    (powercap / "intel-rapl:1" / "energy_uj").chmod(0)
    try:
        assert [p.name for p in rapl_packages(powercap)] == ["intel-rapl:0"]
    finally:
        (powercap / "intel-rapl:1" / "energy_uj").chmod(0o644)


def test_no_packages_under_an_empty_or_missing_root(tmp_path: Path) -> None:
    assert rapl_packages(tmp_path) == []
    assert rapl_packages(tmp_path / "absent") == []
    with pytest.raises(ValueError, match="no readable RAPL"):
        RaplCounter([])


def test_joules_sum_the_packages(powercap: Path) -> None:
    packages = rapl_packages(powercap)
    counter = RaplCounter(packages)
    assert counter.source == "rapl (2 packages)"
    assert counter.joules() == 0.0  # since the counter was made
    set_energy(packages[0], 1_000_000 + 2_500_000)
    set_energy(packages[1], 2_000_000 + 500_000)
    set_energy(powercap / "intel-rapl:0:0", 99_000_000)  # the sub-domain changes nothing
    assert counter.joules() == pytest.approx(3.0, abs=1e-9)
    set_energy(packages[1], 2_000_000 + 1_500_000)
    assert counter.joules() == pytest.approx(4.0, abs=1e-9)
    assert counter.joules() == pytest.approx(4.0, abs=1e-9)  # no change, no energy


def test_one_package_reads_in_the_singular(powercap: Path) -> None:
    counter = RaplCounter(rapl_packages(powercap)[:1])
    assert counter.source == "rapl (1 package)"


def test_a_wrapped_counter_is_added_back(powercap: Path) -> None:
    packages = rapl_packages(powercap)
    set_energy(packages[0], RANGE_0 - 300_000)
    set_energy(packages[1], RANGE_1 - 1_000)
    counter = RaplCounter(packages)
    set_energy(packages[0], 200_000)  # wrapped at RANGE_0: 0.3 J + 0.2 J since the first reading
    set_energy(packages[1], RANGE_1 - 500)  # not wrapped: 500 uJ
    assert counter.joules() == pytest.approx(0.5 + 0.0005, abs=2e-6)  # (1 uJ: whether the range counts itself)
    set_energy(packages[1], 1_500)  # package 1 wraps now: 500 uJ + 1500 uJ
    assert counter.joules() == pytest.approx(0.5 + 0.0005 + 0.002, abs=4e-6)


def test_a_counter_without_its_range_wraps_at_32_bits(tmp_path: Path) -> None:
    package = domain(tmp_path, "intel-rapl:0", f"{2**32 - 10}\n")
    counter = RaplCounter(rapl_packages(tmp_path))
    set_energy(package, 90)
    assert counter.joules() == pytest.approx(100e-6, abs=2e-6)


def test_energy_on_the_cpu_needs_a_rapl_package(powercap: Path, tmp_path: Path) -> None:
    assert energy_unavailable("cpu", root=powercap) is None
    empty = tmp_path / "no-powercap"
    reason = energy_unavailable("cpu", root=empty)
    assert reason is not None and "\n" not in reason
    assert str(empty) in reason and "RAPL" in reason and "energy_uj" in reason
    assert "NVML" not in reason  # a CPU job does not need it


def test_energy_on_cuda_without_nvml_or_a_gpu_gives_a_reason(powercap: Path) -> None:
    reason = energy_unavailable("cuda", root=powercap)  # (a RAPL tree does not help a GPU job)
    if reason is None:
        pytest.skip("this machine has NVML and a GPU with an energy counter")
    assert reason and "\n" not in reason and "NVML" in reason
    assert "RAPL" not in reason


def test_auto_takes_either_and_names_both_when_neither(powercap: Path, tmp_path: Path) -> None:
    assert energy_unavailable("auto", root=powercap) is None  # RAPL is enough
    if energy_unavailable("cuda") is None:
        pytest.skip("this machine has NVML and a GPU with an energy counter")
    reason = energy_unavailable("auto", root=tmp_path / "none")
    assert reason is not None and "\n" not in reason
    assert "NVML" in reason and str(tmp_path / "none") in reason
