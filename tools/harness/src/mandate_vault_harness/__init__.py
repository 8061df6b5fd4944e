"""One harness for Mandate Vault's tests, benchmarks, reliability scenarios and scripts.

A library, imported and never run as a whole (a few modules have a `__main__` of their own to
serve in a separate process). Nothing in the product imports it; it imports no tests, scripts
or reliability scenarios (import-linter contracts in the root pyproject.toml hold both).

Launchers of the real parts: `postgres` (and `pgcluster`, a throwaway cluster), `redis`,
`broker` (Tansu; `MotoS3` keeps its data over a restart), `services` (a service as a process),
`prometheus` (Prometheus and Alertmanager). Stand-ins for what cannot run here: `receiver`
(a webhook subscriber), `otlp` (the collector), `sentry` (Sentry's intake), `sinks`
(endpoints that discard), `net` (ports, black holes). `system` starts the whole system.
`issuer` and `jose` mint and forge tokens, `load` drives traffic, `metrics`, `promql`,
`kafka` and `cpu` read what happened.
"""
