"""Which MPI stacks survive a dead rank, read from the library's version text and the launch environment.

The version texts are the first lines real libraries print (``MPI.Get_library_version()``): Open MPI 5.0.11 and
MPICH 5.0.2 from PyPI, as measured here. The error-class logic is checked against a stand-in for mpi4py's module:
the real calls are exercised end to end in tests/faults/test_rank_death.py.
"""

from __future__ import annotations

import pytest

from menndl.transport.rank_death import OMPI_FT_VARIABLE, is_rank_failure, library_name, rank_death_support

OPEN_MPI = "Open MPI v5.0.11, package: Open MPI root@buildhost Distribution, ident: 5.0.11, repo rev: v5.0.11"
MPICH = "MPICH Version:      5.0.2\nMPICH Release date: unreleased development copy\nMPICH ABI: 0:0:0"


@pytest.mark.parametrize(("version", "name"), [
    (OPEN_MPI, "Open MPI 5.0.11"),
    (MPICH, "MPICH 5.0.2"),
    ("Intel(R) MPI Library 2021.10 for Linux* OS\n", "Intel(R) MPI Library 2021.10 for Linux* OS"),
    ("", "an unknown MPI library"),
])  # fmt: skip
def test_library_name_is_read_from_the_version_text(version: str, name: str) -> None:
    assert library_name(version) == name


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " on "])
def test_open_mpi_launched_with_ulfm_survives(value: str) -> None:
    support = rank_death_support(OPEN_MPI, {OMPI_FT_VARIABLE: value})
    assert support.survives
    assert support.line == ("a worker rank that dies costs its evaluation, not the job "
                            "(Open MPI 5.0.11 with ULFM, launched with --with-ft ulfm)")  # fmt: skip


@pytest.mark.parametrize("environ", [{}, {OMPI_FT_VARIABLE: "0"}, {OMPI_FT_VARIABLE: "false"}])
def test_open_mpi_without_ulfm_does_not_survive_and_says_what_to_add(environ: dict[str, str]) -> None:
    support = rank_death_support(OPEN_MPI, environ)
    assert not support.survives
    assert support.line.startswith("a rank that dies ends the MPI job; --resume continues (Open MPI 5.0.11")
    assert "add it to mpirun" in support.line


def test_open_mpi_started_directly_by_srun_does_not_survive_even_with_ft_on() -> None:
    """Measured on the test cluster: Slurm's PMIx server reports no dead rank to the others and ends the step."""
    environ = {OMPI_FT_VARIABLE: "1", "PMIX_NAMESPACE": "slurm.pmix.39406413.0"}
    support = rank_death_support(OPEN_MPI, environ)
    assert not support.survives
    assert "started by srun --mpi=pmix" in support.line
    assert "mpirun --with-ft ulfm inside the allocation" in support.line
    assert rank_death_support(OPEN_MPI, {**environ, "PMIX_NAMESPACE": "prterun-vm-12937@1"}).survives


def test_mpich_never_survives_even_with_the_open_mpi_variable() -> None:
    support = rank_death_support(MPICH, {OMPI_FT_VARIABLE: "1"})
    assert not support.survives
    assert "MPICH 5.0.2 cannot survive a dead rank: no ULFM" in support.line


def test_an_unknown_library_does_not_survive() -> None:
    assert not rank_death_support("Cray MPICH-like 8.1", {}).survives


class _Exception(Exception):
    def __init__(self, error_class: int) -> None:
        super().__init__(error_class)
        self.error_class = error_class

    def Get_error_class(self) -> int:  # noqa: N802 - mpi4py's name
        return self.error_class


class _MPI:
    """The names of mpi4py's module that is_rank_failure reads."""

    Exception = _Exception
    ERR_PROC_FAILED = 75
    ERR_PROC_FAILED_PENDING = 76
    ERR_REVOKED = 77


class _MPIWithoutULFM:
    """An mpi4py built against a library with no ULFM error classes."""

    Exception = _Exception


@pytest.mark.parametrize("error_class", [75, 76, 77])
def test_rank_failure_classes_are_recognised(error_class: int) -> None:
    assert is_rank_failure(_Exception(error_class), _MPI)


def test_other_errors_are_not_rank_failures() -> None:
    assert not is_rank_failure(_Exception(14), _MPI)  # MPI_ERR_TRUNCATE, say
    assert not is_rank_failure(RuntimeError("not MPI"), _MPI)
    assert not is_rank_failure(_Exception(75), _MPIWithoutULFM)
