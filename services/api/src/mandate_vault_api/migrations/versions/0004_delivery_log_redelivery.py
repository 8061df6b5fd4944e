"""delivery log bodies, redelivery requests and endpoint health

- webhook_delivery_attempts.response_body / retry_after_seconds: what the endpoint answered
- webhook_deliveries.redelivery: a redelivery asked for by a tenant or an operator
- webhook_deliveries (subscription_id, created_at) index: recover "since a time" per subscription
  (replaces the index on subscription_id alone, which it covers)
- webhook_subscriptions.failing_since: when the endpoint's current run of failures began

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_delivery_attempts") as batch:
        batch.add_column(sa.Column("response_body", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("retry_after_seconds", sa.Numeric(precision=12, scale=2), nullable=True)
        )
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("redelivery", sa.String(length=40), nullable=True))
        batch.drop_index("ix_webhook_deliveries_subscription_id")
        batch.create_index(
            "ix_webhook_deliveries_subscription_created", ["subscription_id", "created_at"]
        )
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("failing_since")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_index("ix_webhook_deliveries_subscription_created")
        batch.create_index("ix_webhook_deliveries_subscription_id", ["subscription_id"])
        batch.drop_column("redelivery")
    with op.batch_alter_table("webhook_delivery_attempts") as batch:
        batch.drop_column("retry_after_seconds")
        batch.drop_column("response_body")
