# tunix-rt — `make run` brings the app up, `make test` runs everything CI runs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck migrations-check pytest install install-gpu bench clean help

help:
	@echo "make run    - install, migrate and serve web + worker at http://127.0.0.1:8000"
	@echo "make test   - ruff, mypy, makemigrations --check and the test suite (SQLite, then PostgreSQL + Redis)"
	@echo "make install-gpu - the normal install plus jax's CUDA 12 plugin for a GPU training worker (~3 GB)"

$(STAMP): requirements.txt requirements-dev.txt requirements-train.txt
	@test -x $(PY) || "$$(bin/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@# The training stack is a complete pinned set: --no-deps keeps google-tunix's unused extras out.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-train.txt
	@touch $@

install: $(STAMP)

# A GPU training worker: jax's CUDA 12 plugin and NVIDIA's libraries on top of the pinned stack
# (--no-deps again: every package is pinned in requirements-gpu.txt). Then check what JAX sees.
install-gpu: $(STAMP) requirements-gpu.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-gpu.txt
	JAX_PLATFORMS= $(PY) -m runs.training.devices

.env:
	@echo "Writing .env for local use (DEBUG on, a random SECRET_KEY)"
	@printf 'DEBUG=true\nSECRET_KEY=%s\n' "$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env

run: $(STAMP) .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py ensure_admin --url http://$${HOST:-127.0.0.1}:$${PORT:-8000}/
	bin/serve

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	DEBUG=true $(VENV)/bin/mypy .

migrations-check: $(STAMP)
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run

pytest: $(STAMP)
	bin/run-tests

test: lint typecheck migrations-check pytest

bench: $(STAMP)
	@echo "See docs/benchmarks.md for each benchmark's command."

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
