# jobstream: one Makefile for the local stack (no Docker), the tests, and (later) the compose stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INFRA := scripts/infra/infra.sh
STAMP := $(VENV)/.installed

DEV := scripts/dev.sh

.PHONY: help install format lint test test-unit test-integration test-e2e infra-up infra-down infra-status \
        bootstrap-topics dev-start dev-stop dev-logs dev-status

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-28s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install jobstream with its test extras (pinned)

format: install ## format the code with ruff
	$(BIN)/ruff format jobstream tests scripts
	$(BIN)/ruff check --fix jobstream tests scripts

lint: install ## ruff format --check and ruff check
	$(BIN)/ruff format --check jobstream tests scripts
	$(BIN)/ruff check jobstream tests scripts

infra-up: install ## install (cached) and start Kafka x3, FerretDB, Jaeger, Prometheus on 127.0.0.1
	$(INFRA) up
	$(BIN)/python -m jobstream.bootstrap

infra-down: ## stop what infra-up started
	$(INFRA) down

infra-status: ## one line per local service
	$(INFRA) status

bootstrap-topics: install ## create the topics (idempotent)
	$(BIN)/python -m jobstream.bootstrap

dev-start: infra-up ## the services, the topics, and 3 client (API on 8080-8082) + 3 server workers
	$(DEV) start

dev-stop: ## stop the six workers (the services keep running; `make infra-down` stops them)
	$(DEV) stop

dev-logs: ## follow the workers' logs
	$(DEV) logs

dev-status: ## one line per worker
	$(DEV) status

test-unit: install ## unit tests only (no services)
	$(BIN)/pytest tests/unit

test-integration: install ## integration tests (needs `make infra-up`)
	$(BIN)/pytest tests/integration

test-e2e: install ## end-to-end tests (needs `make infra-up`; starts and stops the workers)
	$(BIN)/pytest tests/e2e

test: install ## install, start the services, lint, run the whole suite, stop everything (also on failure)
	$(MAKE) infra-up
	@status=0; \
	$(MAKE) lint && $(BIN)/pytest || status=$$?; \
	$(DEV) stop; \
	$(MAKE) infra-down; \
	exit $$status
