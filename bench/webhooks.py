"""`make bench`, section "webhooks": delivery latency, isolation and capacity on real parts.

1. One subscription: mandates created through the api at BENCH_WEBHOOK_RPS (100) for
   BENCH_WEBHOOK_SECONDS (60); latency from the mandate accepted (201) to the subscriber
   receiving its webhook, events lost, and the worker's CPU per delivery (from /proc).
2. Noisy neighbour: four tenants at BENCH_NOISY_RPS (25) mandates/s each for
   BENCH_WEBHOOK_SECONDS; tenant A's endpoint answers after BENCH_SLOW_SECONDS (5). The other
   three: p99 and the share delivered by the end of the run; A: events lost once its backlog
   drained (bounded by BENCH_DRAIN_SECONDS, 900).
3. Capacity of ONE subscription: jobs produced straight to the topic (the api's create path is
   not what is measured here) at rising rates for BENCH_STEP_SECONDS (10) each until p99 > 1 s,
   with 1 and with 2 worker replicas; the highest rate sustained with p99 <= 1 s and none lost.

The receiver runs in a process of its own (the harness's `ReceiverProcess`), answering at once or
after the tenant's delay. Every run uses a fresh topic (4 partitions) and consumer group.
Figures go to the report's markdown and to `figures` (reports/bench-<date>.json).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from bench.parts import Bench
from mandate_vault_harness.load import run_constant_rate
from mandate_vault_harness.receiver import ReceiverProcess
from mandate_vault_harness.services import ServiceProcess
from mandate_vault_shared.messages import EventType, WebhookJob

QUICK = os.environ.get("BENCH_QUICK") == "1"
RPS = float(os.environ.get("BENCH_WEBHOOK_RPS", "20" if QUICK else "100"))
SECONDS = float(os.environ.get("BENCH_WEBHOOK_SECONDS", "4" if QUICK else "60"))
NOISY_RPS = float(os.environ.get("BENCH_NOISY_RPS", "5" if QUICK else "25"))
SLOW_SECONDS = float(os.environ.get("BENCH_SLOW_SECONDS", "1" if QUICK else "5"))
DRAIN_SECONDS = float(os.environ.get("BENCH_DRAIN_SECONDS", "60" if QUICK else "900"))
STEP_SECONDS = float(os.environ.get("BENCH_STEP_SECONDS", "3" if QUICK else "10"))
STEP_START = float(os.environ.get("BENCH_STEP_START_RPS", "50" if QUICK else "100"))
STEP_FACTOR = 1.4
STEP_LIMIT_MS = 1000.0
PARTITIONS = 4


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


@dataclass
class Tenant:
    name: str
    api_key: str
    path: str
    subscription: dict[str, Any]
    accepted: dict[str, float] = field(default_factory=dict)  # mandate id -> 201 time

    def arrivals(self, received: list[dict[str, Any]]) -> dict[str, float]:
        """Mandate id -> first arrival of its webhook at this tenant's endpoint."""
        first: dict[str, float] = {}
        for item in received:
            if item["path"] == self.path and item["id"] in self.accepted:
                first[item["id"]] = min(item["at"], first.get(item["id"], item["at"]))
        return first

    def latencies_ms(self, arrivals: dict[str, float]) -> list[float]:
        return [(arrivals[m] - self.accepted[m]) * 1000 for m in arrivals]


class Run:
    """A fresh topic, an api publishing to it and `workers` consuming it, one receiver."""

    def __init__(self, stack: Bench, receiver: ReceiverProcess) -> None:
        self.stack = stack
        self.receiver = receiver
        self.topic = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
        stack.broker.create_topic(self.topic, PARTITIONS)

    def worker_env(self) -> dict[str, str]:
        return {
            **self.stack.otlp_env(),
            "WORKER_JOBS_TOPIC": self.topic,
            "WORKER_CONSUMER_GROUP": f"group-{self.topic}",
            "WORKER_DEAD_LETTER_TOPIC": f"{self.topic}.dlq",
        }

    @contextmanager
    def services(self, workers: int = 1) -> Iterator[tuple[ServiceProcess, list[ServiceProcess]]]:
        with ExitStack() as stack:
            api = stack.enter_context(
                self.stack.api({**self.stack.otlp_env(), "API_JOBS_TOPIC": self.topic})
            )
            started = [stack.enter_context(self.stack.worker(self.worker_env()))]
            started += [
                stack.enter_context(self.stack.worker(self.worker_env()))
                for _ in range(workers - 1)
            ]
            yield api, started

    def tenant(self, api: ServiceProcess, name: str, slow_seconds: float = 0.0) -> Tenant:
        key = self.stack.add_tenant(f"{name}-{self.topic[-8:]}")
        path = f"/{name}-{self.topic[-8:]}"
        subscription = self.stack.subscribe(api.url, self.receiver.url(path), key)
        self.receiver.register(path, subscription["secret"], slow_seconds)
        return Tenant(name, key, path, subscription)

    def warm_up(self, api: ServiceProcess, workers: list[ServiceProcess]) -> None:
        """Until the group is settled (every worker holds partitions, together all of them) and
        webhooks made it through: no rebalance lands in a measurement, caches are warm."""
        deadline = time.monotonic() + 60
        while not _settled(workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        tenant = self.tenant(api, "warm-up")
        run_constant_rate(_create(api.url, [tenant], self.stack.token), 10, 1)
        _wait(self.receiver, lambda r: len(tenant.arrivals(r)) >= len(tenant.accepted), 60)


def _settled(workers: list[ServiceProcess]) -> bool:
    """Each worker's latest assignment is non-empty, and together they hold every partition."""
    held: list[set[int]] = []
    for worker in workers:
        assigned = [r for r in worker.json_logs() if r.get("event") == "partitions_assigned"]
        if not assigned:
            return False
        held.append(set(json.loads(str(assigned[-1]["partitions"]))))
    union = set().union(*held)
    return all(held) and union == set(range(PARTITIONS)) and sum(map(len, held)) == PARTITIONS


def _create(api: str, tenants: list[Tenant], token: Callable[[], str]) -> Any:
    """An open-loop request creating a mandate for each tenant in turn."""
    counter = iter(range(1 << 62))
    body = json.dumps({"vc_jwt": token()}).encode()

    async def request(session: aiohttp.ClientSession) -> int:
        tenant = tenants[next(counter) % len(tenants)]
        async with session.post(
            f"{api}/api/v1/mandates",
            data=body,
            headers={"Content-Type": "application/json", "X-API-Key": tenant.api_key},
        ) as response:
            created = await response.json(content_type=None)
            if response.status == 201:
                tenant.accepted[created["id"]] = time.monotonic()
            return response.status

    return request


def _wait(
    receiver: ReceiverProcess, done: Callable[[list[dict[str, Any]]], bool], limit: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + limit
    received = receiver.received()
    while not done(received) and time.monotonic() < deadline:
        time.sleep(0.5)
        received = receiver.received()
    return received


def one_subscription(
    stack: Bench, receiver: ReceiverProcess, figures: MutableMapping[str, float]
) -> list[str]:
    run = Run(stack, receiver)
    with run.services() as (api, (worker,)):
        run.warm_up(api, [worker])
        tenant = run.tenant(api, "one")
        cpu_before = worker.cpu_seconds()
        outcome = run_constant_rate(_create(api.url, [tenant], stack.token), RPS, SECONDS)
        received = _wait(receiver, lambda r: len(tenant.arrivals(r)) >= len(tenant.accepted), 30)
        cpu = worker.cpu_seconds() - cpu_before
    arrivals = tenant.arrivals(received)
    latencies = tenant.latencies_ms(arrivals)
    lost = len(tenant.accepted) - len(arrivals)
    cpu_ms = cpu * 1000 / max(len(arrivals), 1)
    figures["webhook.one_subscription.p50_ms"] = round(pct(latencies, 0.5), 1)
    figures["webhook.one_subscription.p99_ms"] = round(pct(latencies, 0.99), 1)
    figures["webhook.one_subscription.lost"] = lost
    figures["webhook.worker_cpu_ms_per_delivery"] = round(cpu_ms, 3)
    return [
        f"### Webhooks, one subscription at {RPS:.0f} mandates/s ({SECONDS:.0f} s, mandate "
        "accepted -> subscriber received)",
        "",
        "| mandates | delivered | lost | p50 ms | p95 ms | p99 ms | max ms | create errors "
        "| worker CPU ms per delivery |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {len(tenant.accepted)} | {len(arrivals)} | {lost} | {pct(latencies, 0.5):.1f} "
        f"| {pct(latencies, 0.95):.1f} | {pct(latencies, 0.99):.1f} | {pct(latencies, 1.0):.1f} "
        f"| {sum(outcome.errors.values())} | {cpu_ms:.2f} |",
        "",
    ]


def noisy_neighbour(
    stack: Bench, receiver: ReceiverProcess, figures: MutableMapping[str, float]
) -> list[str]:
    run = Run(stack, receiver)
    with run.services() as (api, started):
        run.warm_up(api, started)
        slow = run.tenant(api, "slow-a", SLOW_SECONDS)
        others = [run.tenant(api, name) for name in ("b", "c", "d")]
        tenants = [slow, *others]
        run_constant_rate(_create(api.url, tenants, stack.token), NOISY_RPS * 4, SECONDS)
        at_end = _wait(receiver, lambda r: False, 1.0)  # the run's end: the load plus a second
        drain_started = time.monotonic()
        drained = _wait(
            receiver, lambda r: len(slow.arrivals(r)) >= len(slow.accepted), DRAIN_SECONDS
        )
        drain = time.monotonic() - drain_started
    accepted = sum(len(t.accepted) for t in others)
    on_time = sum(len(t.arrivals(at_end)) for t in others)
    latencies = [ms for t in others for ms in t.latencies_ms(t.arrivals(drained))]
    slow_lost = len(slow.accepted) - len(slow.arrivals(drained))
    ratio = on_time / accepted if accepted else float("nan")
    figures["webhook.noisy_neighbour.others_p99_ms"] = round(pct(latencies, 0.99), 1)
    figures["webhook.noisy_neighbour.others_delivered_ratio"] = round(ratio, 4)
    figures["webhook.noisy_neighbour.slow_lost"] = slow_lost
    figures["webhook.noisy_neighbour.slow_drain_seconds"] = round(drain, 1)
    return [
        f"### Webhooks, noisy neighbour: 4 tenants x {NOISY_RPS:.0f} mandates/s "
        f"({SECONDS:.0f} s), tenant A's endpoint answers after {SLOW_SECONDS:.0f} s",
        "",
        "| tenants | mandates | delivered by the end of the run | p50 ms | p99 ms | lost "
        "| backlog drained after the run |",
        "|---|---|---|---|---|---|---|",
        f"| B, C, D (fast) | {accepted} | {on_time} ({ratio:.1%}) | {pct(latencies, 0.5):.1f} "
        f"| {pct(latencies, 0.99):.1f} | {accepted - len(latencies)} | - |",
        f"| A (slow) | {len(slow.accepted)} | {len(slow.arrivals(at_end))} | - | - | {slow_lost} "
        f"| {drain:.0f} s |",
        "",
    ]


async def _produce(
    topic: str, bootstrap: str, subscription: dict[str, Any], rps: float, seconds: float
) -> dict[str, float]:
    """Jobs for one subscription at a constant rate; returns marker -> scheduled send time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    await producer.start()
    sent: dict[str, float] = {}
    try:
        loop = asyncio.get_running_loop()
        start, pending = loop.time(), []
        for index in range(int(rps * seconds)):
            scheduled = start + index / rps
            if (delay := scheduled - loop.time()) > 0:
                await asyncio.sleep(delay)
            marker = f"m-{uuid.uuid4().hex}"
            job = _job(subscription, marker)
            sent[marker] = scheduled  # the loop's clock is time.monotonic()
            pending.append(await producer.send(topic, job.encode(), key=job.event_id.encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def _job(subscription: dict[str, Any], marker: str) -> WebhookJob:
    now = datetime.now(UTC)
    body = {
        "type": "MandateCreated",
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "sequence": 1,
        "data": {"id": marker},
    }
    return WebhookJob(
        event_id=f"msg_{uuid.uuid4().hex}",
        event_type=EventType.MANDATE_CREATED,
        tenant_id=subscription["tenant_id"],
        subscription_id=subscription["id"],
        occurred_at=now,
        body=json.dumps(body),
    )


@dataclass
class Step:
    rps: float
    sent: int
    delivered: int
    p99_ms: float
    delivered_per_s: float
    cpu_ms: float

    @property
    def held(self) -> bool:
        return self.delivered == self.sent and self.p99_ms <= STEP_LIMIT_MS


def step_up(stack: Bench, receiver: ReceiverProcess, workers: int) -> list[Step]:
    run = Run(stack, receiver)
    steps: list[Step] = []
    with run.services(workers) as (api, started):
        run.warm_up(api, started)
        tenant = run.tenant(api, f"step{workers}")
        subscription = tenant.subscription
        rps = STEP_START
        while True:
            step = _step(run, tenant, subscription, started, rps)
            steps.append(step)
            print(f"step-up, {workers} worker(s): {step}", flush=True)
            if not step.held or QUICK:  # the quick run checks the tooling: one step
                return steps
            rps *= STEP_FACTOR


def _step(
    run: Run,
    tenant: Tenant,
    subscription: dict[str, Any],
    workers: list[ServiceProcess],
    rps: float,
) -> Step:
    cpu_before = sum(w.cpu_seconds() for w in workers)
    sent = asyncio.run(
        _produce(run.topic, run.stack.broker.bootstrap, subscription, rps, STEP_SECONDS)
    )
    tenant.accepted = sent
    received = _wait(run.receiver, lambda r: len(tenant.arrivals(r)) >= len(sent), 10)
    arrivals = tenant.arrivals(received)
    cpu = sum(w.cpu_seconds() for w in workers) - cpu_before
    latencies = tenant.latencies_ms(arrivals)
    span = (max(arrivals.values()) - min(sent.values())) if arrivals else 1.0
    return Step(
        rps=round(rps),
        sent=len(sent),
        delivered=len(arrivals),
        p99_ms=round(pct(latencies, 0.99), 1),
        delivered_per_s=round(len(arrivals) / max(span, STEP_SECONDS), 1),
        cpu_ms=round(cpu * 1000 / max(len(arrivals), 1), 3),
    )


def capacity(
    stack: Bench, receiver: ReceiverProcess, figures: MutableMapping[str, float]
) -> list[str]:
    lines = [
        f"### Webhooks, capacity of ONE subscription (jobs produced to the topic at rising rates, "
        f"{STEP_SECONDS:.0f} s per step, until p99 > 1 s or a job is late)",
        "",
        "| workers | target jobs/s | sent | delivered in time | delivered/s | p99 ms "
        "| worker CPU ms per delivery |",
        "|---|---|---|---|---|---|---|",
    ]
    for workers in (1, 2):
        steps = step_up(stack, receiver, workers)
        held = [s for s in steps if s.held]
        best = max((s.delivered_per_s for s in held), default=0.0)
        figures[f"webhook.max_per_subscription_per_s.workers_{workers}"] = best
        lines += [
            f"| {workers} | {s.rps} | {s.sent} | {s.delivered} | {s.delivered_per_s} "
            f"| {s.p99_ms} | {s.cpu_ms} |"
            for s in steps
        ]
    lines.append("")
    return lines


def run(stack: Bench, figures: MutableMapping[str, float]) -> list[str]:
    receiver = ReceiverProcess().start()
    try:
        lines = one_subscription(stack, receiver, figures)
        lines += noisy_neighbour(stack, receiver, figures)
        lines += capacity(stack, receiver, figures)
    finally:
        receiver.stop()
    return lines
