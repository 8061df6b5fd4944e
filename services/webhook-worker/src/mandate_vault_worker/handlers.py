"""What the worker does with one job. Plain async functions, no Kafka or HTTP framework here."""

from __future__ import annotations

from mandate_vault_shared.messages import WebhookJob
from mandate_vault_shared.telemetry import get_logger

log = get_logger(__name__)


async def handle_job(job: WebhookJob) -> None:
    log.info(
        "webhook_job_received",
        event_id=job.event_id,
        event_type=job.event_type.value,
        subscription_id=job.subscription_id,
        tenant_id=job.tenant_id,
    )
