"""One trace from POST /api/v1/mandates to the subscriber, asserted through the OTLP receiver."""

from __future__ import annotations

from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.otlp import OtlpReceiver
from mandate_vault_harness.system import System, Tenant

WITH_OTLP = True
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


def test_the_subscriber_receives_the_trace_that_began_at_the_api(
    stack: System, tenant: Tenant, bank: Issuer, stack_otlp: OtlpReceiver | None
) -> None:
    otlp = stack_otlp
    assert otlp is not None
    stack.subscribe(tenant, "/traced")
    stack.create_mandate(tenant, bank.mandate())
    stack.receiver.wait_for(lambda r: len(r.at("/traced")) == 1)
    delivered = stack.receiver.at("/traced")[0]
    _, trace_id, parent_id, _ = delivered.headers["traceparent"].split("-")

    expected = {
        ("mandate-vault-api", SERVER),
        ("mandate-vault-api", CLIENT),
        ("mandate-vault-api", PRODUCER),
        ("mandate-vault-jwt-verifier", SERVER),
        ("mandate-vault-webhook-worker", CONSUMER),
        ("mandate-vault-webhook-worker", CLIENT),
    }

    def chain_complete(r: object) -> bool:
        # Each process exports on its own schedule: the verifier's batch can arrive after the
        # worker's, so wait for every part of the chain.
        seen = {(s.resource["service.name"], s.kind) for s in otlp.spans if s.trace_id == trace_id}
        return seen >= expected

    try:
        otlp.wait_for(chain_complete, timeout=20)
    except AssertionError:
        seen = [
            (s.resource["service.name"], s.name, s.kind, s.trace_id == trace_id) for s in otlp.spans
        ]
        raise AssertionError(seen) from None
    spans = [s for s in otlp.spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in spans}

    def one(service: str, kind: int, name: str | None = None) -> object:
        found = [
            s
            for s in spans
            if s.resource["service.name"] == service
            and s.kind == kind
            and (name is None or s.name == name)
        ]
        assert len(found) == 1, (service, kind, [(s.name, s.kind) for s in spans])
        return found[0]

    api_server = one("mandate-vault-api", SERVER, "POST /api/v1/mandates")
    api_client = one("mandate-vault-api", CLIENT, "POST")  # the database spans are CLIENT too
    verifier_server = one("mandate-vault-jwt-verifier", SERVER)
    producer = one("mandate-vault-api", PRODUCER, f"send {stack.topic}")
    processing = one("mandate-vault-webhook-worker", CONSUMER, f"process {stack.topic}")
    delivery = one("mandate-vault-webhook-worker", CLIENT, "POST")

    assert api_client.parent_span_id == api_server.span_id  # type: ignore[attr-defined]
    assert verifier_server.parent_span_id == api_client.span_id  # type: ignore[attr-defined]
    assert producer.parent_span_id == api_server.span_id  # type: ignore[attr-defined]
    assert processing.parent_span_id == producer.span_id  # type: ignore[attr-defined]
    assert delivery.parent_span_id == processing.span_id  # type: ignore[attr-defined]
    assert parent_id == delivery.span_id  # type: ignore[attr-defined]
    assert delivery.attributes["http.response.status_code"] == 204  # type: ignore[attr-defined]
    assert all(s.parent_span_id in by_id or s is api_server for s in spans)
