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


def _telemetry(otlp_endpoint: str, sentry_dsn: str) -> dict[str, Any]:
    """Every signal exported at once, to the recording receivers; DEBUG logs."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "SENTRY_DSN": sentry_dsn,
        "LOG_LEVEL": "DEBUG",
    }


def _start_with_telemetry(system: System, telemetry: dict[str, Any]) -> None:
    system.retire(system.verifier)  # type: ignore[arg-type]  # again, with telemetry
    system.start_verifier(wait=False, **telemetry)
    system.start_api(wait=False, API_VERIFIER_TIMEOUT_SECONDS="1", **telemetry)
    system.start_worker(wait=False, **telemetry)
    system.ready()


def _stop_and_collect(
    system: System,
) -> tuple[dict[str, str], dict[str, str], dict[str, list[dict[str, Any]]]]:
    """(metrics text, log output, JSON log records) per service, the services stopped."""
    metrics = {
        p.service: httpx.get(f"{p.url}/api/v1/metrics", timeout=5).text
        for p in (system.apis[0], system.workers[0], system.verifier)
        if p is not None
    }
    for process in [*system.apis, *system.workers, system.verifier]:
        if process is not None:
            process.stop()  # SIGTERM: the services flush telemetry on the way out
    logs = {p.service: p.output() for p in system.processes()}
    records = {p.service: p.json_logs() for p in system.processes()}
    return metrics, logs, records


def _leaks(watched: dict[str, str], channels: dict[str, str]) -> dict[str, list[str]]:
    """The channels each secret was found in, for the secrets found anywhere."""
    leaks: dict[str, list[str]] = {}
    for label, secret in watched.items():
        where = [name for name, text in channels.items() if secret in text]
        if where:
            leaks[label] = where
    return leaks


def _check_log_injection(
    findings: Findings,
    logs: dict[str, str],
    records: dict[str, list[dict[str, Any]]],
    marker: str,
) -> tuple[dict[str, list[str]], int, int]:
    """One JSON record per line, one record carrying the marker, none forged from it.

    Returns (the lines that are not JSON per service, records carrying the marker, forged ones).
    """
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
    return not_json, len(carrying), len(forged)


def _report(
    findings: Findings,
    canaries: int,
    leaks: dict[str, list[str]],
    received: dict[str, int],
    logs: dict[str, str],
    injection: tuple[dict[str, list[str]], int, int],
) -> Row:
    not_json, carrying, forged = injection
    figures = {
        "canaries": canaries,
        "channels_in": [
            "headers",
            "body fields",
            "query strings",
            "URL paths",
            "JWT claims",
            "error-triggering input",
        ],
        "leaks": leaks,
        **received,
        "log_lines": sum(len(t.splitlines()) for t in logs.values()),
        "records_with_injection_marker": carrying,
        "forged_records": forged,
        "non_json_log_lines": sum(len(v) for v in not_json.values()),
    }
    tried = (
        f"{canaries} canaries (mvk_, mvr_, whsec_, JWT, password, claims, and the system's "
        "own keys and tokens) through headers, bodies, queries, paths, claims and failing "
        "requests; CR/LF + a fake JSON record in a logged claim"
    )
    leaked = (
        f"{sum(len(v) for v in leaks.values())} occurrences in logs, spans, metrics or Sentry; "
        f"injection: {carrying} record, {forged} forged"
    )
    return findings.row(NAME, tried, leaked, figures)


def run(scale: Scale) -> Row:
    del scale  # one pass over every channel: the same in both modes
    findings = Findings()
    canary = _canaries()
    marker = f"INJECTED{secrets.token_hex(4)}"
    otlp, otlp_server = start_otlp()
    sink, sink_server = start_sink()
    owned: dict[str, str] = {}
    try:
        with System() as system:
            _start_with_telemetry(system, _telemetry(otlp.endpoint, sink.dsn))
            tenant = system.add_tenant(roles=(Role.TENANT_ADMIN, Role.MEMBER), users=True)
            owned["issued API key"] = tenant.keys[Role.TENANT_ADMIN]
            owned["issued member key"] = tenant.keys[Role.MEMBER]
            # no keep-alive: after a 500 the server drops the connection it answered on
            no_reuse = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(base_url=system.api.url, timeout=15, limits=no_reuse) as client:
                _drive(system, client, tenant, canary, owned, marker, system.issuers[0])
            wait_until(lambda: bool(sink.envelopes) and bool(otlp.logs), timeout=10)
            time.sleep(1.5)  # the last batches of spans, logs and metrics
            metrics, logs, records = _stop_and_collect(system)
    finally:
        otlp_server.shutdown()
        sink_server.shutdown()
    exported = b"".join(body for _, body in otlp.raw).decode("utf-8", "replace")
    channels = {
        "logs": "\n".join(logs.values()),
        "OTLP (spans, logs, metrics)": exported,
        "metrics endpoints": "\n".join(metrics.values()),
        "Sentry envelopes": sink.text(),
    }
    everything = {**canary, **owned}
    # the middle segment of a JWT is its claims: look for it on its own too
    everything["bearer JWT claims segment"] = canary["bearer JWT"].split(".")[1]
    leaks = _leaks(everything, channels)
    findings.check(not leaks, f"canaries found: {leaks}")
    injection = _check_log_injection(findings, logs, records, marker)
    # the channels really carried data
    findings.check(len(sink.envelopes) > 0, "Sentry received nothing: the check proves nothing")
    findings.check(len(otlp.spans) > 0 and len(otlp.logs) > 0, "OTLP received no spans or logs")
    received = {
        "sentry_envelopes": len(sink.envelopes),
        "otlp_spans": len(otlp.spans),
        "otlp_log_records": len(otlp.logs),
        "otlp_bytes": len(exported),
    }
    return _report(findings, len(everything), leaks, received, logs, injection)


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class _Channels:
    """Every way a canary can enter the system, and the system's own secrets in use."""

    def __init__(
        self,
        system: System,
        client: httpx.Client,
        tenant: Any,
        canary: dict[str, str],
        owned: dict[str, str],
        issuer: Any,
    ) -> None:
        assert system.verifier is not None
        self.system, self.client, self.tenant, self.issuer = system, client, tenant, issuer
        self.canary, self.owned = canary, owned
        self.key = tenant.headers()
        self.verifier = system.verifier
        self.claims = {"note": canary["JWT claim"], "jti": canary["JWT jti"]}

    def create(self, token: str) -> None:
        self.client.post("/api/v1/mandates", json={"vc_jwt": token}, headers=self.key)

    def headers_queries_and_paths(self) -> None:
        """Against every service (401s, 404s)."""
        canary, client, key = self.canary, self.client, self.key
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
        for process in (self.system.api, self.verifier, *self.system.workers):
            httpx.get(f"{process.url}/api/v1/info", params=query, headers=hostile_headers)
            httpx.get(f"{process.url}/readyz", params=query, headers=hostile_headers)
            httpx.get(f"{process.url}/nowhere/{canary['api key (mvk_)']}", params=query)
        client.get("/api/v1/mandates", params=query, headers=hostile_headers)
        client.get(f"/api/v1/mandates/{canary['api key (mvk_)']}", headers=key)
        client.get("/api/v1/mandates", params={"cursor": canary["bearer JWT"]}, headers=key)

    def body_fields(self) -> None:
        """Passwords, refresh tokens, URLs with credentials, malformed JSON."""
        canary, client, password = self.canary, self.client, self.canary["password"]
        email = self.tenant.emails[Role.MEMBER]
        client.post("/api/v1/auth/login", json={"email": email, "password": password})
        client.post("/api/v1/auth/login", json={"email": "nobody@x.example", "password": password})
        client.post("/api/v1/auth/refresh", json={"refresh_token": canary["refresh token (mvr_)"]})
        client.post(
            "/api/v1/auth/login",
            content=f'{{"email": "{email}", "password": "{password}"',
            headers={"content-type": "application/json"},
        )
        client.post(
            "/api/v1/users",
            headers=self.key,
            json={"email": "x@y.example", "password": password, "role": "nope"},
        )
        client.post(
            "/api/v1/webhooks",
            headers=self.key,
            json={
                "url": f"http://user:{password}@127.0.0.1:9/h?secret="
                f"{canary['webhook secret (whsec_)']}",
                "event_types": ["MandateCreated"],
            },
        )
        httpx.post(
            f"{self.verifier.url}/api/v1/verify",
            json={"jwt": canary["bearer JWT"], "password": password},
        )

    def own_secrets(self) -> None:
        """A login, a refresh, a webhook secret and its rotation, deliveries signed with it."""
        client, owned, system = self.client, self.owned, self.system
        email = self.tenant.emails[Role.MEMBER]
        login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        tokens = login.json()
        owned["access token"], owned["refresh token"] = (
            tokens["access_token"],
            tokens["refresh_token"],
        )
        refreshed = client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        owned["rotated refresh token"] = refreshed.json().get("refresh_token", "")
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        hook = system.subscribe(
            self.tenant, "/privacy", ["MandateCreated", "MandateVerificationFailed"]
        )
        owned["webhook secret"] = hook["secret"]
        rotate = f"/api/v1/webhooks/{hook['id']}/rotate-secret"
        rotated = client.post(rotate, headers=self.key).json()
        owned["rotated webhook secret"] = rotated.get("secret", "")
        system.receiver.register("/privacy", rotated.get("secret", hook["secret"]))

    def mandate_claims(self) -> str:
        """A valid mandate and one the verifier rejects with the value in its reason."""
        valid: str = self.issuer.mandate(**self.claims)
        invalid = self.issuer.mandate(amount=self.canary["JWT amount"], **self.claims)
        self.owned["a signed mandate JWT"] = valid
        for token in (valid, invalid, self.canary["bearer JWT"]):
            self.create(token)
        httpx.post(f"{self.verifier.url}/api/v1/verify", json={"jwt": valid})
        return valid

    def log_injection(self, marker: str) -> None:
        """CR/LF and a whole fake JSON record inside a claim the api logs."""
        fake = json.dumps({"event": f"{marker}_forged", "level": "critical", "user_id": "admin"})
        self.create(self.issuer.mandate(iss=f"did:web:{marker}.example\r\n{fake}\n", **self.claims))

    def failures(self, valid: str) -> None:
        """A mandate the api cannot store (500 + exception), a frozen verifier (503)."""
        self.create(self.issuer.mandate(iss="did:web:" + "a" * 600 + ".example", **self.claims))
        pid = self.verifier._process.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        try:
            self.create(valid)
            self.create(self.canary["bearer JWT"])
        finally:
            os.kill(pid, signal.SIGCONT)


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
    channels = _Channels(system, client, tenant, canary, owned, issuer)
    channels.headers_queries_and_paths()
    channels.body_fields()
    channels.own_secrets()
    valid = channels.mandate_claims()
    channels.log_injection(marker)
    channels.failures(valid)
    wait_until(lambda: len(system.receiver.at("/privacy")) >= 2, timeout=15)
