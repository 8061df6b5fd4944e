# syntax=docker/dockerfile:1
# One Dockerfile for the three service images; build arguments pick the service. Build from the
# repository root (the uv workspace is the build context); the defaults build the api:
#   docker build -t mandate-vault-api:local .
#   docker build -t mandate-vault-jwt-verifier:local --build-arg PACKAGE=mandate-vault-jwt-verifier \
#     --build-arg SOURCE=services/jwt-verifier --build-arg MODULE=mandate_vault_verifier \
#     --build-arg ENV_PREFIX=VERIFIER --build-arg PORT=8001 .
#   docker build -t mandate-vault-webhook-worker:local --build-arg PACKAGE=mandate-vault-webhook-worker \
#     --build-arg SOURCE=services/webhook-worker --build-arg MODULE=mandate_vault_worker \
#     --build-arg ENV_PREFIX=WORKER --build-arg PORT=8002 .
# (docker compose passes the same arguments: deploy/compose/docker-compose.yml.)
#
# Stage 1 (builder): uv installs the locked dependencies of that service's package only, first without
# the workspace members (a layer that changes only when uv.lock does), then the members
# themselves as regular, non-editable packages.
# Stage 2 (runtime): python:3.11-slim plus that virtual environment, nothing else: no uv, no
# compiler, no sources outside the venv. One process, one uvicorn, non-root UID 10001.

# The builder and the runtime must use the same interpreter path: the venv links to it.
ARG PYTHON_IMAGE=python:3.11-slim
# The uv that writes uv.lock in this repository: bump the two together (an older uv may not
# read a newer lock format).
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
# Which service: its distribution, its workspace folder, its module, its settings prefix, its port.
ARG PACKAGE=mandate-vault-api
ARG SOURCE=services/api
ARG MODULE=mandate_vault_api
ARG ENV_PREFIX=API
ARG PORT=8000

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
ARG PACKAGE
ARG SOURCE
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_CACHE_DIR=/cache/uv
WORKDIR /app

# Phase 1: third-party dependencies from the lock (workspace metadata only).
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/api/pyproject.toml services/api/
COPY services/jwt-verifier/pyproject.toml services/jwt-verifier/
COPY services/webhook-worker/pyproject.toml services/webhook-worker/
COPY tools/harness/pyproject.toml tools/harness/
RUN --mount=type=cache,target=/cache/uv \
    uv sync --frozen --no-dev --package ${PACKAGE} --no-install-workspace

# Phase 2: the workspace members this service needs, installed into the venv.
COPY shared/src shared/src
COPY ${SOURCE}/src ${SOURCE}/src
RUN --mount=type=cache,target=/cache/uv \
    uv sync --frozen --no-dev --package ${PACKAGE} --no-editable

FROM ${PYTHON_IMAGE} AS runtime
ARG MODULE
ARG ENV_PREFIX
ARG PORT
# CMD and HEALTHCHECK cannot read build arguments: SERVICE_* tell them the module, the variable
# an operator may set to move the port, and the port the service listens on by default.
# Containers bind all interfaces; each service reads only its own *_HOST.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH \
    SERVICE_MODULE=${MODULE} \
    SERVICE_PORT_VARIABLE=${ENV_PREFIX}_PORT \
    SERVICE_DEFAULT_PORT=${PORT} \
    API_HOST=0.0.0.0 \
    VERIFIER_HOST=0.0.0.0 \
    WORKER_HOST=0.0.0.0
RUN groupadd --system --gid 10001 mandate-vault \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mandate-vault
WORKDIR /app
# Owned by root and read-only for the service user: the code cannot be changed at run time.
COPY --from=builder /app/.venv /app/.venv
USER 10001:10001
EXPOSE ${PORT}
# No curl in the slim image: the interpreter does the probe (liveness only; /readyz is for
# orchestrators that route traffic).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get(os.environ['SERVICE_PORT_VARIABLE'], os.environ['SERVICE_DEFAULT_PORT']), timeout=2)"]
# `exec` replaces the shell: one process, signals go straight to the service. The api image also
# runs the migrations: `mandate-vault migrate` (compose one-shot, k8s Job).
CMD ["sh", "-c", "exec python -m \"$SERVICE_MODULE\""]
