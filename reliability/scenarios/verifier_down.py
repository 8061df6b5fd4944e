"""The jwt-verifier down: create-mandate answers 503 quickly and stores nothing.

Two ways down: the process stopped (connections refused) and the process frozen with SIGSTOP
(connections accepted, never answered: only the api's timeout, API_VERIFIER_TIMEOUT_SECONDS,
ends the wait). In each, creates arrive at a steady rate, some with an Idempotency-Key. Every
answer must be 503 with Retry-After within the timeout (plus a small margin), the tenant's
mandate, outbox and idempotency rows must not change, and once the verifier is back the same
requests (same Idempotency-Keys) must succeed, each exactly once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx

from mandate_vault_harness.load import CreateLoad, summarize
from mandate_vault_harness.system import System, Tenant
from reliability.core import Findings, Row, Scale

NAME = "jwt-verifier down"
MARGIN_SECONDS = 0.75


def _stored(system: System, tenant: Tenant) -> tuple[int, int, int]:
    row = system.query(
        "SELECT (SELECT count(*) FROM mandates WHERE tenant_id = $1), "
        "(SELECT count(*) FROM outbox WHERE tenant_id = $1), "
        "(SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)",
        tenant.id,
    )[0]
    return int(row[0]), int(row[1]), int(row[2])


def _take_down(system: System, mode: str) -> tuple[int, int]:
    """Stop or freeze the verifier; its (pid, port), to bring it back."""
    verifier = system.verifier
    assert verifier is not None
    pid = verifier._process.pid  # type: ignore[union-attr]
    if mode == "stopped":
        system.retire(verifier)
    else:
        os.kill(pid, signal.SIGSTOP)
    return pid, verifier.port


def _bring_back(system: System, mode: str, pid: int, port: int) -> None:
    if mode == "stopped":
        system.start_verifier(port=port)  # back where the api looks for it
    else:
        os.kill(pid, signal.SIGCONT)


def _keyed_create(
    client: httpx.Client, api_url: str, tenant: Tenant, key: str, token: str
) -> httpx.Response:
    return client.post(
        f"{api_url}/api/v1/mandates",
        json={"vc_jwt": token},
        headers={**tenant.headers(), "Idempotency-Key": key},
    )


def _timed_keyed_creates(
    api_url: str, tenant: Tenant, tokens: dict[str, str], timeout: float
) -> list[tuple[int, str | None, float]]:
    """(status, Retry-After, seconds) of each keyed create, sent one after the other."""
    keyed = []
    with httpx.Client(timeout=timeout) as client:
        for key, token in tokens.items():
            started = time.monotonic()
            response = _keyed_create(client, api_url, tenant, key, token)
            keyed.append(
                (
                    response.status_code,
                    response.headers.get("Retry-After"),
                    time.monotonic() - started,
                )
            )
    return keyed


def _outage(
    system: System,
    tenant: Tenant,
    mode: str,
    tokens: dict[str, str],
    timeout: float,
    per_mode: int,
    findings: Findings,
) -> dict[str, object]:
    """The verifier down in `mode` while creates and keyed creates arrive; its figures."""
    api_url, issuer = system.api.url, system.issuers[0]
    before = _stored(system, tenant)
    pid, port = _take_down(system, mode)
    load = CreateLoad(
        api_url, tenant.headers(), lambda _: issuer.mandate(), 10.0, per_mode, timeout=timeout + 10
    ).start()
    answers = load.join(timeout=per_mode / 10 + timeout + 30)
    keyed = _timed_keyed_creates(api_url, tenant, tokens, timeout + 10)
    after = _stored(system, tenant)
    _bring_back(system, mode, pid, port)
    statuses = summarize(answers)
    slowest = max([a.seconds for a in answers] + [k[2] for k in keyed])
    clear = all(a.status == 503 and a.retry_after for a in answers) and all(
        k[0] == 503 and k[1] for k in keyed
    )
    findings.check(
        clear,
        f"{mode}: not every answer was 503 + Retry-After: {statuses}, "
        f"keyed {[k[0] for k in keyed]}",
    )
    findings.check(
        slowest <= timeout + MARGIN_SECONDS,
        f"{mode}: slowest answer {slowest:.2f} s > timeout {timeout} s + {MARGIN_SECONDS} s",
    )
    findings.check(before == after, f"{mode}: rows changed while down: {before} -> {after}")
    return {
        "answers": statuses,
        "keyed_answers": [k[0] for k in keyed],
        "slowest_answer_s": round(slowest, 3),
        "median_answer_s": round(sorted(a.seconds for a in answers)[len(answers) // 2], 3),
        "rows_before_after": [before, after],
    }


def _recovery(
    system: System, tenant: Tenant, tokens: dict[str, str], findings: Findings
) -> dict[str, object]:
    """Back up: the same keyed requests succeed, once each."""
    with httpx.Client(timeout=10) as client:
        first = [_keyed_create(client, system.api.url, tenant, k, t) for k, t in tokens.items()]
        again = [_keyed_create(client, system.api.url, tenant, k, t) for k, t in tokens.items()]
    recovered = [r.status_code for r in first]
    same = all(a.json().get("id") == b.json().get("id") for a, b in zip(first, again, strict=True))
    final = _stored(system, tenant)
    findings.check(recovered == [201] * len(tokens), f"after recovery: {recovered}")
    findings.check(same, "a replayed Idempotency-Key created a second mandate")
    findings.check(final[0] == len(tokens), f"{final[0]} mandates stored, want {len(tokens)}")
    return {"answers": recovered, "mandates_stored": final[0]}


def run(scale: Scale) -> Row:
    timeout = scale.pick(1.0, 2.0)
    per_mode = scale.pick(12, 60)
    findings = Findings()
    figures: dict[str, object] = {"API_VERIFIER_TIMEOUT_SECONDS": timeout}
    with System() as system:
        system.start_api(wait=False, API_VERIFIER_TIMEOUT_SECONDS=str(timeout))
        system.ready()
        tenant = system.add_tenant()
        system.subscribe(tenant, "/verifier-down", ["MandateCreated", "MandateVerificationFailed"])
        keys = [f"rel-{uuid.uuid4().hex}" for _ in range(4)]
        tokens = {key: system.issuers[0].mandate() for key in keys}
        for mode in ("stopped", "frozen"):
            figures[mode] = _outage(system, tenant, mode, tokens, timeout, per_mode, findings)
        figures["after_recovery"] = _recovery(system, tenant, tokens, findings)
    tried = (
        f"{2 * per_mode} creates + {2 * len(keys)} keyed creates with the verifier stopped, "
        f"then frozen (SIGSTOP); api timeout {timeout:.0f} s"
    )
    slowest_all = max(figures[m]["slowest_answer_s"] for m in ("stopped", "frozen"))  # type: ignore[index]
    leaked = (
        f"0 stored while down; all 503 + Retry-After, slowest {slowest_all:.2f} s; "
        f"recovered, each key stored once"
        if findings.ok
        else "see problems"
    )
    return findings.row(NAME, tried, leaked, figures)
