# fmnist-hpo: `make help` lists the targets. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help install data sweep worker best-eval predict train test test-fast test-slow check-system lint format ui dashboard services services-stop bench docs-images clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the project with its dev tools

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	@touch $@

data: install ## Make sure Fashion-MNIST is here: Debian package, else download, else explain
	@$(PY) -m data --quiet || { \
	  echo "Fashion-MNIST not found: trying the Debian package dataset-fashion-mnist"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] && echo "" || echo "sudo -n"); \
	  if command -v apt-get >/dev/null && { $$SUDO apt-get install -y -qq dataset-fashion-mnist \
	       || { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; }; }; then \
	    $(PY) -m data; \
	  else \
	    echo "Debian package unavailable: trying torchvision's download"; \
	    $(PY) -m data --download || { \
	      echo "error: no Fashion-MNIST. Install it with 'sudo apt-get install dataset-fashion-mnist'" \
	           "(Debian/Ubuntu), or allow internet access for torchvision's download" \
	           "(make data), or set FMNIST_DIR to a folder holding the four .gz files."; exit 1; }; \
	  fi; }

# The search `make sweep`, `make worker` and `make best-eval` work on (conf/experiment/).
EXPERIMENT ?= quick

sweep: data ## Run a search: EXPERIMENT=quick (default, ~13 min) or accuracy; rerun to resume it
	$(PY) train.py -m experiment=$(EXPERIMENT) $(ARGS)

# STUDY=<name>, else the study of an EXPERIMENT given to make, else the storage's most recent.
BEST_EVAL_STUDY = $(if $(STUDY),study=$(STUDY),$(if $(filter-out file default,$(origin EXPERIMENT)),study=fmnist-$(EXPERIMENT)))

best-eval: data ## Retest the best trial on the test set, register it (STUDY=, STORAGE=, ARGS="retrain=true")
	$(PY) -m hpo.retest.best_eval $(BEST_EVAL_STUDY) $(if $(STORAGE),storage=$(STORAGE)) $(ARGS)

predict: install ## Classify images with the champion model: make predict IMAGES="a.png b.png"
	@[ -n "$(IMAGES)" ] || { echo 'usage: make predict IMAGES="a.png b.png"'; exit 2; }
	$(PY) -m hpo.retest.predict $(IMAGES)

train: data ## Train one model (extra Hydra overrides: make train ARGS="model=seed_cnn")
	$(PY) train.py $(ARGS)

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-fast: install ## Fast tests only (synthetic data, a few minutes)
	$(PY) -m pytest -m "not slow" -q

# PostgreSQL and Chromium, which only the slow tests need: one message at once, not failures late.
check-system: install
	@$(PY) tests/system_check.py

test-slow: data check-system ## Slow end-to-end tests on the real data (needs postgresql, chromium)
	$(PY) -m pytest -m slow -q

test: check-system lint test-fast test-slow ## Everything CI runs: lint, fast tests, slow tests

ui: install ## MLflow UI for the project's tracking store on http://127.0.0.1:5000 (prints the runs link)
	@$(PY) -m hpo.tracking.ui tracking.uri=sqlite:///$(CURDIR)/mlflow.db
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# The default sweep's storage (conf/hydra/sweeper/optuna.yaml); STORAGE= picks another.
dashboard: STORAGE ?= sqlite:///$(CURDIR)/optuna.db
dashboard: install ## Optuna dashboard for the study storage on http://127.0.0.1:8080 (STORAGE=)
	@$(PY) -m hpo.sweep.dashboard '$(STORAGE)' --host 127.0.0.1 --port 8080

services: install ## Start local PostgreSQL + MLflow server in .services/ (HOST=0.0.0.0 opens them)
	$(PY) -m hpo.services start $(if $(HOST),--host $(HOST))

services-stop: install ## Stop the services of `make services` (keeps their data)
	$(PY) -m hpo.services stop

# One more sweep process on a shared study, from any host (`make services` prints the URLs;
# run `source .services/env` or copy its credentials first). Not echoed: a URL may hold a
# password, and the sweeper logs it masked.
worker: data ## Join a study as one more worker: make worker STORAGE=<optuna URL> TRACKING=<mlflow URL> [ARGS=]
	@[ -n "$(STORAGE)" ] && [ -n "$(TRACKING)" ] || { \
	  echo "usage: make worker STORAGE=<Optuna storage URL> TRACKING=<MLflow tracking URL> [ARGS=...]"; \
	  echo "       (make services prints both; same study settings as make sweep unless ARGS says)"; exit 2; }
	@$(PY) train.py -m experiment=$(EXPERIMENT) 'hydra.sweeper.storage=$(STORAGE)' 'tracking.uri=$(TRACKING)' \
	  "hydra.sweep.dir=multirun/workers/$$(hostname)-$$$$" $(ARGS)

bench: data ## Throughput, time-to-accuracy and memory benchmarks on the real data
	$(PY) bench/throughput.py
	$(PY) bench/time_to_accuracy.py

# The README's pictures (docs/images.py), from the study STUDY (default: the accuracy search's)
# and its best-eval; needs Chromium for the MLflow UI screenshot.
docs-images: install ## Redraw the README's pictures in docs/images/ from real runs (STUDY=)
	$(PY) docs/images.py $(if $(STUDY),--study $(STUDY))

clean: ## Remove run outputs (keeps mlflow.db and the data cache)
	rm -rf outputs multirun .pytest_cache .ruff_cache .mypy_cache
