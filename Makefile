# HADR Portal — `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
.DEFAULT_GOAL := help

.PHONY: help install install-dev run up down status logs test test-fast lint format bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## Install system packages and the Python environment (runtime)
	@scripts/bootstrap.sh

install-dev: ## Same, plus test tools and Chromium
	@scripts/bootstrap.sh --dev

run: install ## Set up and start everything; show logs until Ctrl-C (which stops it all)
	@$(PY) scripts/localenv.py run

up: install ## Set up and start everything in the background; returns once the portal answers
	@$(PY) scripts/localenv.py up

down: ## Stop every process that `make up` started
	@if [ -x $(PY) ]; then $(PY) scripts/localenv.py down; else echo "Nothing to stop (no .venv)."; fi

status: ## Show what runs, and where
	@$(PY) scripts/localenv.py status

logs: ## Follow every log of the local environment
	@$(PY) scripts/localenv.py logs --follow

# Three processes on two cores: most of the suite waits (for servers, workers, heartbeats, Chromium, pgBackRest), not
# computes; a fourth was quicker but made the timing tests (a hanging check must not delay the others by 1 s) flaky.
TEST_WORKERS ?= 3
TEST_FAST_WORKERS ?= 3
# Each worker gets a share of the tests and steals from another's when it runs out (an `xdist_group` runs in the
# first worker's share: tests/infra/plugin.py), and starts the servers its own tests need, on first use.
TEST_ARGS := --dist worksteal --durations=15
test: install-dev ## Run the whole test suite (starts its own PostgreSQL, Redis, workers, Chromium), in TEST_WORKERS processes
	@$(PY) -m pytest -n $(TEST_WORKERS) $(TEST_ARGS)

test-fast: install-dev ## The suite without what is slow or needs more than the portal's database (cluster, Redis, Chromium)
	@$(PY) -m pytest -n $(TEST_FAST_WORKERS) $(TEST_ARGS) -m "not (slow or pg or redis or browser)"

# mypy's Django plugin and `manage.py check` load the settings, which require these; nothing connects to them.
LINT_ENV := HADR_SECRET_KEY=lint-only-secret-key-0123456789-0123456789-0123456789 HADR_DEBUG=true \
  HADR_DATABASE_URL=postgres://lint@127.0.0.1:1/lint HADR_REDIS_URL=redis://127.0.0.1:1/0 \
  PYTHONWARNINGS=ignore::RuntimeWarning
lint: install-dev ## ruff check + format check, mypy, Django checks, missing migrations
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@$(LINT_ENV) .venv/bin/mypy
	@$(LINT_ENV) sh -c '$(PY) manage.py check && $(PY) manage.py makemigrations --check --dry-run'

format: install-dev ## Apply ruff's fixes and formatting
	@.venv/bin/ruff check --fix .
	@.venv/bin/ruff format .

bench: install-dev ## Run the benchmarks in bench/
	@$(PY) bench/run.py $(BENCH)

clean: down ## Stop everything and delete .run/ (all local data!)
	@for link in .run/pg .run/restores .run/pgbackrest .run/backups; do if [ -L "$$link" ]; then rm -rf "$$(readlink -f "$$link")"; fi; done
	@rm -rf .run
