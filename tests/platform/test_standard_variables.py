"""Every standard OpenTelemetry variable the README lists is honoured, in both pipelines.

Most tests build the process's `Telemetry` in this process (as `serve.run_service` does) with the
variables set, record a span, a log line and a metric, and read what the fake OTLP receiver got
(mandate_vault_harness.otlp: no collector runs here). Propagators are read by the API at import, and
OTEL_SDK_DISABLED is about the whole process: those run a service process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from mandate_vault_harness.metrics import scrape
from mandate_vault_harness.net import BlackHole
from mandate_vault_harness.otlp import OtlpReceiver, start_grpc_receiver
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_shared.settings import ServiceSettings
from mandate_vault_shared.telemetry import Telemetry, TelemetryOptions, create_telemetry, get_logger

PIPELINES = ["fast", "sdk"]
FAST_FLUSH = {
    "OTEL_BSP_SCHEDULE_DELAY": "50",
    "OTEL_BLRP_SCHEDULE_DELAY": "50",
    "OTEL_METRIC_EXPORT_INTERVAL": "200",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "TELEMETRY_", "SENTRY_")):
            monkeypatch.delenv(name)


@contextmanager
def telemetry_with(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    pipeline: str = "fast",
    options: TelemetryOptions | None = None,
) -> Iterator[Telemetry]:
    for name, value in {**env, "TELEMETRY_PIPELINE": pipeline}.items():
        monkeypatch.setenv(name, value)
    telemetry = create_telemetry("mandate-vault-test", "1.2.3", ServiceSettings(), options)
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


def emit(telemetry: Telemetry, spans: int = 1, lines: int = 1) -> None:
    for n in range(spans):
        with telemetry.tracer.start_as_current_span(f"work {n}"):
            pass
    log = get_logger("tests.standard_variables")  # a new one: loggers cache their configuration
    for n in range(lines):
        log.info("something_happened", n=n)
    telemetry.metrics.counter("things_total", "Things", ("kind",)).add(("a",))


def otlp_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **FAST_FLUSH}


def recording() -> tuple[InMemorySpanExporter, TelemetryOptions]:
    exporter = InMemorySpanExporter()
    return exporter, TelemetryOptions(span_processors=[SimpleSpanProcessor(exporter)])


# --- resource ------------------------------------------------------------------------------


def test_otel_service_name_wins_over_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter, options = recording()
    with telemetry_with(monkeypatch, {"OTEL_SERVICE_NAME": "payments-api"}, options=options) as t:
        emit(t)
    assert t.service == "payments-api"
    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "payments-api"


def test_otel_resource_attributes_are_added_and_win(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter, options = recording()
    env = {"OTEL_RESOURCE_ATTRIBUTES": "team=payments,deployment.environment=eu-prod"}
    with telemetry_with(monkeypatch, env, options=options) as t:
        emit(t)
    resource = exporter.get_finished_spans()[0].resource.attributes
    assert resource["team"] == "payments"
    assert resource["deployment.environment"] == "eu-prod"
    assert resource["service.name"] == "mandate-vault-test"
    assert resource["service.version"] == "1.2.3"


# --- sampling ------------------------------------------------------------------------------

SAMPLED_PARENT = SpanContext(0xA1, 0xB2, is_remote=True, trace_flags=TraceFlags(1))
UNSAMPLED_PARENT = SpanContext(0xA1, 0xB2, is_remote=True, trace_flags=TraceFlags(0))


@pytest.mark.parametrize(
    ("sampler", "argument", "root", "under_sampled", "under_unsampled"),
    [
        ("always_on", None, True, True, True),
        ("always_off", None, False, False, False),
        ("traceidratio", "1", True, True, True),
        ("traceidratio", "0", False, False, False),
        ("parentbased_always_on", None, True, True, False),
        ("parentbased_always_off", None, False, True, False),
        ("parentbased_traceidratio", "0", False, True, False),
        (None, "0", False, True, False),  # unset: parent-based ratio, the argument still applies
    ],
)
def test_otel_traces_sampler_and_its_argument(
    monkeypatch: pytest.MonkeyPatch,
    sampler: str | None,
    argument: str | None,
    root: bool,
    under_sampled: bool,
    under_unsampled: bool,
) -> None:
    env = {"OTEL_TRACES_SAMPLER": sampler} if sampler else {}
    env |= {"OTEL_TRACES_SAMPLER_ARG": argument} if argument else {}
    with telemetry_with(monkeypatch, env) as t:
        outcomes = []
        for parent in (None, SAMPLED_PARENT, UNSAMPLED_PARENT):
            context = set_span_in_context(NonRecordingSpan(parent)) if parent else None
            span = t.tracer.start_span("x", context=context)
            outcomes.append(span.get_span_context().trace_flags.sampled)
            span.end()
    assert outcomes == [root, under_sampled, under_unsampled]


def test_the_standard_sampler_wins_over_the_environment_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"ENVIRONMENT": "production", "OTEL_TRACES_SAMPLER": "always_on"}
    env |= {"API_TOKEN_SIGNING_KEY": "x" * 32}
    with telemetry_with(monkeypatch, env) as t:
        sampled = [
            t.tracer.start_span("x").get_span_context().trace_flags.sampled for _ in range(50)
        ]
    assert all(sampled)  # production's default would keep about 10 %


# --- exporters: endpoint, headers, timeout, compression, protocol --------------------------


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_otel_exporter_otlp_endpoint_carries_every_signal(
    monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver, pipeline: str
) -> None:
    with telemetry_with(monkeypatch, otlp_env(otlp), pipeline) as t:
        emit(t)
        otlp.wait_for(
            lambda r: {q.path for q in r.requests} >= {"/v1/traces", "/v1/logs", "/v1/metrics"}
        )
    assert [s.name for s in otlp.spans] == ["work 0"]
    assert any(line.body == "something_happened" for line in otlp.logs)
    assert any(m.name == "things_total" for m in otlp.metrics)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_per_signal_endpoints_and_exporter_none(
    monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver, pipeline: str
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{otlp.endpoint}/custom/traces",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{otlp.endpoint}/custom/logs",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        **FAST_FLUSH,
    }
    with telemetry_with(monkeypatch, env, pipeline) as t:
        emit(t)
        otlp.wait_for(lambda r: {q.path for q in r.requests} >= {"/custom/traces", "/custom/logs"})
        time.sleep(0.5)  # several metric intervals: none may arrive
    assert {q.path for q in otlp.requests} == {"/custom/traces", "/custom/logs"}


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_headers_shared_and_per_signal(
    monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver, pipeline: str
) -> None:
    env = {
        **otlp_env(otlp),
        "OTEL_EXPORTER_OTLP_HEADERS": "x-scope-orgid=tenant-a,x-common=1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-scope-orgid=traces-only",
    }
    with telemetry_with(monkeypatch, env, pipeline) as t:
        emit(t)
        otlp.wait_for(lambda r: {q.path for q in r.requests} >= {"/v1/traces", "/v1/logs"})
    headers = {q.path: q.headers for q in otlp.requests}
    assert headers["/v1/traces"]["x-scope-orgid"] == "traces-only"  # per-signal replaces shared
    assert headers["/v1/logs"]["x-scope-orgid"] == "tenant-a"
    assert headers["/v1/logs"]["x-common"] == "1"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_compression(monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver, pipeline: str) -> None:
    env = {**otlp_env(otlp), "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}
    env["OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"] = "none"
    with telemetry_with(monkeypatch, env, pipeline) as t:
        emit(t)
        otlp.wait_for(lambda r: {q.path for q in r.requests} >= {"/v1/traces", "/v1/logs"})
    encodings = {q.path: q.headers.get("content-encoding") for q in otlp.requests}
    assert encodings["/v1/traces"] == "gzip"
    assert encodings["/v1/logs"] is None
    assert otlp.spans[0].name == "work 0"  # decompressed and decoded


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_timeout_bounds_an_export_to_a_black_hole(
    monkeypatch: pytest.MonkeyPatch, pipeline: str
) -> None:
    hole = BlackHole()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hole.port}",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.5",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    try:
        with telemetry_with(monkeypatch, env, pipeline) as t:
            emit(t, lines=0)
            deadline = time.monotonic() + 8  # the default timeout alone is 10 s
            while time.monotonic() < deadline and not _dropped(t, "traces", "export_failed"):
                time.sleep(0.1)
            assert _dropped(t, "traces", "export_failed") == 1
    finally:
        hole.close()


def _dropped(telemetry: Telemetry, signal: str, reason: str) -> float:
    wanted = ("telemetry_dropped_total{", f'signal="{signal}"', f'reason="{reason}"')
    for line in telemetry.prometheus_text().decode().splitlines():
        if line.startswith(wanted[0]) and all(part in line for part in wanted[1:]):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_grpc_protocol(monkeypatch: pytest.MonkeyPatch, pipeline: str) -> None:
    receiver, server = start_grpc_receiver()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-scope-orgid=tenant-a",
        **FAST_FLUSH,
    }
    try:
        with telemetry_with(monkeypatch, env, pipeline) as t:
            emit(t)
            receiver.wait_for(
                lambda r: {q.path for q in r.requests} >= {"traces", "logs", "metrics"}
            )
    finally:
        server.stop(0)
    assert [s.name for s in receiver.spans] == ["work 0"]
    assert any(line.body == "something_happened" for line in receiver.logs)
    assert all(q.headers["x-scope-orgid"] == "tenant-a" for q in receiver.requests)


def test_a_per_signal_protocol(monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver) -> None:
    receiver, server = start_grpc_receiver()
    env = {
        **otlp_env(otlp),
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
    }
    try:
        with telemetry_with(monkeypatch, env) as t:
            emit(t)
            receiver.wait_for(lambda r: bool(r.spans))
            otlp.wait_for(lambda r: bool(r.logs))
    finally:
        server.stop(0)
    assert not otlp.spans  # traces went over gRPC, logs over HTTP


# --- batching and intervals ----------------------------------------------------------------


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_spans_leave_in_full_batches_or_within_a_second_unless_the_variables_say_otherwise(
    monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver, pipeline: str
) -> None:
    with telemetry_with(monkeypatch, {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint}, pipeline) as t:
        emit(t, spans=1100, lines=0)
        # sooner than the SDK's 5 s schedule: the 76 spans left over go after 1 s
        otlp.wait_for(lambda r: len(r.spans) == 1100, timeout=4)
    sizes = [q.items for q in otlp.requests if q.path == "/v1/traces"]
    assert max(sizes) == 512
    assert len(sizes) >= 3


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_bsp_and_blrp_batch_sizes(
    monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver, pipeline: str
) -> None:
    env = {
        **otlp_env(otlp),
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "3",
        "OTEL_BSP_SCHEDULE_DELAY": "5000",  # batches leave because they are full, not late
        "OTEL_BLRP_SCHEDULE_DELAY": "5000",
    }
    with telemetry_with(monkeypatch, env, pipeline) as t:
        emit(t, spans=6, lines=9)
        otlp.wait_for(lambda r: len(r.spans) == 6 and len(r.logs) >= 9, timeout=4)
    sizes = {
        path: [q.items for q in otlp.requests if q.path == path]
        for path in ("/v1/traces", "/v1/logs")
    }
    assert max(sizes["/v1/traces"]) <= 2
    assert len(sizes["/v1/traces"]) >= 3
    assert max(sizes["/v1/logs"]) <= 3


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_bsp_and_blrp_queue_sizes_bound_what_is_kept(
    monkeypatch: pytest.MonkeyPatch, pipeline: str
) -> None:
    hole = BlackHole()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hole.port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
        "OTEL_BSP_MAX_QUEUE_SIZE": "4",
        "OTEL_BLRP_MAX_QUEUE_SIZE": "4",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "1",
    }
    try:
        with telemetry_with(monkeypatch, env, pipeline) as t:
            emit(t, spans=30, lines=30)
            assert _dropped(t, "traces", "queue_full") >= 20
            assert _dropped(t, "logs", "queue_full") >= 20
    finally:
        hole.close()


def test_metric_export_interval(monkeypatch: pytest.MonkeyPatch, otlp: OtlpReceiver) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "100"}
    with telemetry_with(monkeypatch, env) as t:
        emit(t, spans=0, lines=0)
        otlp.wait_for(lambda r: sum(q.path == "/v1/metrics" for q in r.requests) >= 3, timeout=5)
    # the default interval is 60 s: three exports in a few seconds means the variable counted


# --- exemplars -----------------------------------------------------------------------------


def _openmetrics(telemetry: Telemetry) -> str:
    body, content_type = telemetry.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    return body.decode()


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize(
    ("exemplar_filter", "in_sampled_span", "outside"),
    [("trace_based", True, False), ("always_off", False, False), ("always_on", True, True)],
)
def test_otel_metrics_exemplar_filter(
    monkeypatch: pytest.MonkeyPatch,
    pipeline: str,
    exemplar_filter: str,
    in_sampled_span: bool,
    outside: bool,
) -> None:
    env = {"OTEL_METRICS_EXEMPLAR_FILTER": exemplar_filter}
    with telemetry_with(monkeypatch, env, pipeline) as t:
        inside = t.metrics.histogram("inside_seconds", "In a span", ("k",))
        bare = t.metrics.histogram("outside_seconds", "In no span", ("k",))
        with t.tracer.start_as_current_span("sampled") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            inside.record(("a",), 0.02)
        bare.record(("a",), 0.02)
        text = _openmetrics(t)
    inside_lines = [line for line in text.splitlines() if line.startswith("inside_seconds_bucket")]
    outside_lines = [
        line for line in text.splitlines() if line.startswith("outside_seconds_bucket")
    ]
    assert any(f'trace_id="{trace_id}"' in line for line in inside_lines) is in_sampled_span
    assert any(" # {" in line for line in outside_lines) is outside


# --- process-wide: propagators and the SDK switch -------------------------------------------


@pytest.mark.parametrize(
    ("propagators", "continued"), [("tracecontext,baggage", True), ("none", False)]
)
def test_otel_propagators(otlp: OtlpReceiver, propagators: str, continued: bool) -> None:
    process = ServiceProcess("api", {**otlp_env(otlp), "OTEL_PROPAGATORS": propagators}).start()
    try:
        traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        httpx.get(f"{process.url}/api/v1/info", headers={"traceparent": traceparent})
        otlp.wait_for(lambda r: any(s.name == "GET /api/v1/info" for s in r.spans))
    finally:
        process.stop()
    span = next(s for s in otlp.spans if s.name == "GET /api/v1/info")
    assert (span.trace_id == "0af7651916cd43dd8448eb211c80319c") is continued


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_otel_sdk_disabled_turns_every_signal_off(otlp: OtlpReceiver, pipeline: str) -> None:
    env: dict[str, Any] = {
        **otlp_env(otlp),
        "OTEL_SDK_DISABLED": "true",
        "TELEMETRY_PIPELINE": pipeline,
    }
    process = ServiceProcess("api", env).start()
    try:
        statuses = [httpx.get(f"{process.url}/api/v1/info").status_code for _ in range(5)]
        samples = scrape(process.url)
        time.sleep(1.0)  # several export intervals
    finally:
        process.stop()
    assert statuses == [200] * 5
    assert otlp.requests == []
    assert samples == []
    assert any(r["event"] == "telemetry_configured" for r in process.json_logs())  # stdout stays
