"""Collector-fed series equal the directly scraped ones: names, labels, units, suffixes.

In compose and Kubernetes the services' metrics reach Prometheus only through the collector
(OTLP in, prometheus_remote_write out); `make run` and the guide's local setup scrape
/api/v1/metrics instead. Alerts, SLO rules and the dashboard must read both the same way. No
collector binary can run here (none is packaged for the reachable registries), so the
collector's OTLP -> Prometheus translation is restated from its documentation in
the harness's otlp_prometheus module (checked first against the documented examples), and
applied, with the metrics pipeline's processors from deploy/otel-collector.yaml, to what the
three real services export over OTLP to a stand-in receiver after real traffic.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client.parser import text_string_to_metric_families

from mandate_vault_api.roles import Role
from mandate_vault_harness.broker import Broker
from mandate_vault_harness.issuer import Issuer
from mandate_vault_harness.otlp import OtlpReceiver, attributes, start_receiver
from mandate_vault_harness.otlp_prometheus import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    Series,
    bucket_bound,
    label_name,
    metric_name,
    target_labels,
    translate,
)
from mandate_vault_harness.prometheus import ALERT_RULES, DEPLOY, PROMETHEUS_CONFIG
from mandate_vault_harness.system import QUICK_API, QUICK_WORKER, System

pytestmark = pytest.mark.timeout(180)

COLLECTOR = DEPLOY / "otel-collector.yaml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "mandate-vault.json"
# Resource attributes as compose and Kubernetes set them (service.namespace included: the
# collector's metrics pipeline removes it so that job is service.name, as in the direct scrape).
RESOURCE_ATTRIBUTES = "service.namespace=mandate-vault,deployment.platform=compose"
NOT_COMPARED = {"target_info"}  # resource attributes: a separate info series on both paths


# --- the translation rules against the documented examples ----------------------------------

DOCUMENTED_NAMES = [
    # (OTLP name, unit, kind, Prometheus name)
    ("http.server.request.duration", "s", HISTOGRAM, "http_server_request_duration_seconds"),
    ("requests", "", COUNTER, "requests_total"),
    ("requests_total", "", COUNTER, "requests_total"),
    ("total.requests", "", COUNTER, "requests_total"),
    ("items", "1", COUNTER, "items_total"),
    ("cpu_usage", "1", GAUGE, "cpu_usage_ratio"),
    ("cpu_usage_ratio", "1", GAUGE, "cpu_usage_ratio"),
    ("response_time", "ms", GAUGE, "response_time_milliseconds"),
    ("response_time_seconds", "s", GAUGE, "response_time_seconds"),
    ("memory.usage", "By", GAUGE, "memory_usage_bytes"),
    ("requests", "1/s", GAUGE, "requests_per_second"),
    ("throughput", "By/s", GAUGE, "throughput_bytes_per_second"),
    ("custom_metric", "{custom}", GAUGE, "custom_metric"),
    ("custom_metric", "By/{custom}", GAUGE, "custom_metric_bytes"),
    (
        "custom_metric",
        "unit@with#special/chars",
        GAUGE,
        "custom_metric_unit_with_special_per_chars",
    ),
    (
        "metric__with__multiple__underscores",
        "unit__multiple__underscores",
        GAUGE,
        "metric_with_multiple_underscores_unit_multiple_underscores",
    ),
    ("active_connections", "", GAUGE, "active_connections"),
    ("123_requests", "", COUNTER, "_123_requests_total"),
    ("http.server.active_requests", "{request}", GAUGE, "http_server_active_requests"),
    # Where a name breaks: an up-down counter in "1" becomes a ratio, a counter gains _total.
    ("db_connections_active", "1", GAUGE, "db_connections_active_ratio"),
    ("http_requests", "", COUNTER, "http_requests_total"),
    ("http_request_duration", "s", HISTOGRAM, "http_request_duration_seconds"),
    (
        "http_request_duration_seconds",
        "ms",
        HISTOGRAM,
        "http_request_duration_seconds_milliseconds",
    ),
]


@pytest.mark.parametrize(("name", "unit", "kind", "expected"), DOCUMENTED_NAMES)
def test_metric_names_follow_the_documented_translation(
    name: str, unit: str, kind: str, expected: str
) -> None:
    assert metric_name(name, unit, kind) == expected


def test_label_names_and_bounds_follow_the_documented_translation() -> None:
    assert label_name("http.route") == "http_route"
    assert label_name("tenant_id") == "tenant_id"
    assert label_name("1st") == "key_1st"
    assert label_name("_private") == "key_private"
    assert label_name("__reserved") == "__reserved"
    assert [bucket_bound(b) for b in (0.001, 0.5, 1.0, 2.5, 10.0, 100.0, 1e-05)] == [
        "0.001",
        "0.5",
        "1",
        "2.5",
        "10",
        "100",
        "0.00001",
    ]
    assert target_labels({"service.name": "a", "service.instance.id": "i"}) == {
        "job": "a",
        "instance": "i",
    }
    assert target_labels({"service.name": "a", "service.namespace": "ns"}) == {"job": "ns/a"}


# --- the collector's metrics pipeline, from deploy/otel-collector.yaml -----------------------


def collector_config() -> dict[str, Any]:
    return dict(yaml.safe_load(COLLECTOR.read_text(encoding="utf-8")))


def deleted_resource_keys(config: dict[str, Any]) -> set[str]:
    """Resource attributes the metrics pipeline's transform processors delete."""
    keys: set[str] = set()
    for processor in config["service"]["pipelines"]["metrics"]["processors"]:
        for group in config["processors"][processor].get("metric_statements", []):
            assert group["context"] == "resource", f"{processor}: only resource statements known"
            for statement in group["statements"]:
                match = re.fullmatch(r'delete_key\(attributes, "([^"]+)"\)', statement)
                assert match, f"{processor}: statement not modelled here: {statement}"
                keys.add(match.group(1))
    return keys


def redaction(config: dict[str, Any]) -> tuple[list[re.Pattern[str]], list[re.Pattern[str]]]:
    settings = config["processors"]["redaction"]
    assert "redaction" in config["service"]["pipelines"]["metrics"]["processors"]
    return (
        [re.compile(p) for p in settings["blocked_key_patterns"]],
        [re.compile(p) for p in settings["blocked_values"]],
    )


def exporter_settings(config: dict[str, Any]) -> dict[str, Any]:
    (exporter,) = config["service"]["pipelines"]["metrics"]["exporters"]
    assert exporter == "prometheus_remote_write"
    settings = dict(config["exporters"][exporter])
    # The translation restated here is the one these settings select.
    assert settings.get("add_metric_suffixes", True) is True
    assert settings["resource_to_telemetry_conversion"]["enabled"] is False
    return settings


@dataclass
class Collected:
    """What the collector would write, per service.name (before job/instance are applied)."""

    series: dict[str, set[Series]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)


def collect(requests: list[ExportMetricsServiceRequest], config: dict[str, Any]) -> Collected:
    """Translate the newest export of each service the way the collector would."""
    deleted = deleted_resource_keys(config)
    out = Collected()
    for request in requests:  # oldest first: a later export of a service replaces it
        for rm in request.resource_metrics:
            resource = attributes(rm.resource.attributes)
            service = str(resource["service.name"])
            out.resources[service] = resource
            target = target_labels({k: v for k, v in resource.items() if k not in deleted})
            series: set[Series] = set()
            for metric in (m for sm in rm.scope_metrics for m in sm.metrics):
                data = getattr(metric, metric.WhichOneof("data"))
                labels = [
                    {k: str(v) for k, v in attributes(p.attributes).items()}
                    for p in data.data_points
                ]
                out.redacted += redacted(config, metric.name, labels)
                family, found, dropped = translate(metric, labels, target)
                if dropped:
                    out.dropped.append(f"{service}: {dropped}")
                if family is not None:
                    out.kinds[family] = _kind_of(metric)
                series |= found
            out.series[service] = series
    return out


def redacted(config: dict[str, Any], metric: str, points: list[dict[str, str]]) -> list[str]:
    """Labels whose values the redaction processor would mask."""
    blocked_keys, blocked_values = redaction(config)
    return [
        f"{metric}{{{key}={text!r}}}"
        for point in points
        for key, text in point.items()
        if any(p.search(key) for p in blocked_keys) or any(p.search(text) for p in blocked_values)
    ]


def _kind_of(metric: Any) -> str:
    data = metric.WhichOneof("data")
    if data == "sum" and metric.sum.is_monotonic:
        return COUNTER
    return HISTOGRAM if data == "histogram" else GAUGE


# --- the direct scrape ---------------------------------------------------------------------


def direct_jobs() -> dict[str, str]:
    """port -> job of config/prometheus.yml (the direct scrape: guide's setup, make run)."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return {
        job["static_configs"][0]["targets"][0].rsplit(":", 1)[1]: job["job_name"]
        for job in config["scrape_configs"]
        if job.get("metrics_path") == "/api/v1/metrics"
    }


def scrape(url: str) -> tuple[set[Series], dict[str, str]]:
    """Series of one /api/v1/metrics (le spelled as the collector spells it) and family kinds."""
    text = httpx.get(f"{url}/api/v1/metrics", timeout=5).text
    series: set[Series] = set()
    kinds: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        kinds[family.name + ("_total" if family.type == "counter" else "")] = family.type
        for sample in family.samples:
            # Prometheus takes a label with an empty value for no label at all (as OTLP, which
            # leaves the attribute out): e.g. the semantic-convention `error_type` of a success.
            labels = {k: v for k, v in sample.labels.items() if v != ""}
            if "le" in labels and labels["le"] != "+Inf":
                labels["le"] = bucket_bound(float(labels["le"]))
            series.add(Series(sample.name, frozenset(labels.items())))
    return series, kinds


def without(series: set[Series], keys: set[str]) -> set[Series]:
    return {
        Series(s.name, frozenset((k, v) for k, v in s.labels if k not in keys))
        for s in series
        if s.name not in NOT_COMPARED
    }


def shapes(series: set[Series]) -> set[tuple[str, frozenset[str]]]:
    return {(s.name, frozenset(k for k, _ in s.labels)) for s in series}


# --- the live part -------------------------------------------------------------------------


@dataclass
class Run:
    urls: dict[str, str]  # service.name -> base URL
    otlp: OtlpReceiver
    direct_before: dict[str, set[Series]] = field(default_factory=dict)
    direct_after: dict[str, set[Series]] = field(default_factory=dict)
    direct_kinds: dict[str, str] = field(default_factory=dict)
    collected: Collected = field(default_factory=Collected)


def metric_requests(otlp: OtlpReceiver, after: int = 0) -> list[ExportMetricsServiceRequest]:
    with otlp.lock:
        raw = list(otlp.raw[after:])
    return [ExportMetricsServiceRequest.FromString(b) for p, b in raw if p == "/v1/metrics"]


def exported_by(requests: list[ExportMetricsServiceRequest]) -> set[str]:
    return {
        str(attributes(rm.resource.attributes).get("service.name"))
        for r in requests
        for rm in r.resource_metrics
    }


def drive(urls: dict[str, str], bank: Issuer, headers: dict[str, str], email: str) -> None:
    """A little of everything: creates (valid, rejected), reads, logins, unknown paths."""
    api = urls["mandate-vault-api"]
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        for token in (bank.mandate(), bank.mandate(), Issuer(did="did:web:x.example").mandate()):
            client.post("/api/v1/mandates", json={"vc_jwt": token})
        client.get("/api/v1/mandates")
        client.post("/api/v1/auth/login", json={"email": email, "password": "wrong"})
        client.get("/no/such/path")


@pytest.fixture(scope="module")
def run(broker: Broker, postgres_server: None) -> Iterator[Run]:
    otlp, server = start_receiver()
    bank = Issuer()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_RESOURCE_ATTRIBUTES": RESOURCE_ATTRIBUTES,
    }
    try:
        with System(
            issuers=[bank],
            broker=broker,
            service_env=env,
            api_tuning=QUICK_API,
            worker_tuning=QUICK_WORKER,
        ) as stack:
            tenant = stack.add_tenant("acme-corp", users=True)
            stack.start_services()
            assert stack.verifier is not None
            urls = {
                "mandate-vault-api": stack.api.url,
                "mandate-vault-jwt-verifier": stack.verifier.url,
                "mandate-vault-webhook-worker": stack.workers[0].url,
            }
            current = Run(urls, otlp)
            stack.subscribe(tenant, "/ok", ["MandateCreated"])
            drive(urls, bank, tenant.headers(), tenant.emails[Role.TENANT_ADMIN])
            stack.receiver.wait_for(lambda r: len(r.at("/ok")) >= 2, timeout=30)
            yield observe(current)
    finally:
        server.shutdown()


def observe(run: Run) -> Run:
    """Scrape, then the next OTLP export of every service, then scrape again."""
    for service, url in run.urls.items():
        run.direct_before[service], kinds = scrape(url)
        run.direct_kinds |= kinds
    with run.otlp.lock:
        mark = len(run.otlp.raw)
    deadline = time.monotonic() + 20
    while exported_by(metric_requests(run.otlp, mark)) < set(run.urls):
        assert time.monotonic() < deadline, "no OTLP metrics export from every service"
        time.sleep(0.2)
    run.collected = collect(metric_requests(run.otlp, mark), collector_config())
    for service, url in run.urls.items():
        run.direct_after[service], _ = scrape(url)
    return run


def test_every_service_exports_cumulative_metrics_over_otlp(run: Run) -> None:
    exporter_settings(collector_config())
    assert set(run.collected.series) == set(run.urls)
    assert not run.collected.dropped, (
        "prometheus_remote_write drops delta sums and histograms: " + str(run.collected.dropped)
    )


def test_job_and_instance_match_the_direct_scrape(run: Run) -> None:
    """job = service.name after the collector removes service.namespace, and equals the direct
    scrape's job; every process has its own service.instance.id (replicas never collide)."""
    assert "service.namespace" in deleted_resource_keys(collector_config())
    jobs = direct_jobs()
    for service in run.urls:
        resource = run.collected.resources[service]
        assert resource.get("service.namespace") == "mandate-vault"  # arrives, then removed
        assert resource.get("service.instance.id"), f"{service} has no service.instance.id"
        labels = {dict(s.labels).get("job") for s in run.collected.series[service]}
        assert labels == {service}
    assert set(jobs.values()) == set(run.urls), "config/prometheus.yml job names"
    ids = {r["service.instance.id"] for r in run.collected.resources.values()}
    assert len(ids) == len(run.urls)


def test_collector_fed_names_and_labels_equal_the_direct_scrape(run: Run) -> None:
    """Same metric names (unit and _total suffixes included), same label names per name."""
    problems = []
    for service in run.urls:
        otlp = without(run.collected.series[service], {"job", "instance"})
        families = sorted({_family(s.name) for s in otlp})
        print(f"\n{service}: {len(otlp)} series, {len(families)} families: {', '.join(families)}")
        before = without(run.direct_before[service], set())
        after = without(run.direct_after[service], set())
        only_otlp = shapes(otlp) - shapes(before) - shapes(after)
        only_direct = shapes(before) - shapes(otlp)
        problems += [f"{service}: only via the collector: {sorted(map(str, only_otlp))}"] * bool(
            only_otlp
        )
        problems += [f"{service}: only scraped: {sorted(map(str, only_direct))}"] * bool(
            only_direct
        )
    assert not problems, "\n".join(problems)


def test_collector_fed_series_equal_the_direct_scrape(run: Run) -> None:
    """Label values too: every series scraped before the export is in it, and everything in
    the export is in the scrape after it (le compared as the collector writes it)."""
    for service in run.urls:
        otlp = without(run.collected.series[service], {"job", "instance"})
        before = without(run.direct_before[service], set())
        after = without(run.direct_after[service], set())
        counters_and_histograms = {
            s for s in before if run.direct_kinds.get(_family(s.name)) != "gauge"
        }
        missing = counters_and_histograms - otlp
        assert not missing, f"{service}: scraped but not exported: {sorted(map(str, missing))}"
        extra = {s for s in otlp - after if run.direct_kinds.get(_family(s.name)) != "gauge"}
        assert not extra, f"{service}: exported but never scraped: {sorted(map(str, extra))}"


def _family(sample: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def test_metric_types_survive_the_translation(run: Run) -> None:
    """A counter stays a counter (rate() works), a gauge a gauge, a histogram a histogram."""
    kinds = {"counter": COUNTER, "gauge": GAUGE, "histogram": HISTOGRAM}
    mismatched = {
        family: (kind, run.direct_kinds.get(family))
        for family, kind in run.collected.kinds.items()
        if family in run.direct_kinds and kinds[run.direct_kinds[family]] != kind
    }
    assert not mismatched, mismatched
    assert run.collected.kinds.get("http_requests_total") == COUNTER
    assert run.collected.kinds.get("http_request_duration_seconds") == HISTOGRAM


def test_redaction_leaves_metric_labels_alone(run: Run) -> None:
    """The metrics pipeline's redaction would mask these label values (a masked tenant or
    endpoint would split or merge series)."""
    assert not run.collected.redacted, run.collected.redacted


def test_no_query_depends_on_how_le_is_spelled() -> None:
    """The direct scrape writes le="1.0" where the collector writes le="1" (Prometheus 3
    normalises both at ingestion, 2.x does not): a query may match only bounds that both
    spell alike."""
    texts = [ALERT_RULES.read_text(encoding="utf-8"), DASHBOARD.read_text(encoding="utf-8")]
    for text in texts:
        for bound in re.findall(r'le\\?="([^"\\]+)\\?"', text):
            if bound == "+Inf":
                continue
            assert bucket_bound(float(bound)) == bound, f'le="{bound}" is spelled two ways'
