# micboard: `make serve` runs the product as deployed, `make demo` adds the simulated rig, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000
HOST   ?= 127.0.0.1

.PHONY: serve demo test bench lint chromium migrate clean screenshots

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

migrate: $(VENV)/.runtime
	$(PY) manage.py migrate --verbosity 0

## serve: gunicorn (static files by whitenoise) + the Huey consumer on http://$(HOST):$(PORT), one supervisor
## that stops them all on Ctrl-C, SIGTERM or SIGHUP (configuration from the environment, see README)
serve: migrate
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

## demo: serve, plus the simulated receivers of the demo rig and a demo login
demo: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py serve --demo --host $(HOST) --port $(PORT)

## chromium: the system browser the end-to-end tests drive (never a downloaded one)
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's chromium for the end-to-end tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The end-to-end tests need /usr/bin/chromium: install your distribution's 'chromium' package" >&2; \
		exit 1; \
	fi

## test: the whole suite, end-to-end tests in Chromium included
test: $(VENV)/.dev chromium
	$(PY) -m pytest

## screenshots: run the end-to-end tests and refresh the README's pictures in docs/screenshots/
screenshots: $(VENV)/.dev chromium
	MICBOARD_README_SHOTS=1 $(PY) -m pytest e2e

## bench: speed and memory figures on a throwaway data directory: poll cycle, live links, board refresh, and against
## `manage.py serve`: device change -> Chromium and 5 min of 100 screens per board size, then a 24-hour show at
## high speed (history size, report against the simulator; docs/report.md) (about 30 min in all;
## BENCH_ARGS="--latency-trials 0 --load-seconds 0" for the quick part alone)
BENCH_ARGS ?= --latency-trials 10 --load-seconds 300
bench: $(VENV)/.dev chromium
	@dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	MICBOARD_DATA_DIR="$$dir" $(PY) manage.py migrate --verbosity 0 && \
	MICBOARD_DATA_DIR="$$dir" $(PY) manage.py collectstatic --noinput --verbosity 0 && \
	MICBOARD_DATA_DIR="$$dir" $(PY) manage.py benchmark $(BENCH_ARGS) && \
	MICBOARD_DATA_DIR="$$dir" $(PY) manage.py simulate_show

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
