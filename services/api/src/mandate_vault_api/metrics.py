"""The api's business instruments (names from the monitoring guide)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mandate_vault_shared.telemetry import names
from mandate_vault_shared.telemetry.instruments import Labels, Metrics


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
    def __init__(self, metrics: Metrics, service: str = "mandate-vault-api") -> None:
        self.snapshot = GaugeSnapshot()
        self._endpoints_disabled = metrics.counter(
            names.WEBHOOK_ENDPOINTS_DISABLED_TOTAL,
            "Webhook subscriptions disabled because their endpoint failed every "
            "attempt for API_WEBHOOK_DISABLE_AFTER_SECONDS",
            (names.LABEL_SERVICE,),
        )
        self._service_labels = (service,)
        self._endpoints_disabled.add(self._service_labels, 0)
        self._reconciled = metrics.counter(
            names.WEBHOOK_EVENTS_RECONCILED_TOTAL,
            "Events published but never recorded by the worker (the broker lost them), "
            "published again with the same webhook-id",
            (names.LABEL_SERVICE,),
        )
        self._reconciled.add(self._service_labels, 0)
        self._auth = metrics.counter(
            names.AUTH_ATTEMPTS_TOTAL, "Authentication attempts by result", ("result",)
        )
        self._created = metrics.counter(
            names.MANDATES_CREATED_TOTAL,
            "Mandates created by verification status",
            ("tenant_id", "verification_status"),
        )
        metrics.observe(
            names.MANDATES_ACTIVE,
            "Mandates that are VALID, not expired and not revoked",
            ("tenant_id",),
            self._observe_mandates,
        )
        metrics.observe(
            names.ACTIVE_USERS,
            "Enabled user accounts by tenant and role",
            ("tenant_id", "role"),
            self._observe_users,
        )
        metrics.observe(
            names.OUTBOX_BACKLOG,
            "Outbox events not yet published to Kafka",
            (),
            self._observe_backlog,
        )
        metrics.observe(
            names.OUTBOX_OLDEST_AGE,
            "Age of the oldest unpublished outbox event",
            (),
            self._observe_oldest,
            unit="s",
        )
        self._auth_labels = {r: (r,) for r in ("success", "failed", "locked_out")}
        # Every series exists from the start at 0: the first increment is then visible to
        # rate()/increase() (a series born at 1 hides it).
        for labels in self._auth_labels.values():
            self._auth.add(labels, 0)

    def endpoint_disabled(self) -> None:
        self._endpoints_disabled.add(self._service_labels)

    def events_reconciled(self, count: int) -> None:
        self._reconciled.add(self._service_labels, count)

    def auth_attempt(self, result: str) -> None:
        self._auth.add(self._auth_labels[result])

    def mandate_created(self, tenant_id: str, verification_status: str) -> None:
        self._created.add((tenant_id, verification_status))

    def _observe_mandates(self) -> Iterable[tuple[Labels, float]]:
        if not self.snapshot.reporting:
            return []
        return [((t,), n) for t, n in self.snapshot.mandates_active.items()]

    def _observe_users(self) -> Iterable[tuple[Labels, float]]:
        if not self.snapshot.reporting:
            return []
        return [((tenant, role), n) for (tenant, role), n in self.snapshot.active_users.items()]

    def _observe_backlog(self) -> Iterable[tuple[Labels, float]]:
        return [((), self.snapshot.outbox_backlog)] if self.snapshot.reporting else []

    def _observe_oldest(self) -> Iterable[tuple[Labels, float]]:
        if not self.snapshot.reporting:
            return []
        return [((), self.snapshot.outbox_oldest_age_seconds)]
