"""The api's business instruments (names from the monitoring guide)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.fast_metrics import FastMetrics


@dataclass
class GaugeSnapshot:
    """Values computed from the database by the elected reporter, read by observable gauges.

    Only one api replica reports them (see `background`), so `sum(mandates_active)` is right
    however many replicas run; the others report nothing rather than a duplicate.
    """

    mandates_active: dict[str, int] = field(default_factory=dict)
    active_users: dict[tuple[str, str], int] = field(default_factory=dict)
    outbox_backlog: int = 0
    outbox_oldest_age_seconds: float = 0.0
    reporting: bool = False


class ApiMetrics:
    def __init__(self, meter: Meter, fast: FastMetrics, service: str = "mandate-vault-api") -> None:
        self.snapshot = GaugeSnapshot()
        self._endpoints_disabled = meter.create_counter(
            names.WEBHOOK_ENDPOINTS_DISABLED_TOTAL,
            description="Webhook subscriptions disabled because their endpoint failed every "
            "attempt for API_WEBHOOK_DISABLE_AFTER_SECONDS",
        )
        self._service_attrs = {names.LABEL_SERVICE: service}
        self._endpoints_disabled.add(0, self._service_attrs)
        self._auth = meter.create_counter(
            names.AUTH_ATTEMPTS_TOTAL, description="Authentication attempts by result"
        )
        self._created = fast.counter(
            names.MANDATES_CREATED_TOTAL,
            "Mandates created by verification status",
            ("tenant_id", "verification_status"),
        )
        meter.create_observable_gauge(
            names.MANDATES_ACTIVE,
            callbacks=[self._observe_mandates],
            description="Mandates that are VALID, not expired and not revoked",
        )
        meter.create_observable_gauge(
            names.ACTIVE_USERS,
            callbacks=[self._observe_users],
            description="Enabled user accounts by tenant and role",
        )
        meter.create_observable_gauge(
            names.OUTBOX_BACKLOG,
            callbacks=[self._observe_backlog],
            description="Outbox events not yet published to Kafka",
        )
        meter.create_observable_gauge(
            names.OUTBOX_OLDEST_AGE,
            unit="s",
            callbacks=[self._observe_oldest],
            description="Age of the oldest unpublished outbox event",
        )
        self._reconciled = meter.create_counter(
            names.WEBHOOK_EVENTS_RECONCILED_TOTAL,
            description="Events published but never recorded by the worker (the broker lost "
            "them), published again with the same webhook-id",
        )
        self._service = {names.LABEL_SERVICE: service}
        self._reconciled.add(0, self._service)
        self._auth_attrs = {r: {"result": r} for r in ("success", "failed", "locked_out")}
        # Every series exists from the start at 0: the first increment is then visible to
        # rate()/increase() (a series born at 1 hides it).
        for attributes in self._auth_attrs.values():
            self._auth.add(0, attributes)

    def endpoint_disabled(self) -> None:
        self._endpoints_disabled.add(1, self._service_attrs)

    def auth_attempt(self, result: str) -> None:
        self._auth.add(1, self._auth_attrs[result])

    def events_reconciled(self, count: int) -> None:
        self._reconciled.add(count, self._service)

    def mandate_created(self, tenant_id: str, verification_status: str) -> None:
        self._created.add((tenant_id, verification_status))

    def _observe_mandates(self, _: CallbackOptions) -> Iterable[Observation]:
        if not self.snapshot.reporting:
            return []
        return [Observation(n, {"tenant_id": t}) for t, n in self.snapshot.mandates_active.items()]

    def _observe_users(self, _: CallbackOptions) -> Iterable[Observation]:
        if not self.snapshot.reporting:
            return []
        return [
            Observation(n, {"tenant_id": tenant, "role": role})
            for (tenant, role), n in self.snapshot.active_users.items()
        ]

    def _observe_backlog(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.snapshot.outbox_backlog)] if self.snapshot.reporting else []

    def _observe_oldest(self, _: CallbackOptions) -> Iterable[Observation]:
        if not self.snapshot.reporting:
            return []
        return [Observation(self.snapshot.outbox_oldest_age_seconds)]
