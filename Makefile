# The only entry point: CI runs `make test` through .ci/run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install bytecode run test unit style types lint bench security e2e e2e-parity e2e-data-env e2e-queue load faults all clean

install: $(STAMP) bytecode

# The zygote and n8n's launcher entry run Python with -B (never write .pyc), and an
# editable install compiles nothing: without this every zygote start compiles the
# sandbox modules from source (~50 ms). A wheel install (pip install ., deploy/) has them.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q sandbox src

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/taskbox run examples/hello.py --items examples/items.json --stdlib-allow math

lint: style types

style: install
	$(BIN)/ruff check src sandbox tests security bench e2e

types: install
	$(BIN)/mypy --strict src sandbox tests bench e2e

unit: install
	$(BIN)/pytest -q -m "not slow" tests/protocol tests/policy tests/sandbox tests/broker tests/executor

# Branch coverage of src/ and sandbox/ as traced in the pytest process; the floor is
# fail_under in pyproject.toml ([tool.coverage.report]): raise it, never lower it.
test: install
	$(BIN)/pytest -q --cov --cov-report=term
	$(MAKE) --no-print-directory lint

bench: install $(BENCH_STAMP)
	$(BIN)/python bench/bench.py

$(BENCH_STAMP): pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

security: install
	$(BIN)/python security/scorecard.py

load: install
	$(BIN)/python tests/load/load.py --tasks 10000 --concurrency 16 --runners 2

faults: install
	$(BIN)/pytest -q tests/faults

# The shared cases plus taskbox's own (e2e/cases, made by e2e/make_cases.py; e2e/helper_cases,
# the node helpers, made by its make_cases.py). run.sh
# pins N8N_RUNNERS_TASK_TIMEOUT=60; the flag (it wins over the environment) lowers the
# runner's timeout so case 84_timeout takes seconds, not a minute.
E2E_CASES_DIR ?= ../shared/n8n-e2e/cases:e2e/cases:e2e/helper_cases:e2e/data_cases
E2E_TASK_TIMEOUT ?= 8

# Second pass: a runner with env access allowed and decimal/uuid/os allowed
# (e2e/parity_cases; the variables are make_cases.PARITY_ENV's).
E2E_PARITY_ENV = N8N_BLOCK_RUNNER_ENV_ACCESS=false \
	N8N_RUNNERS_STDLIB_ALLOW=json,math,datetime,decimal,uuid,os TB_E2E_VISIBLE=hello-from-the-runner

e2e: install
	../shared/n8n-e2e/install.sh
	N8N_E2E_CASES_DIR='$(E2E_CASES_DIR)' ../shared/n8n-e2e/run.sh $(BIN)/taskbox connect --task-timeout $(E2E_TASK_TIMEOUT)
	$(MAKE) --no-print-directory e2e-parity
	$(MAKE) --no-print-directory e2e-data-env

# Third pass: n8n allows env access in nodes (`_env`, e2e/data_env_cases; the variables
# are e2e/data_cases/make_cases.py's ENV_PASS).
E2E_DATA_ENV = N8N_BLOCK_ENV_ACCESS_IN_NODE=false TB14_VISIBLE=seen \
	N8N_ENCRYPTION_KEY=tb14-e2e-throwaway-encryption-key

e2e-data-env: install
	$(E2E_DATA_ENV) N8N_E2E_CASES_DIR=e2e/data_env_cases ../shared/n8n-e2e/run.sh $(BIN)/taskbox connect --task-timeout $(E2E_TASK_TIMEOUT)

e2e-parity: install
	$(E2E_PARITY_ENV) N8N_E2E_CASES_DIR=e2e/parity_cases ../shared/n8n-e2e/run.sh $(BIN)/taskbox connect --task-timeout $(E2E_TASK_TIMEOUT)

# n8n's queue mode (e2e/queue/README.md): real redis-server + PostgreSQL (apt-get when
# missing), n8n main + 2 workers, a taskbox beside each worker; load, then faults under
# load. ~3 min; not part of `make test`. Knobs: TB_QUEUE_REQUESTS, TB_QUEUE_CONCURRENCY.
e2e-queue: install
	../shared/n8n-e2e/install.sh
	$(BIN)/python -m e2e.queue.run

all: test bench security

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info src/*.egg-info
