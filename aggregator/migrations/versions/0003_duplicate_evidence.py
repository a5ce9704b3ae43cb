"""Dedupe evidence: which entry a copy matched and the body similarities measured.

Revision ID: 0003
Revises: 0002
Create Date: 2025-08-18

``aggregator explain ENTRY_ID`` says why an entry is a duplicate: the stage and score were
stored already; this adds the entry it matched and both similarities, and an index on
``duplicate_of`` to find a kept entry's alternates without a scan.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.add_column(sa.Column("duplicate_matched", sa.String(16)))
        batch.add_column(sa.Column("duplicate_jaccard", sa.Float()))
        batch.add_column(sa.Column("duplicate_containment", sa.Float()))
    op.create_index("ix_entries_duplicate_of", "entries", ["duplicate_of"])


def downgrade() -> None:
    op.drop_index("ix_entries_duplicate_of", "entries")
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("duplicate_containment")
        batch.drop_column("duplicate_jaccard")
        batch.drop_column("duplicate_matched")
