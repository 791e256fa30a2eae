# Two entry points on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   install everything into .venv, then run the default search (digits)
#   make test   install everything into .venv, then run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch (an unpinned torch pulls a multi-GB CUDA build), and MPI from PyPI.
	$(BIN)/pip install --quiet torch==2.13.0 mpi4py mpich
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/menndl run jobs/digits.toml

test: install lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check menndl tests benchmarks
	$(BIN)/mypy menndl --ignore-missing-imports

clean:
	rm -rf $(VENV) results .pytest_cache
