"""SSRF: webhook URLs and did:web issuers aimed at every blocked range and encoding.

Webhooks, at registration: an api with an empty SSRF allow-list is asked to register (POST) and
to re-point (PATCH) subscriptions at every blocked address spelling of the shared guard's tests
(mandate_vault_harness.net.BLOCKED_HOSTS: loopback, private, link-local/metadata, CGNAT,
benchmark, multicast, reserved, documentation ranges; decimal, octal, hex and short IPv4 forms;
IPv6, IPv4-mapped, NAT64 and 6to4 forms), at `localhost` (a name that resolves to loopback),
and at URLs with other schemes or credentials. All must be refused with 422.

Webhooks, at connect time: a second api whose allow-list admits loopback registers loopback
targets (literal, `localhost`, and other spellings it accepts) while the webhook-worker's
allow-list is empty. A mandate event must then be refused by the worker for every one of them:
dead-lettered with a `refused:` error, and the receiver behind them never contacted.

did:web: an issuer whose host is an IP literal in any of those spellings is refused when the
truststore is loaded (the verifier will not start; checked with the verifier's own
`parse_truststore` for every spelling and with real process starts for some). An issuer
`did:web:localhost%3A<port>` (a name resolving to loopback, served by a local HTTPS DID server)
with an empty verifier allow-list: a mandate from it is stored REJECTED with ISSUER_UNREACHABLE
and the DID server is never contacted.

Safety: every blocked URL is first checked with the shared guard in this process; one it would
let through is reported and never sent, so no packet can leave for a non-loopback address.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mandate_vault_api.roles import Role
from mandate_vault_harness.jose import DidServer, ec_key, make_tls, mandate_claims, sign
from mandate_vault_harness.net import BLOCKED_HOSTS, free_port
from mandate_vault_harness.services import REPO_ROOT
from mandate_vault_harness.system import System, server_errors
from mandate_vault_shared.ssrf import SsrfBlocked, SsrfPolicy
from mandate_vault_verifier.truststore import TruststoreError, parse_truststore
from reliability.core import Findings, Row, Scale, wait_until

NAME = "SSRF: webhook URLs and did:web issuers"
OTHER_SHAPES = (
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/",
    "ftp://127.0.0.1/x",
    "http://example.com@127.0.0.1/hook",
    "http://user:pass@169.254.169.254/latest/meta-data",
    "http://[fe80::1%25eth0]/hook",
)

# loopback spellings the loose api lets through, for the worker to refuse at connect time
CONNECT_HOSTS = (
    "127.0.0.1",
    "localhost",
    "LOCALHOST",
    "2130706433",
    "0x7f.1",
    "127.1",
    "[::ffff:127.0.0.1]",
)


def blocked_urls(port: int) -> list[str]:
    urls = [f"http://{host}:{port}/hook" for host in BLOCKED_HOSTS]
    urls += [f"https://{host}/hook" for host in ("169.254.169.254", "[::ffff:a9fe:a9fe]")]
    urls += [f"http://localhost:{port}/hook", f"http://LOCALHOST:{port}/hook"]
    return urls + list(OTHER_SHAPES)


def _statically_blocked(url: str) -> bool:
    """The shared guard refuses `url` by its shape (no DNS). `localhost` is a name: not here."""
    try:
        SsrfPolicy(require_https=False).check_url(url)
    except SsrfBlocked:
        return True
    return False


def _did_for(host: str, port: int | None = None) -> str:
    bare = host.strip("[]")
    return f"did:web:{bare}" + (f"%3A{port}" if port else "")


def did_web_refused_at_load(hosts: list[str]) -> list[str]:
    """IP-literal did:web issuers the verifier's truststore parser lets through (should be none)."""
    accepted = []
    for host in hosts:
        entry = {
            "issuers": [{"id": _did_for(host, 443), "algorithms": ["ES256"], "resolve": "did:web"}]
        }
        try:
            parse_truststore(json.dumps(entry))
            accepted.append(host)
        except TruststoreError:
            pass
    return accepted


def verifier_refuses_to_start(host: str) -> tuple[int | None, str]:
    """Start a real jwt-verifier with a did:web issuer on `host`; returns (exit code, last line)."""
    truststore = json.dumps(
        {"issuers": [{"id": _did_for(host, 443), "algorithms": ["ES256"], "resolve": "did:web"}]}
    )
    env = {
        "VERIFIER_TRUSTSTORE_JSON": truststore,
        "VERIFIER_PORT": str(free_port()),
        "PATH": "/usr/bin:/bin",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mandate_vault_verifier"],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, "still running after 60 s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, lines[-1][:200] if lines else ""


def _start(system: System, ca_file: Path) -> tuple[Any, Any]:
    """The verifier with no allow-list, a strict and a loose api, a worker with no allow-list.

    Returns (strict api, loose api): the loose one admits loopback.
    """
    assert system.verifier is not None
    system.retire(system.verifier)  # again, with the test CA and no allow-list
    system.start_verifier(
        wait=False,
        VERIFIER_DID_WEB_CA_FILE=str(ca_file),
        VERIFIER_SSRF_ALLOWLIST="",
    )
    strict = system.start_api(wait=False, API_SSRF_ALLOWLIST="")
    loose = system.start_api(wait=False, API_SSRF_ALLOWLIST="127.0.0.1,localhost")
    system.start_worker(wait=False, WORKER_SSRF_ALLOWLIST="", WORKER_RETRY_SCHEDULE_SECONDS="0.2")
    system.ready()
    return strict, loose


def _did_web_at_load(scale: Scale, findings: Findings) -> dict[str, Any]:
    """did:web issuers on IP literals: refused when the truststore is loaded."""
    spellings = [h for h in BLOCKED_HOSTS if not h.startswith("[")] + ["[::1]", "[fe80::1]"]
    accepted = did_web_refused_at_load(spellings)
    findings.check(not accepted, f"did:web issuers on IP literals accepted: {accepted}")
    starts = scale.pick(
        ["127.0.0.1"],
        ["127.0.0.1", "169.254.169.254", "10.0.0.1", "2130706433", "0x7f.1", "100.64.0.1"],
    )
    refusals = {host: verifier_refuses_to_start(host) for host in starts}
    for host, (code, line) in refusals.items():
        findings.check(code == 2, f"verifier with did:web:{host} exited {code}: {line}")
    return {
        "spellings_checked_by_parse_truststore": len(spellings),
        "accepted": accepted,
        "real_verifier_starts": {h: c for h, (c, _) in refusals.items()},
    }


def run(scale: Scale) -> Row:
    findings = Findings()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mv-reliability-ssrf-") as tmp:
        tls = make_tls(Path(tmp))
        did_server = DidServer(tls)
        did_key = ec_key("key-1")
        local_did = did_server.did("issuer")  # did:web:localhost%3A<port>:issuer
        did_server.publish(local_did, [did_key], "issuer")
        truststore = json.dumps(
            {"issuers": [{"id": local_did, "algorithms": ["ES256"], "resolve": "did:web"}]}
        )
        try:
            with System(issuers=[], truststore=truststore) as system:
                strict, loose = _start(system, tls.ca_file)
                tenant = system.add_tenant(issuers=[local_did], roles=(Role.TENANT_ADMIN,))
                _webhooks(system, strict, loose, tenant, findings, figures)
                _did_web_connect(
                    system, strict, tenant, did_key, local_did, did_server, findings, figures
                )
                for cause, n in server_errors(system.processes(), include_503=True).items():
                    findings.check(False, f"server error: {cause} (x{n})")
        finally:
            did_server.close()
    figures["did_web_ip_literals"] = _did_web_at_load(scale, findings)
    tried = (
        f"{figures['webhooks']['registration_attempts']} webhook registrations/updates to "
        f"blocked ranges and encodings, {figures['webhooks']['connect_time_targets']} loopback "
        f"targets refused at connect time, "
        f"{figures['did_web_ip_literals']['spellings_checked_by_parse_truststore']} IP-literal "
        "did:web issuers, did:web:localhost with an empty allow-list"
    )
    leaked = (
        f"{figures['webhooks']['accepted']} accepted, "
        f"{figures['webhooks']['receiver_requests']} webhook requests and "
        f"{figures['did_web_connect']['did_server_requests']} DID fetches reached a target"
    )
    return findings.row(NAME, tried, leaked, figures)


def _at_registration(
    client: httpx.Client, strict_url: str, existing_id: str, port: int
) -> tuple[int, list[str], list[str]]:
    """Register and re-point webhooks at every blocked URL on the strict api.

    Returns (requests sent, the ones not answered 422, URLs the guard would let through).
    """
    accepted: list[str] = []
    unsafe: list[str] = []
    attempts = 0
    for url in blocked_urls(port):
        is_name = "localhost" in url.lower()
        if not is_name and not _statically_blocked(url):
            unsafe.append(url)  # never sent: it could reach a non-loopback address
            continue
        created = client.post(
            f"{strict_url}/api/v1/webhooks",
            json={"url": url, "event_types": ["MandateCreated"]},
        )
        patched = client.patch(f"{strict_url}/api/v1/webhooks/{existing_id}", json={"url": url})
        attempts += 2
        for answer in (created, patched):
            if answer.status_code != 422:
                accepted.append(f"{answer.request.method} {url} -> {answer.status_code}")
    return attempts, accepted, unsafe


def _register_loopback_targets(client: httpx.Client, loose_url: str, port: int) -> list[str]:
    """Subscriptions at loopback targets, through the loose api; their ids."""
    registered = []
    for n, host in enumerate(CONNECT_HOSTS):  # a rejected mandate emits MandateVerificationFailed
        answer = client.post(
            f"{loose_url}/api/v1/webhooks",
            json={
                "url": f"http://{host}:{port}/connect-{n}",
                "event_types": ["MandateVerificationFailed"],
            },
        )
        if answer.status_code == 201:
            registered.append(answer.json()["id"])
    return registered


def _delivery_logs(
    client: httpx.Client, loose_url: str, registered: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each subscription's delivery log, once every one of them dead-lettered (or 30 s)."""

    def logs() -> dict[str, list[dict[str, Any]]]:
        return {
            s: client.get(f"{loose_url}/api/v1/webhooks/{s}/deliveries").json() for s in registered
        }

    wait_until(
        lambda: all(any(e["outcome"] == "dead_lettered" for e in log) for log in logs().values()),
        timeout=30,
        interval=0.5,
    )
    return logs()


def _webhooks(
    system: System,
    strict: Any,
    loose: Any,
    tenant: Any,
    findings: Findings,
    figures: dict[str, Any],
) -> None:
    port = system.receiver.port
    with httpx.Client(timeout=10, headers=tenant.headers()) as client:
        existing = client.post(
            f"{loose.url}/api/v1/webhooks",
            json={"url": system.receiver.url("/existing"), "event_types": ["MandateCreated"]},
        ).json()
        attempts, accepted, unsafe = _at_registration(client, strict.url, existing["id"], port)
        # connect time: loopback targets the loose api lets through, refused by the worker
        registered = _register_loopback_targets(client, loose.url, port)
        client.delete(f"{loose.url}/api/v1/webhooks/{existing['id']}")
        mandate = client.post(
            f"{loose.url}/api/v1/mandates", json={"vc_jwt": "eyJhbGciOiJub25lIn0.e30."}
        )
        final = _delivery_logs(client, loose.url, registered)
    refused_everywhere = all(
        log and all(str(e["error"]).startswith("refused:") for e in log) for log in final.values()
    )
    findings.check(
        mandate.status_code == 201, f"the mandate that emits events: {mandate.status_code}"
    )
    findings.check(not unsafe, f"the guard would let these through (not sent): {unsafe}")
    findings.check(not accepted, f"accepted at registration: {accepted}")
    findings.check(len(registered) >= 2, f"only {len(registered)} loopback targets registered")
    findings.check(refused_everywhere, f"not refused at connect time: {final}")
    received = len(system.receiver.received) + len(system.receiver.invalid)
    findings.check(received == 0, f"the receiver was contacted {received} times")
    figures["webhooks"] = {
        "registration_attempts": attempts,
        "accepted": len(accepted),
        "connect_time_targets": len(registered),
        "connect_time_outcomes": sorted({e["outcome"] for log in final.values() for e in log}),
        "receiver_requests": received,
    }


def _did_web_connect(
    system: System,
    strict: Any,
    tenant: Any,
    did_key: Any,
    did: str,
    did_server: DidServer,
    findings: Findings,
    figures: dict[str, Any],
) -> None:
    token = sign(did_key, mandate_claims(did))
    with httpx.Client(timeout=15, headers=tenant.headers()) as client:
        answer = client.post(f"{strict.url}/api/v1/mandates", json={"vc_jwt": token})
        body = answer.json()
    time.sleep(0.2)
    status = (body.get("status"), body.get("verification_status"))
    findings.check(
        status == ("REJECTED", "ISSUER_UNREACHABLE"),
        f"did:web:localhost mandate: {answer.status_code} {status}",
    )
    findings.check(not did_server.requests, f"the DID server was contacted: {did_server.requests}")
    figures["did_web_connect"] = {
        "issuer": "did:web:localhost%3A<port>:issuer",
        "stored": list(status),
        "reason": body.get("verification_reason"),
        "did_server_requests": len(did_server.requests),
    }
