# Mandate Vault — run `make help` for the list of targets.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
UV := uv
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help setup run test lint format typecheck bench soak load demo reliability clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

setup: ## Install uv, the workspace and the Debian tools the tests use (idempotent)
	@scripts/bootstrap.sh

run: setup ## Run api, jwt-verifier, webhook-worker and a local Kafka broker on embedded defaults
	@$(UV) run --frozen python scripts/run_stack.py

# Two phases: most tests on TEST_WORKERS processes, then the few that judge latency, alone.
TEST_WORKERS ?= 2
test: setup ## Run every test (real Postgres, Kafka-protocol broker, Prometheus tools)
	@$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(PYTEST_ARGS)
	@$(UV) run --frozen pytest -m serial $(PYTEST_ARGS)

lint: setup ## ruff lint and format check
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .

format: setup ## Apply ruff fixes and formatting
	@$(UV) run --frozen ruff check --fix .
	@$(UV) run --frozen ruff format .

typecheck: setup ## mypy --strict on shared and the services
	@$(UV) run --frozen mypy

bench: setup ## Paired benchmarks on real parts; writes reports/bench-<date>.md and .json (BENCH_ONLY=<section>)
	@$(UV) run --frozen python scripts/bench.py

LOAD_ARGS ?=
load: setup ## Locust mix against a running stack (default make run); report in reports/
	@$(UV) run --frozen python scripts/load.py $(LOAD_ARGS)

soak: setup ## Memory after 100,000 requests and over a 10-minute soak; writes reports/soak-<date>.md
	@$(UV) run --frozen python scripts/soak.py

demo: setup ## Drive the running `make run` stack and summarize every monitoring-guide metric
	@$(UV) run --frozen python demo_monitoring_system.py $(DEMO_ARGS)

RELIABILITY_ARGS ?=
reliability: setup ## Attack, break and measure the running system; writes docs/reliability.md
	@$(UV) run --frozen python -m reliability.run $(RELIABILITY_ARGS)

clean: ## Remove local state (SQLite file, reports of make run)
	rm -rf var/
