# ssl-ser developer commands. `make test` installs first when needed.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.ssl-ser-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Test modules compiled once (pytest's assertion rewriting) are reused by later runs, also
# where the environment turns bytecode off: ~5 s of CPU less per test process.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install test test-fast lint format demo bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# Tests run in one process per core (pytest-xdist): most are single-threaded Python. Each test
# file goes to one process (loadfile), so a module-scoped fixture (a whole report) is built once.
test: lint
	$(BIN)/pytest -q -n auto --maxprocesses 4 --dist loadfile

# The edit loop: everything but the slow end-to-end, kill and parallel tests (CI runs all).
test-fast: lint
	$(BIN)/pytest -q -n auto --maxprocesses 4 --dist loadfile -m "not slow"

demo: install
	$(BIN)/ser demo

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
