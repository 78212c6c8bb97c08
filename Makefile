# The README's commands. `make demo` and `make test` each install everything first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
INTEROP ?= .venv-interop
# Debian packages the tests use (idempotent; needs root or sudo): one per line.
SYSDEPS = \
	chromium \
	postgresql

.PHONY: install interop sysdeps demo test test-all lint bench clean-warehouse

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# This machine's pip config lists local indexes that lack some packages: drop that noise.
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $@

interop: $(INTEROP)/.installed  ## copairs + pycytominer in their own venv (the interop test)

$(INTEROP)/.installed: tests/interop/requirements.txt
	$(PYTHON) -m venv $(INTEROP)
	$(INTEROP)/bin/pip install --quiet --disable-pip-version-check -r $< 2>&1 \
		| { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $@

sysdeps:  ## Debian packages the tests need (chromium renders the report, postgresql serves the catalog tests); quiet when present
	@missing=$$(for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if ! command -v apt-get >/dev/null; then echo "sysdeps: no apt-get; tests that need $$missing skip"; exit 0; fi; \
		sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		echo "sysdeps: installing $$missing"; \
		{ $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			$$sudo apt-get install -y -qq $$missing >/dev/null; } \
			|| echo "sysdeps: could not install $$missing: the tests that need it skip"; \
	fi

demo: install  ## build the embedded synthetic demo into ./warehouse
	$(BIN)/cellstore build

test: install interop sysdeps  ## the default (fast) test suite: what CI runs
	$(BIN)/pytest -q

test-all: install interop sysdeps  ## every test, slow ones included
	$(BIN)/pytest -q -m ""

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python benchmarks/bench_noop_build.py

clean-warehouse:
	rm -rf warehouse/catalog.* warehouse/data warehouse/cache warehouse/artifacts warehouse/tmp
