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
# distractor sizes of benchmarks/quality.py; QUALITY_SIZES=0,100000,300000,1000000 adds the 1M row
QUALITY_SIZES ?= 0,100000,300000

.PHONY: setup run-day test test-all bench lint clean
.PHONY: run-day-mpi image-cpu image-gpu k8s-render k8s-submit

setup: $(STAMP)

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools/uv uv==$(UV_VERSION)

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	touch $(STAMP)

# Local by default; SCHEDULER=tcp://host:8786 uses an existing cluster; MPI=N runs under mpirun with N ranks
# (rank 0 scheduler, rank 1 the day, the rest workers).
run-day: $(STAMP)
ifneq ($(strip $(MPI)),)
	$(VENV)/bin/mpirun -n $(MPI) $(MPIRUN_ARGS) $(VENV)/bin/python -m daskcluster.mpi $(MPI_ARGS) $(if $(strip $(INPUT)),run-day --input $(INPUT) $(if $(DAY),--day $(DAY)),demo --data data/demo) --gallery $(GALLERY) $(if $(CONFIG),--config $(CONFIG)) $(ARGS)
else ifeq ($(strip $(INPUT)),)
	$(DC) demo --data data/demo --gallery $(GALLERY) $(if $(CONFIG),--config $(CONFIG)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(ARGS)
else
	$(DC) run-day --input $(INPUT) --gallery $(GALLERY) $(if $(DAY),--day $(DAY)) $(if $(CONFIG),--config $(CONFIG)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) $(ARGS)
endif

test: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow" $(ARGS)

test-all: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.search $(ARGS) $(SEARCH_ARGS)
	$(VENV)/bin/python -m benchmarks.assign $(ARGS) $(ASSIGN_ARGS)
	$(VENV)/bin/python -m benchmarks.scaling $(ARGS) $(SCALING_ARGS)
	$(VENV)/bin/python -m benchmarks.quality --sizes $(QUALITY_SIZES) $(ARGS) $(QUALITY_ARGS)
	$(VENV)/bin/python -m benchmarks.history $(ARGS) $(HISTORY_ARGS)
	$(VENV)/bin/python -m benchmarks.first_day $(ARGS) $(FIRST_DAY_ARGS)

LINT_PATHS := daskcluster tests scripts benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

clean:
	rm -rf data/gallery .pytest_cache

# ---- deployment (README "Deploy") ----
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -n 1)
IMAGE ?= daskcluster
DOCKER ?= docker
MPI_WORKERS ?= 2
MPIRUN_ARGS ?= --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
MPI_ARGS ?=
OVERLAY ?= cpu
NAMESPACE ?= daskcluster
KUBECTL ?= kubectl

run-day-mpi: $(STAMP)
	@test -n "$(INPUT)" || { echo "usage: make run-day-mpi INPUT=DAY_DIR [GALLERY=DIR] [MPI_WORKERS=N] [DAY=...] [CONFIG=...]"; exit 2; }
	$(VENV)/bin/mpirun -n $$(( $(MPI_WORKERS) + 2 )) $(MPIRUN_ARGS) $(VENV)/bin/python -m daskcluster.mpi $(MPI_ARGS) run-day --input $(INPUT) --gallery $(GALLERY) $(if $(DAY),--day $(DAY)) $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

image-cpu:
	$(DOCKER) build -f docker/Dockerfile.cpu -t $(IMAGE):$(VERSION)-cpu .

image-gpu:
	$(DOCKER) build -f docker/Dockerfile.gpu -t $(IMAGE):$(VERSION)-gpu .

k8s-render: $(STAMP)
	@if command -v $(KUBECTL) >/dev/null 2>&1; then $(KUBECTL) kustomize k8s/$(OVERLAY); \
	else $(VENV)/bin/python -m tests.deploy.kustomize k8s/$(OVERLAY); fi

k8s-submit: $(STAMP)
	@test -n "$(DAY)" || { echo "usage: make k8s-submit DAY=YYYY-MM-DD [OVERLAY=cpu|gpu] [NAMESPACE=daskcluster]"; exit 2; }
	$(VENV)/bin/python -m daskcluster.k8s render --template k8s/$(if $(filter gpu,$(OVERLAY)),gpu,base)/daskjob.yaml --day $(DAY) \
	  | $(KUBECTL) create --namespace $(NAMESPACE) -f -
