"""`make reliability`: attack, break and measure the running system.

Each scenario in `reliability.scenarios` starts the real services (subprocesses) on real
PostgreSQL and the real Kafka-protocol broker, does something hostile to them, and returns a
`Row` of the report. `reliability.run` runs them all and writes docs/reliability.md; the
pytest wrappers in tests/reliability run each in its short form inside `make test`.
"""
