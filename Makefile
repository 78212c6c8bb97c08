# The README's commands. `make demo` and `make test` each install everything first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install sysdeps-postgres demo test test-all lint bench clean-warehouse

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# This machine's pip config lists local indexes that lack some packages: drop that noise.
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $@

# The Postgres-catalog tests start a real server: Debian's postgresql package (as root).
sysdeps-postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
		[ "$$(id -u)" = 0 ] || { echo "install PostgreSQL (apt-get install postgresql)"; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

demo: install  ## build the embedded synthetic demo into ./warehouse
	$(BIN)/cellstore build

test: install sysdeps-postgres  ## the default (fast) test suite: what CI runs
	$(BIN)/pytest -q

test-all: install sysdeps-postgres  ## every test, slow ones included
	$(BIN)/pytest -q -m ""

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/bench_noop_build.py

clean-warehouse:
	rm -rf warehouse/catalog.* warehouse/data warehouse/cache warehouse/artifacts warehouse/tmp
