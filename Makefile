# Two commands: `make run` (install + start on the embedded demo data) and `make test` (install + all tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint replay-check bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/hcc-cds serve

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest

replay-check: $(VENV)/.installed
	for f in fixtures/requests/*.json; do $(BIN)/hcc-cds replay "$$f" --check || exit 1; done

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.sqlite3*
