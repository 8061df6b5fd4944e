# Mandate Vault — run `make help` for the list of targets.
SHELL := /bin/bash
# uv is on PATH once scripts/bootstrap.sh ran (as root it links /usr/local/bin/uv), else here:
UV = $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# `make run` and its companions: the services and the `run` dependency group, no test tools.
RUN = $(UV) run --frozen --no-dev --group run
PYTEST_ARGS ?=
API_PORT ?= 8000
RECEIVER_PORT ?= 9000
# Stops a recipe with one line when a variable it needs was not given on the command line.
require = for v in $(1); do [ -n "$${!v}" ] || { echo "make $@: set $$v=..." >&2; exit 2; }; done

.DEFAULT_GOAL := help

.PHONY: help setup setup-run run bootstrap receiver submit mint cli test lint format typecheck \
	bench soak load demo reliability clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

setup: ## Install uv, the workspace and the Debian tools the tests use (idempotent)
	@scripts/bootstrap.sh test

setup-run: ## Install uv and what `make run` needs, no test tools (idempotent)
	@scripts/bootstrap.sh run

run: setup-run ## Run api, jwt-verifier, webhook-worker and a local Kafka broker on embedded defaults
	@$(RUN) python scripts/run_stack.py

# From zero to a signed webhook (README), against `make run`.
bootstrap: setup-run ## A tenant, its admin, a trusted issuer: TENANT= TENANT_NAME= EMAIL= [ISSUER=]
	@$(call require,TENANT TENANT_NAME EMAIL)
	@$(RUN) mandate-vault bootstrap --tenant-id "$$TENANT" --tenant-name "$$TENANT_NAME" \
		--admin-email "$$EMAIL" $${ISSUER:+--issuer "$$ISSUER"}

receiver: setup-run ## A local webhook receiver checking signatures: SECRET=whsec_... [RECEIVER_PORT=]
	@$(RUN) python scripts/webhook_receiver.py --port "$(RECEIVER_PORT)" $${SECRET:+--secret "$$SECRET"}

submit: setup-run ## Log in and submit a mandate signed by the demo issuer: EMAIL= PASSWORD=
	@$(call require,EMAIL PASSWORD)
	@$(RUN) python scripts/demo_issuer.py submit --api "http://127.0.0.1:$(API_PORT)" \
		--email "$$EMAIL" --password "$$PASSWORD"

mint: setup-run ## Print a mandate JWT signed by the demo issuer (POST it yourself)
	@$(RUN) python scripts/demo_issuer.py mint

cli: setup-run ## The mandate-vault CLI, e.g. make cli ARGS="migrations history"
	@$(RUN) mandate-vault $(ARGS)

# Two phases: most tests on TEST_WORKERS processes, then the few that judge latency, alone.
TEST_WORKERS ?= 2
test: setup ## Run every test (real Postgres, Kafka-protocol broker, Prometheus tools)
	@$(UV) run --frozen pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(PYTEST_ARGS)
	@$(UV) run --frozen pytest -m serial $(PYTEST_ARGS)

lint: setup ## ruff lint and format check; import-linter contracts (pyproject.toml)
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen lint-imports --no-cache

format: setup ## Apply ruff fixes and formatting
	@$(UV) run --frozen ruff check --fix .
	@$(UV) run --frozen ruff format .

typecheck: setup ## mypy: strict on shared, services, the harness, scripts, bench and reliability; tests without annotation rules
	@$(UV) run --frozen mypy

bench: setup ## Paired benchmarks on real parts; writes reports/bench-<date>.md and .json (BENCH_ONLY=<section>)
	@$(UV) run --frozen python -m bench.run

LOAD_ARGS ?=
load: setup ## Locust mix against a running stack (default make run); report in reports/
	@$(UV) run --frozen python scripts/load.py $(LOAD_ARGS)

soak: setup ## Memory after 100,000 requests and over a 10-minute soak; writes reports/soak-<date>.md
	@$(UV) run --frozen python -m bench.soak

demo: setup-run ## Drive the running `make run` stack and summarize every monitoring-guide metric
	@$(RUN) python demo_monitoring_system.py $(DEMO_ARGS)

RELIABILITY_ARGS ?=
reliability: setup ## Attack, break and measure the running system; writes docs/reliability.md
	@$(UV) run --frozen python -m reliability.run $(RELIABILITY_ARGS)

clean: ## Remove local state (SQLite file, reports of make run)
	rm -rf var/
