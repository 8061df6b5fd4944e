"""Privacy: canary secrets in every input channel never reach logs, spans, metrics or Sentry.

All three services run with LOG_LEVEL=DEBUG, JSON logs, OTLP export to a receiver that keeps
the raw bytes of every export (traces, logs, metrics) and Sentry pointed at a local intake that
keeps every envelope. Canaries, fresh for each run and shaped like the secrets they stand for
(an `mvk_` API key, an `mvr_` refresh token, a `whsec_` secret, a bearer JWT, a password), are
sent in headers (Authorization, X-API-Key, Cookie, a custom header), body fields (password,
refresh token, webhook URL credentials), query strings, URL paths, mandate JWT claims (a custom
claim, `jti`, an invalid amount that the verifier reports back), and input that makes things go
wrong: malformed JSON, wrong passwords, unknown tokens, a frozen verifier (503, an ERROR log
and a Sentry event) and a mandate the api cannot store (a 500 with an exception in Sentry). The
system's own secrets (the API keys it issued, an access and a refresh token, a webhook secret)
are checked the same way. Expected: zero occurrences in any service's stdout, in the OTLP bytes,
in the Prometheus text of the three /api/v1/metrics endpoints, and in the Sentry envelopes.

Log injection: an `iss` claim carrying CR/LF and a complete fake JSON log record is logged by
the api (create_mandate_completed.issuer); the logs must stay one JSON object per line, with
exactly one record carrying the marker and no record forged from it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import time
from typing import Any

import httpx

from mandate_vault_api.roles import Role
from mandate_vault_harness.otlp import start_receiver as start_otlp
from mandate_vault_harness.sentry import start_sink
from mandate_vault_harness.system import PASSWORD, System
from reliability.core import Findings, Row, Scale, wait_until

NAME = "privacy: canaries and log injection"


def _canaries() -> dict[str, str]:
    tag = secrets.token_hex(6)
    payload = base64.urlsafe_b64encode(json.dumps({"canary": tag}).encode()).decode().rstrip("=")
    return {
        "api key (mvk_)": f"mvk_canary{tag}ApiKey0123456789",
        "refresh token (mvr_)": f"mvr_canary{tag}Refresh987654321",
        "webhook secret (whsec_)": f"whsec_Y2FuYXJ5{tag}V2ViaG9va1NlY3JldA",
        "bearer JWT": f"eyJhbGciOiJFUzI1NiJ9.{payload}.Y2FuYXJ5c2lnbmF0dXJl{tag}",
        "password": f"hunter2-canary-{tag}-password",
        "JWT claim": f"claim-canary-{tag}",
        "JWT jti": f"urn:uuid:jti-canary-{tag}",
        "JWT amount": f"999{tag}",
    }


def run(scale: Scale) -> Row:  # noqa: PLR0915 - one scenario, read top to bottom
    del scale  # one pass over every channel: the same in both modes
    findings = Findings()
    canary = _canaries()
    marker = f"INJECTED{secrets.token_hex(4)}"
    otlp, otlp_server = start_otlp()
    sink, sink_server = start_sink()
    telemetry: dict[str, Any] = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "SENTRY_DSN": sink.dsn,
        "LOG_LEVEL": "DEBUG",
    }
    owned: dict[str, str] = {}
    try:
        with System() as system:
            system.retire(system.verifier)  # type: ignore[arg-type]  # again, with telemetry
            system.start_verifier(wait=False, **telemetry)
            api = system.start_api(wait=False, API_VERIFIER_TIMEOUT_SECONDS="1", **telemetry)
            worker = system.start_worker(wait=False, **telemetry)
            system.ready()
            tenant = system.add_tenant(roles=(Role.TENANT_ADMIN, Role.MEMBER), users=True)
            owned["issued API key"] = tenant.keys[Role.TENANT_ADMIN]
            owned["issued member key"] = tenant.keys[Role.MEMBER]
            issuer = system.issuers[0]
            # no keep-alive: after a 500 the server drops the connection it answered on
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(base_url=api.url, timeout=15, limits=no_reuse) as client:
                _drive(system, client, tenant, canary, owned, marker, issuer)
            wait_until(lambda: bool(sink.envelopes) and bool(otlp.logs), timeout=10)
            time.sleep(1.5)  # the last batches of spans, logs and metrics
            metrics = {
                p.service: httpx.get(f"{p.url}/api/v1/metrics", timeout=5).text
                for p in (api, worker, system.verifier)
                if p is not None
            }
            for process in [*system.apis, *system.workers, system.verifier]:
                if process is not None:
                    process.stop()  # SIGTERM: the services flush telemetry on the way out
            logs = {p.service: p.output() for p in system.processes()}
            records = {p.service: p.json_logs() for p in system.processes()}
    finally:
        otlp_server.shutdown()
        sink_server.shutdown()
    exported = b"".join(body for _, body in otlp.raw).decode("utf-8", "replace")
    envelopes = sink.text()
    channels = {
        "logs": "\n".join(logs.values()),
        "OTLP (spans, logs, metrics)": exported,
        "metrics endpoints": "\n".join(metrics.values()),
        "Sentry envelopes": envelopes,
    }
    everything = {**canary, **owned}
    # the middle segment of a JWT is its claims: look for it on its own too
    everything["bearer JWT claims segment"] = canary["bearer JWT"].split(".")[1]
    leaks: dict[str, list[str]] = {}
    for label, secret in everything.items():
        where = [name for name, text in channels.items() if secret in text]
        if where:
            leaks[label] = where
    findings.check(not leaks, f"canaries found: {leaks}")
    # --- log injection ---------------------------------------------------------------------
    not_json = {
        service: [line[:120] for line in text.splitlines() if line and not _is_json(line)]
        for service, text in logs.items()
    }
    not_json = {k: v for k, v in not_json.items() if v}
    carrying = [r for rs in records.values() for r in rs if marker in json.dumps(r)]
    forged = [r for rs in records.values() for r in rs if r.get("event") == f"{marker}_forged"]
    findings.check(not not_json, f"log lines that are not one JSON record: {not_json}")
    findings.check(len(carrying) == 1, f"{len(carrying)} records carry the injection marker")
    findings.check(not forged, f"{len(forged)} forged records")
    # --- the channels really carried data ----------------------------------------------------
    findings.check(len(sink.envelopes) > 0, "Sentry received nothing: the check proves nothing")
    findings.check(len(otlp.spans) > 0 and len(otlp.logs) > 0, "OTLP received no spans or logs")
    figures = {
        "canaries": len(everything),
        "channels_in": [
            "headers",
            "body fields",
            "query strings",
            "URL paths",
            "JWT claims",
            "error-triggering input",
        ],
        "leaks": leaks,
        "sentry_envelopes": len(sink.envelopes),
        "otlp_spans": len(otlp.spans),
        "otlp_log_records": len(otlp.logs),
        "otlp_bytes": len(exported),
        "log_lines": sum(len(t.splitlines()) for t in logs.values()),
        "records_with_injection_marker": len(carrying),
        "forged_records": len(forged),
        "non_json_log_lines": sum(len(v) for v in not_json.values()),
    }
    tried = (
        f"{len(everything)} canaries (mvk_, mvr_, whsec_, JWT, password, claims, and the system's "
        "own keys and tokens) through headers, bodies, queries, paths, claims and failing "
        "requests; CR/LF + a fake JSON record in a logged claim"
    )
    leaked = (
        f"{sum(len(v) for v in leaks.values())} occurrences in logs, spans, metrics or Sentry; "
        f"injection: {len(carrying)} record, {len(forged)} forged"
    )
    return findings.row(NAME, tried, leaked, figures)


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _drive(
    system: System,
    client: httpx.Client,
    tenant: Any,
    canary: dict[str, str],
    owned: dict[str, str],
    marker: str,
    issuer: Any,
) -> None:
    """Send every canary through every channel, and make the system use its own secrets."""
    assert system.verifier is not None
    key = tenant.headers()
    hostile_headers = {
        "Authorization": f"Bearer {canary['bearer JWT']}",
        "X-API-Key": canary["api key (mvk_)"],
        "Cookie": f"session={canary['refresh token (mvr_)']}; pw={canary['password']}",
        "X-Webhook-Secret": canary["webhook secret (whsec_)"],
    }
    query = {
        "token": canary["api key (mvk_)"],
        "access_token": canary["bearer JWT"],
        "password": canary["password"],
        "refresh": canary["refresh token (mvr_)"],
    }
    # headers + query strings + paths, against every service (401s, 404s)
    for process in (system.api, system.verifier, *system.workers):
        httpx.get(f"{process.url}/api/v1/info", params=query, headers=hostile_headers)
        httpx.get(f"{process.url}/readyz", params=query, headers=hostile_headers)
        httpx.get(f"{process.url}/nowhere/{canary['api key (mvk_)']}", params=query)
    client.get("/api/v1/mandates", params=query, headers=hostile_headers)
    client.get(f"/api/v1/mandates/{canary['api key (mvk_)']}", headers=key)
    client.get("/api/v1/mandates", params={"cursor": canary["bearer JWT"]}, headers=key)
    # body fields: passwords, refresh tokens, URLs with credentials, malformed JSON
    email = tenant.emails[Role.MEMBER]
    client.post("/api/v1/auth/login", json={"email": email, "password": canary["password"]})
    client.post(
        "/api/v1/auth/login", json={"email": "nobody@x.example", "password": canary["password"]}
    )
    client.post("/api/v1/auth/refresh", json={"refresh_token": canary["refresh token (mvr_)"]})
    client.post(
        "/api/v1/auth/login",
        content=f'{{"email": "{email}", "password": "{canary["password"]}"',
        headers={"content-type": "application/json"},
    )
    client.post(
        "/api/v1/users",
        headers=key,
        json={"email": "x@y.example", "password": canary["password"], "role": "nope"},
    )
    client.post(
        "/api/v1/webhooks",
        headers=key,
        json={
            "url": f"http://user:{canary['password']}@127.0.0.1:9/h?secret="
            f"{canary['webhook secret (whsec_)']}",
            "event_types": ["MandateCreated"],
        },
    )
    httpx.post(
        f"{system.verifier.url}/api/v1/verify",
        json={"jwt": canary["bearer JWT"], "password": canary["password"]},
    )
    # the system's own secrets in use: a login, a refresh, a webhook secret, deliveries
    login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    owned["access token"], owned["refresh token"] = login["access_token"], login["refresh_token"]
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]})
    owned["rotated refresh token"] = refreshed.json().get("refresh_token", "")
    client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {login['access_token']}"})
    hook = system.subscribe(tenant, "/privacy", ["MandateCreated", "MandateVerificationFailed"])
    owned["webhook secret"] = hook["secret"]
    rotated = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=key).json()
    owned["rotated webhook secret"] = rotated.get("secret", "")
    system.receiver.register("/privacy", rotated.get("secret", hook["secret"]))
    # mandate claims: a valid one, one the verifier rejects with the value in its reason
    claims = {"note": canary["JWT claim"], "jti": canary["JWT jti"]}
    valid = issuer.mandate(**claims)
    invalid = issuer.mandate(amount=canary["JWT amount"], **claims)
    owned["a signed mandate JWT"] = valid
    for token in (valid, invalid, canary["bearer JWT"]):
        client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=key)
    httpx.post(f"{system.verifier.url}/api/v1/verify", json={"jwt": valid})
    # log injection: CR/LF and a whole fake JSON record inside a claim the api logs
    fake = json.dumps({"event": f"{marker}_forged", "level": "critical", "user_id": "admin"})
    injected = issuer.mandate(iss=f"did:web:{marker}.example\r\n{fake}\n", **claims)
    client.post("/api/v1/mandates", json={"vc_jwt": injected}, headers=key)
    # failures: a mandate the api cannot store (500 + exception), a frozen verifier (503)
    too_long = issuer.mandate(iss="did:web:" + "a" * 600 + ".example", **claims)
    client.post("/api/v1/mandates", json={"vc_jwt": too_long}, headers=key)
    pid = system.verifier._process.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)
    try:
        client.post("/api/v1/mandates", json={"vc_jwt": valid}, headers=key)
        client.post("/api/v1/mandates", json={"vc_jwt": canary["bearer JWT"]}, headers=key)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: len(system.receiver.at("/privacy")) >= 2, timeout=15)
