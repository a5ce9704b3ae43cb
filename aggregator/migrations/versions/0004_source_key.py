"""Source keys: a digest of each entry as the feed wrote it, before cleaning.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

A poll re-parses a changed feed whole, but most of its entries are the ones already stored.
With the key of each stored entry, the parser skips cleaning (sanitizing, plain text,
hashing) the entries a feed still writes the same way.  Rows stored before this revision
have no key; they get one the next time their feed is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.add_column(sa.Column("source_key", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("entries") as batch:
        batch.drop_column("source_key")
