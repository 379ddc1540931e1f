# jobstream: one Makefile for the local stack (no Docker), the tests, and (later) the compose stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INFRA := scripts/infra/infra.sh
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

DEV := scripts/dev.sh
COMPOSE ?= docker compose
API_URL ?= http://127.0.0.1:8080
# With JOBSTREAM_API_TOKEN set (as for the CLI), the api-* targets send it as a bearer token.
CURL := curl -sS --fail-with-body -w '\n' $(if $(JOBSTREAM_API_TOKEN),-H 'Authorization: Bearer $(JOBSTREAM_API_TOKEN)')

.PHONY: help install install-browser format lint test test-unit test-integration test-e2e test-chaos bench bench-quick infra-up infra-down infra-status \
        bootstrap-topics dev-start dev-stop dev-logs dev-status docker-start docker-stop docker-logs \
        docker-ps api-create-job-with-single-operation api-create-job-with-multiple-operations \
        api-create-job-with-error-operation api-get-jobs api-get-job api-get-job-operations \
        api-get-job-operation api-delete-job

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-28s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

install: $(STAMP) ## create .venv and install jobstream with its test extras (pinned)

install-browser: ## Debian's chromium and chromium-driver for the dashboard's browser tests (once; needs root)
	scripts/install-chromium.sh

format: install ## format the code with ruff
	$(BIN)/ruff format jobstream tests scripts bench
	$(BIN)/ruff check --fix jobstream tests scripts bench

lint: install ## ruff format --check and ruff check
	$(BIN)/ruff format --check jobstream tests scripts bench
	$(BIN)/ruff check jobstream tests scripts bench

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

test-e2e: install install-browser ## end-to-end tests (needs `make infra-up`; starts and stops the workers)
	$(BIN)/pytest tests/e2e

test-chaos: install ## only the fault-injection suite (kills workers and brokers; ~10 min); report in tests/chaos/report/
	$(MAKE) infra-up
	@status=0; \
	$(BIN)/pytest -m chaos tests/chaos || status=$$?; \
	$(DEV) stop; \
	exit $$status

bench: install $(BENCH_STAMP) ## the benchmark: stack lock, fresh database, 3+3 workers; report in bench/results/
	bench/run.sh

bench-quick: install $(BENCH_STAMP) ## a ~2.5-minute benchmark
	bench/run.sh --quick

# The API's refusals, its OpenAPI contract and the api-* targets once more, with the workers
# requiring a bearer token.
TOKEN_PASS := JOBSTREAM_E2E_TOKEN=1 JOBSTREAM_E2E_SCHEMATHESIS_EXAMPLES=10 \
	$(BIN)/pytest tests/e2e/test_auth.py tests/e2e/test_errors.py tests/e2e/test_openapi.py \
	tests/e2e/test_make_targets.py

test: install install-browser ## install, start the services, lint, run every suite (API again with a token; fault suite last), stop everything (also on failure)
	$(MAKE) infra-up
	@status=0; \
	$(MAKE) lint && $(BIN)/pytest && $(TOKEN_PASS) && $(BIN)/pytest -m chaos tests/chaos || status=$$?; \
	$(DEV) stop; \
	$(MAKE) infra-down; \
	exit $$status

# --- the compose stack (needs a Docker engine) ---------------------------------------------------

docker-start: ## build the image and start everything with docker compose (about a minute)
	$(COMPOSE) up -d --build --wait

docker-stop: ## stop the compose stack (add `-v` by hand to drop its volumes)
	$(COMPOSE) down

docker-logs: ## follow the compose stack's logs
	$(COMPOSE) logs -f

docker-ps: ## the compose stack's containers
	$(COMPOSE) ps

# --- the API, against the compose stack or `make dev-start` (API_URL=...) ------------------------

require-%:
	@test -n "$($*)" || { echo "usage: make $(MAKECMDGOALS) $*=<id>" >&2; exit 2; }

api-create-job-with-single-operation: ## POST operations-single.txt
	@$(CURL) -X POST -H 'Content-Type: text/plain' --data-binary @operations-single.txt $(API_URL)/api/jobs

api-create-job-with-multiple-operations: ## POST operations.txt (ten operations)
	@$(CURL) -X POST -H 'Content-Type: text/plain' --data-binary @operations.txt $(API_URL)/api/jobs

api-create-job-with-error-operation: ## POST operations-error.txt (accepted; its operation fails)
	@$(CURL) -X POST -H 'Content-Type: text/plain' --data-binary @operations-error.txt $(API_URL)/api/jobs

api-get-jobs: ## GET /api/jobs (PAGE=, SIZE= optional)
	@$(CURL) '$(API_URL)/api/jobs?page=$(or $(PAGE),1)&size=$(or $(SIZE),30)'

api-get-job: require-JOB_ID ## GET /api/jobs/JOB_ID
	@$(CURL) $(API_URL)/api/jobs/$(JOB_ID)

api-get-job-operations: require-JOB_ID ## GET /api/jobs/JOB_ID/operations (PAGE=, SIZE= optional)
	@$(CURL) '$(API_URL)/api/jobs/$(JOB_ID)/operations?page=$(or $(PAGE),1)&size=$(or $(SIZE),30)'

api-get-job-operation: require-JOB_ID require-OPERATION_ID ## GET one operation
	@$(CURL) $(API_URL)/api/jobs/$(JOB_ID)/operations/$(OPERATION_ID)

api-delete-job: require-JOB_ID ## DELETE /api/jobs/JOB_ID
	@$(CURL) -X DELETE $(API_URL)/api/jobs/$(JOB_ID)
