# stock-pipeline: `make dev` runs everything locally, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# checkov lives in its own venv: its pinned tree conflicts with ours (boto3).
LINT_VENV := .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed-stamp
AWS_PORT ?= 4566
SERVE_PORT ?= 8000
BENCHMARKS := ingest_decode dbt_incremental dbt_full_refresh freshness drain sustained compaction read_while_writing serve_latency provision producer

.PHONY: help install system-deps dev test test-unit infra-lint lint format validate docs sql local-aws provision produce alerts serve bench lock reset clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c .ci/constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv and install pinned dependencies

.env:
	cp .env.example .env

dev: $(STAMP) .env ## emulator + producer + dagster dev (http://127.0.0.1:3000) + dashboard (:8000); INJECT=price_jump,volume_spike,stale to misbehave
	$(BIN)/stock-pipeline dev $(if $(INJECT),--inject $(INJECT))

# Tests start their own PostgreSQL (the shared warehouse catalog, Dagster's production storage) and
# drive the dashboard in Chromium: both come from Debian's packages, installed here when missing.
SYSTEM_PACKAGES := postgresql chromium
system-deps: ## install the system packages the tests use (PostgreSQL, Chromium) when missing
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && command -v chromium >/dev/null; then \
		exit 0; fi; \
	echo "installing $(SYSTEM_PACKAGES) from Debian's packages"; \
	SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES)

$(LINT_STAMP): .ci/lint-constraints.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --upgrade pip
	$(LINT_VENV)/bin/pip install --quiet -r .ci/lint-constraints.txt
	touch $@

infra-lint: $(STAMP) $(LINT_STAMP) ## cfn-lint and checkov on infra/stack.yaml: zero findings
	$(BIN)/cfn-lint infra/stack.yaml
	$(LINT_VENV)/bin/checkov --file infra/stack.yaml --framework cloudformation --compact --quiet \
		--skip-download

test: $(STAMP) system-deps lint infra-lint ## lint the code and the template, run the test suite against a throwaway emulator
	$(BIN)/pytest -n auto --durations=15

test-unit: $(STAMP) ## the tests that need no server, process or browser (marked by tests/conftest.py), in seconds
	$(BIN)/pytest -m unit

lint: $(STAMP) ## ruff and sqlfluff
	$(BIN)/ruff check stock_pipeline tests benchmarks
	$(BIN)/ruff format --check stock_pipeline tests benchmarks
	$(BIN)/python -m stock_pipeline.settings $(BIN)/sqlfluff lint dbt_project/models

format: $(STAMP) ## apply ruff's formatting and fixes
	$(BIN)/ruff check --fix stock_pipeline tests benchmarks
	$(BIN)/ruff format stock_pipeline tests benchmarks

validate: $(STAMP) ## dagster definitions validate
	$(BIN)/dagster definitions validate -w workspace.yaml

docs: $(STAMP) .env ## dbt docs (lineage, columns and their types, tests) on http://127.0.0.1:8080
	$(BIN)/stock-pipeline docs --port 8080

local-aws: $(STAMP) .env ## run the AWS emulator in the foreground on AWS_PORT (4566) and provision it
	$(BIN)/stock-pipeline local-aws --port $(AWS_PORT)

provision: $(STAMP) .env ## deploy infra/stack.yaml (create or update) and print its outputs
	$(BIN)/stock-pipeline provision

produce: $(STAMP) .env ## stream ticks from MARKET_DATA_SOURCE's kind to Kinesis until Ctrl-C
	$(BIN)/stock-pipeline produce

sql: $(STAMP) .env ## query the warehouse while the pipeline runs: make sql Q="select * from latest_quotes"
	$(BIN)/stock-pipeline sql "$(Q)"

alerts: $(STAMP) .env ## print alerts from the local SQS queue as they arrive
	$(BIN)/stock-pipeline alerts

serve: $(STAMP) .env ## dashboard and query API on http://127.0.0.1:SERVE_PORT (8000); reads the warehouse
	$(BIN)/stock-pipeline serve --port $(SERVE_PORT)

bench: $(STAMP) ## run the benchmarks and print their figures (about 45 minutes)
	for name in $(BENCHMARKS); do echo "== $$name"; $(BIN)/python benchmarks/$$name.py || exit 1; done

lock: ## re-resolve dependencies and rewrite .ci/constraints.txt (the tested resolution)
	rm -rf /tmp/stock-pipeline-lock && $(PYTHON) -m venv /tmp/stock-pipeline-lock
	/tmp/stock-pipeline-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/stock-pipeline-lock/bin/pip freeze --exclude-editable > .ci/constraints.txt

reset: ## wipe local state (.data: warehouse and saved lake; .dagster: runs, cursors), keep .venv
	rm -rf .data .dagster dbt_project/target dbt_project/logs

clean: ## remove the virtualenv and local state (.data, .dagster, dbt target)
	rm -rf $(VENV) $(LINT_VENV) .data .dagster dbt_project/target dbt_project/logs
