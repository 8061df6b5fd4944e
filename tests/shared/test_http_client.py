"""Outgoing-request spans: a child CLIENT span in sampled traces, none in unsampled ones."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from yarl import URL

from mandate_vault_shared.http_client import client_call
from mandate_vault_shared.telemetry.semconv import HttpClientTelemetry

TARGET = URL("http://verifier.internal:8001/api/v1/verify")


def tracer_and_spans() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_a_sampled_trace_gets_a_client_span_whose_context_is_propagated() -> None:
    tracer, exporter = tracer_and_spans()
    calls = HttpClientTelemetry(tracer)
    with tracer.start_as_current_span("server"), client_call(calls, "POST", TARGET) as call:
        child, h = call.span.get_span_context(), call.headers
    (client, server) = exporter.get_finished_spans()[:2]
    assert client.kind is trace.SpanKind.CLIENT
    assert client.attributes is not None
    assert client.attributes["url.full"] == str(TARGET)
    assert h["traceparent"].startswith(f"00-{child.trace_id:032x}-{child.span_id:016x}-")
    assert int(h["traceparent"][-2:], 16) & 1  # sampled
    assert server.name == "server"


def test_an_unsampled_trace_propagates_its_context_without_a_span() -> None:
    tracer, exporter = tracer_and_spans()
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    with (
        trace.use_span(NonRecordingSpan(parent)),
        client_call(HttpClientTelemetry(tracer), "POST", TARGET, {"X-A": "1"}) as call,
    ):
        assert not call.span.is_recording()
        headers = call.headers
    assert exporter.get_finished_spans() == ()
    assert headers == {"X-A": "1", "traceparent": f"00-{0xABC:032x}-{0xDEF:016x}-00"}
