"""schemathesis against the OpenAPI document of each service, as served by the running process.

The api is fuzzed with an admin API key (`X-API-Key`: every route is reachable, including the
admin-only ones); the jwt-verifier and the webhook-worker need no credentials. Checks:
`not_a_server_error` (no 5xx) and `response_schema_conformance` (every documented answer matches
its schema). Phases: examples, coverage, fuzzing, stateful; a fixed seed, so a short run finds
the same things every time. schemathesis' own "sign up and log in" bootstrap is switched off
(it would create users through POST /api/v1/users). The 5xx causes come from the services' own
error logs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mandate_vault_api.roles import Role
from mandate_vault_harness.system import System, server_errors
from reliability.core import Findings, Row, Scale

NAME = "schemathesis on every service"
CHECKS = "not_a_server_error,response_schema_conformance"
SEED = 20261127
CONFIG = "[auth]\nauto-signup = false\n"


def fuzz(
    url: str, headers: dict[str, str], examples: int, workdir: Path, name: str
) -> tuple[dict[str, Any], str]:
    """Run the schemathesis CLI; returns its JSON report and its console output."""
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    report = workdir / f"{name}.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(examples),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--output-truncate",
        "false",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--request-timeout",
        "15",
    ]
    for header, value in headers.items():
        command += ["--header", f"{header}: {value}"]
    # cwd: schemathesis keeps a cache directory (.schemathesis/) where it runs
    done = subprocess.run(  # noqa: S603 - our own argv, no shell
        command, capture_output=True, text=True, cwd=workdir, check=False
    )
    data: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    data.setdefault("exit_code", done.returncode)
    return data, done.stdout + done.stderr


_SECTION = re.compile(r"^_{3,} (.+?) _{3,}$", re.MULTILINE)


def server_error_reproductions(console: str) -> list[str]:
    """`METHOD path: curl ...` for each ST101 (server error) in the console output."""
    found: list[str] = []
    start = console.find("= FAILURES =")
    if start < 0:
        return found
    end = re.search(r"^={3,} (WARNINGS|SUMMARY) ={3,}$", console[start:], re.MULTILINE)
    console = console[start : start + end.start()] if end else console[start:]
    parts = _SECTION.split(console)
    for title, body in zip(parts[1::2], parts[2::2], strict=False):
        if "ST101" not in body:
            continue
        curl = re.search(r"^\s+(curl .+)$", body, re.MULTILINE)
        found.append(f"{title}: {curl.group(1) if curl else '(no reproduction printed)'}"[:400])
    return found


def _judge(
    name: str, report: dict[str, Any], console: str, findings: Findings
) -> tuple[dict[str, Any], list[str]]:
    """One service's figures, and the reproductions of its server errors."""
    operations = report.get("operations", {})
    cases = report.get("test_cases", {})
    failures = {f"{f['code']} {f['title']}": f["operations"] for f in report.get("failures", [])}
    figures: dict[str, Any] = {
        "operations": operations.get("selected", 0),
        "test_cases": cases.get("generated", 0),
        "failures": {k: len(v) for k, v in failures.items()},
        "exit_code": report.get("exit_code"),
    }
    if operations.get("selected", 0) == 0:
        figures["note"] = (
            "its OpenAPI document declares no operations (probes and metrics are left out "
            "of the schema): nothing to generate"
        )
        return figures, []
    for failure, ops in failures.items():
        findings.check(False, f"{name}: {failure} on {len(ops)} operations: {ops}")
    reproductions = server_error_reproductions(console)
    findings.check(not report.get("errors"), f"{name}: schemathesis errors {report.get('errors')}")
    findings.check(report.get("complete", False), f"{name}: the run did not complete")
    return figures, reproductions


def run(scale: Scale) -> Row:
    examples = scale.pick(5, 60)
    findings = Findings()
    results: dict[str, dict[str, Any]] = {}
    with System() as system, tempfile.TemporaryDirectory(prefix="mv-reliability-st-") as tmp:
        workdir = Path(tmp)
        api = system.start_api(wait=False)
        worker = system.start_worker(wait=False)
        system.ready()
        assert system.verifier is not None
        tenant = system.add_tenant(roles=(Role.ADMIN, Role.TENANT_ADMIN))
        targets = {
            "api": (api, {"X-API-Key": tenant.keys[Role.ADMIN]}),
            "jwt-verifier": (system.verifier, {}),
            "webhook-worker": (worker, {}),
        }
        consoles = {}
        for name, (process, headers) in targets.items():
            report, consoles[name] = fuzz(process.url, headers, examples, workdir, name)
            results[name] = report
        five_xx = server_errors(system.processes(), include_503=True)
        alive = all(p.running for p in system.processes() if p in (api, worker, system.verifier))

    figures: dict[str, Any] = {"max_examples_per_operation": examples, "seed": SEED}
    reproductions: list[str] = []
    for name, report in results.items():
        figures[name], found = _judge(name, report, consoles[name], findings)
        reproductions += found
    total_cases = sum(figures[name]["test_cases"] for name in results)
    for cause, n in five_xx.items():
        findings.check(False, f"server error: {cause} (x{n})")
    findings.check(alive, "a service died during fuzzing")
    violations = sum(
        len(f["operations"])
        for report in results.values()
        for f in report.get("failures", [])
        if f["code"] == "ST108"
    )
    figures["server_errors"] = five_xx
    figures["reproductions"] = reproductions
    tried = (
        f"{total_cases} generated requests ({examples} examples/operation, seed {SEED}) against "
        "the OpenAPI documents of api (admin key), jwt-verifier and webhook-worker"
    )
    leaked = (
        f"{sum(five_xx.values())} 5xx answers; schema violations on {violations} operations"
        if not findings.ok
        else "0 5xx, 0 schema violations"
    )
    return findings.row(NAME, tried, leaked, figures)
