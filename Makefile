# driftloop — one machine, no Docker needed (the container stack is optional: deploy/docker/compose.mk).  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed

export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: help setup hooks lock test test-fast lint format

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.lock pyproject.toml
	@command -v java >/dev/null || { echo "Java 17 is required (Spark): install a JDK 17 and retry"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --python $(PY) --quiet --compile-bytecode -r requirements/dev.lock
	$(PY) -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'driftloop.pth').write_text('$(CURDIR)\n')"
	@touch $@

setup: $(STAMP) hooks ## create .venv with everything from requirements/dev.lock, git hook

# The git pre-commit hook (.pre-commit-config.yaml). Installed once per clone; skipped outside
# a git checkout and in a linked worktree, whose hooks directory is shared with the main one.
hooks: $(STAMP)
	@if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		echo "not a git checkout: no pre-commit hook installed"; \
	elif [ "$$(git rev-parse --git-dir)" != "$$(git rev-parse --git-common-dir)" ]; then \
		: "linked worktree: run $(VENV)/bin/pre-commit install yourself if you want it"; \
	elif [ ! -e "$$(git rev-parse --git-path hooks/pre-commit)" ]; then \
		$(VENV)/bin/pre-commit install --allow-missing-config; \
	fi

lock: ## re-resolve the pinned lock files from requirements/*.txt
	$(UV) pip compile requirements/dev.txt -p 3.11 --no-header -q -o requirements/dev.lock
	$(UV) pip compile requirements/serving.txt -p 3.11 --no-header -q -o requirements/serving.lock
	$(UV) pip compile requirements/pipeline.txt -p 3.11 --no-header -q -c requirements/dev.lock -o requirements/pipeline.lock

test: setup ## run the whole suite (skew, DAG, integration and e2e tests included)
	$(PY) -m pytest

test-fast: setup ## unit tests only
	$(PY) -m pytest -m "not slow"

lint: setup ## ruff lint + format check, mypy over the product packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

DATA ?=
SOURCE ?=
DRIFT_DEMO_ARGS ?=
STACK := $(PY) deploy/local/stack.py

.PHONY: demo demo-drift up down status
USE_CASE ?=

demo: setup ## start Airflow + MLflow + API, train through Airflow (DATA=path, USE_CASE=credit), predict
	$(STACK) demo --data "$(DATA)" $(if $(SOURCE),--source $(SOURCE),) $(if $(USE_CASE),--use-case $(USE_CASE),)

demo-drift: setup ## IMDB champion, in-domain day, product-review day -> drift -> retrain -> hot reload
	$(PY) deploy/local/drift_demo.py $(DRIFT_DEMO_ARGS)

up: setup ## start the embedded stack only
	$(STACK) up

down: ## stop everything `make demo` / `make up` started
	@test -x $(PY) && $(STACK) down || echo "nothing to stop (no .venv)"

status: ## show which services run and are healthy
	@$(STACK) status

.PHONY: bench bench-quality bench-drift bench-drift-calibrate bench-serving bench-features bench-readme
bench: bench-serving bench-features bench-drift bench-quality ## run every benchmark (prints figures, writes bench/results/*.json and the README table)
	$(PY) -m bench.readme_table --write

bench-readme: setup ## rewrite README.md's benchmark table from bench/results/*.json
	$(PY) -m bench.readme_table --write

bench-quality: setup ## model search quality: IMDB vs the published table; USE_CASE=credit: UCI credit default
	$(if $(filter credit,$(USE_CASE)),$(PY) -m bench.quality_credit,$(PY) -m bench.quality_bench)

bench-drift: setup ## held-out detection / false-alarm rates over replayed daily batches
	$(PY) -m bench.drift_bench

bench-drift-calibrate: setup ## choose the drift decision's thresholds on the calibration seed's days
	$(PY) -m bench.drift_calibrate

bench-serving: setup ## this API vs `mlflow models serve` on the same model version (needs wrk); USE_CASE=credit: the credit model
	$(if $(filter credit,$(USE_CASE)),$(PY) -m bench.serving_credit,$(PY) -m bench.serving_bench)

bench-features: setup ## 500k reviews: one pandas process vs the Spark job (local[2], standalone); TUNE=1: settings sweep
	$(PY) -m bench.features_bench $(if $(TUNE),--tune --rows 100000,)

include deploy/docker/compose.mk
include deploy/k8s/k8s.mk
