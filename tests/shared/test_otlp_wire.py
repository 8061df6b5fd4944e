"""Our OTLP encoder against the SDK's: the same messages, decoded with opentelemetry-proto."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from mandate_vault_harness.otlp import attributes as decoded_attributes
from mandate_vault_shared.telemetry.otlp_wire import WireLog, encode_logs, encode_spans


def finished_spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "wire", "n": 3}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("scope-a", "1.2.3")
    other = provider.get_tracer("scope-b")
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span(
        "GET /x",
        context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={
            "s": "text é ✓",
            "i": 42,
            "neg": -7,
            "f": 1.5,
            "b": True,
            "list": ["a", "b"],
            "ints": [1, 2],
        },
    ) as server:
        server.add_event("something", {"k": "v"})
        with other.start_as_current_span(
            "POST", kind=SpanKind.CLIENT, links=[Link(remote, {"l": 1})]
        ) as client:
            client.set_status(Status(StatusCode.ERROR, "boom"))
        server.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("internal"):
        pass
    return list(exporter.get_finished_spans())


def test_spans_decode_exactly_like_the_sdk_encoding() -> None:
    spans = finished_spans()
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    theirs = ExportTraceServiceRequest.FromString(sdk_encode_spans(spans).SerializeToString())
    assert ours == theirs


def test_a_batch_encoded_in_slices_is_the_same_request(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = finished_spans() * 5  # 15 spans
    pauses: list[float] = []
    monkeypatch.setattr("mandate_vault_shared.telemetry.otlp_wire.time.sleep", pauses.append)
    assert encode_spans(spans, pause_every=4) == encode_spans(spans)
    assert pauses == [0, 0, 0]  # after the 4th, 8th and 12th span: the GIL goes to others


def test_repeated_attribute_blocks_still_decode_like_the_sdk_encoding() -> None:
    """Attribute blocks are memoised per span shape: equal values of other types (True, 1,
    1.0) and a span encoded a second time must not reuse a wrong block."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("scope-a")
    for value in (1, True, 1.0, 1, "1", ["1"]):
        with tracer.start_as_current_span("s", attributes={"v": value, "token": "t"}):
            pass
    spans = list(exporter.get_finished_spans())
    for _ in range(2):
        ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
        theirs = ExportTraceServiceRequest.FromString(sdk_encode_spans(spans).SerializeToString())
        assert ours.resource_spans[0].scope_spans[0].spans[0].attributes[1].value.string_value == (
            "[REDACTED]"
        )
        for mine, sdk in zip(
            ours.resource_spans[0].scope_spans[0].spans,
            theirs.resource_spans[0].scope_spans[0].spans,
            strict=True,
        ):
            assert mine.attributes[0] == sdk.attributes[0]


def test_log_records_decode_to_what_was_logged() -> None:
    resource = Resource.create({"service.name": "wire"})
    records = [
        WireLog(
            1_700_000_000_000_000_001,
            9,
            "INFO",
            "http_request",
            {"route": "/x", "status": 200, "ok": True},
            0xAB,
            0xCD,
            1,
        ),
        WireLog(
            1_700_000_000_000_000_002, 17, "ERROR", "operation_failed", {"ratio": 0.25}, 0, 0, 0
        ),
    ]
    request = ExportLogsServiceRequest.FromString(
        encode_logs(records, resource, InstrumentationScope("mandate_vault", "0.1.0"))
    )
    (resource_logs,) = request.resource_logs
    assert decoded_attributes(resource_logs.resource.attributes)["service.name"] == "wire"
    (scope_logs,) = resource_logs.scope_logs
    assert (scope_logs.scope.name, scope_logs.scope.version) == ("mandate_vault", "0.1.0")
    first, second = scope_logs.log_records
    assert first.time_unix_nano == first.observed_time_unix_nano == 1_700_000_000_000_000_001
    assert (first.severity_number, first.severity_text) == (9, "INFO")
    assert first.body.string_value == "http_request"
    assert first.event_name == "http_request"
    assert decoded_attributes(first.attributes) == {"route": "/x", "status": 200, "ok": True}
    assert first.trace_id == (0xAB).to_bytes(16, "big")
    assert first.span_id == (0xCD).to_bytes(8, "big")
    assert first.flags == 1
    assert (second.severity_number, second.trace_id) == (17, b"")
    assert decoded_attributes(second.attributes) == {"ratio": 0.25}
