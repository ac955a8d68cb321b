# daskcluster: make setup | make run-day | make test | make bench
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/uv/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced-$(UV_VERSION)
DC := $(VENV)/bin/daskcluster

GALLERY ?= data/gallery
INPUT ?=
DAY ?=
CONFIG ?=
WORKERS ?=
ARGS ?=

.PHONY: setup run-day test test-all bench lint clean

setup: $(STAMP)

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools/uv uv==$(UV_VERSION)

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	touch $(STAMP)

run-day: $(STAMP)
ifeq ($(strip $(INPUT)),)
	$(DC) demo --data data/demo --gallery $(GALLERY) $(if $(CONFIG),--config $(CONFIG)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)
else
	$(DC) run-day --input $(INPUT) --gallery $(GALLERY) $(if $(DAY),--day $(DAY)) $(if $(CONFIG),--config $(CONFIG)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)
endif

test: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow" $(ARGS)

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python scripts/bench_search.py $(ARGS) $(SEARCH_ARGS)
	$(VENV)/bin/python scripts/bench_scaling.py $(ARGS) $(SCALING_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check daskcluster tests scripts

clean:
	rm -rf data/gallery .pytest_cache
