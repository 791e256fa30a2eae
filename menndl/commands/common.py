"""Helpers shared by several subcommands."""

from __future__ import annotations

from menndl.data import Dataset, load_dataset
from menndl.errors import UserError
from menndl.genome import InputSpec
from menndl.job import Job


def load_job_data(job: Job) -> Dataset:
    """The job's dataset, split as its ``[data]`` table says (raises UserError for bad data)."""
    return load_dataset(
        job.data.source,
        base_dir=job.base_dir,
        validation_fraction=job.data.validation_fraction,
        test_fraction=job.data.test_fraction,
        split_seed=job.data.split_seed,
    )


def inspect_data(job: Job) -> tuple[InputSpec, str, str]:
    """Load and check the job's dataset on the master: (input spec, fingerprint, one-line summary)."""
    data = load_job_data(job)
    # The master keeps only the shapes; every worker loads its own copy and checks the fingerprint.
    return InputSpec(shape=tuple(data.input_shape), num_classes=data.num_classes), data.fingerprint(), data.summary()


def check_strategy(job: Job) -> None:
    """Raise UserError when the job's ``search.strategy`` needs a package that is not installed."""
    if job.search.strategy == "optuna":
        from menndl.master.optuna_proposer import optuna_available

        if not optuna_available():
            raise UserError(
                f'{job.path}: search.strategy = "optuna" needs the optuna package, which is not installed '
                "(pip install optuna)"
            )
