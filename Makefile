# Every target does its own idempotent set-up; `make help` lists them.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REFEREE := tests/referee

.PHONY: help run test test-fast lint fmt bench venv deps rabbitmq coturn faketime clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# The backend SDK (signaling_sdk/) is a package of its own; tests/sdk import it installed, as an application would.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml signaling_sdk/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip install -q --no-deps -e ./signaling_sdk
	@touch $(STAMP)

venv: $(STAMP) ## Create the virtualenv and install pinned dependencies

$(REFEREE)/node_modules/.installed: $(REFEREE)/package.json
	cd $(REFEREE) && npm install --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

deps: venv $(REFEREE)/node_modules/.installed ## Python and npm dependencies

rabbitmq: ## Make sure a RabbitMQ broker answers (starts or installs it when needed)
	@scripts/ensure_rabbitmq.sh

coturn: ## Make sure coturn's turnserver is installed (the TURN test runs one; installs it when root)
	@scripts/ensure_coturn.sh

run: venv rabbitmq ## Run the whole service in the foreground (Ctrl-C stops it)
	$(PY) -m signaling_cli run

faketime: ## Make sure libfaketime is installed (the clock-skew fault test shifts one web's clock; installs it when root)
	@scripts/ensure_faketime.sh

test: deps rabbitmq coturn faketime ## Run the whole test suite (unit, integration, media, referee)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: deps rabbitmq ## Unit tests only (with the SDK's, which need no stack)
	$(PY) -m pytest tests/unit tests/sdk -m "not integration and not slow" $(PYTEST_ARGS)

lint: venv ## ruff check, format check and mypy (files and options in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: venv ## Format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: deps rabbitmq ## Run the benchmarks (JSON + PNG under bench/results)
	$(PY) -m bench

clean: ## Remove the virtualenv, node_modules and ./var
	rm -rf $(VENV) $(REFEREE)/node_modules var
