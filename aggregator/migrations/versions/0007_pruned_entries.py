"""Pruned entries: a tombstone for each entry retention removed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

``aggregator prune`` deletes entries older than ``retention.max_age`` for good.  A feed
may still carry one of them (a feed that keeps its whole archive): without a record of
it, the next poll stored it again as new, in the outputs and the next digest.  A row is
``(feed_url, guid)``, the entry's identity, and when it was removed.  Written by hand
with plain column types, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pruned_entries",
        sa.Column("feed_url", sa.Text(), nullable=False),
        sa.Column("guid", sa.Text(), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),  # the models' UTCDateTime
        sa.PrimaryKeyConstraint("feed_url", "guid", name="pk_pruned_entries"),
    )


def downgrade() -> None:
    op.drop_table("pruned_entries")
