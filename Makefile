# `make run` (install + start on the embedded demo data), `make test` (install + all tests),
# `make prod-local` (the production stack from Debian packages: nginx -> gunicorn -> PostgreSQL), `make bench`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# What the tests start for real: Chromium (tests/e2e), PostgreSQL and nginx (tests/service); jemalloc, the
# production stack's allocator (deploy/stack.py allocator_env).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint system-deps prod-local replay-check bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $@

# Debian packages, installed only when missing (a no-op, without apt, once they are there).
# WITH_BROWSER=0 leaves out chromium (make prod-local needs only PostgreSQL, nginx and jemalloc).
WITH_BROWSER ?= 1
system-deps:
	@missing=""; \
	[ "$(WITH_BROWSER)" = 0 ] || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 || missing="$$missing libjemalloc2"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: $(VENV)/.installed
	$(BIN)/hcc-cds serve

test: system-deps $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest

prod-local: $(VENV)/.installed
	$(MAKE) --no-print-directory system-deps WITH_BROWSER=0
	$(BIN)/python -m deploy.stack

replay-check: $(VENV)/.installed
	for f in fixtures/requests/*.json; do $(BIN)/hcc-cds replay "$$f" --check || exit 1; done

bench: $(VENV)/.installed
	$(MAKE) --no-print-directory system-deps WITH_BROWSER=0
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.sqlite3*
