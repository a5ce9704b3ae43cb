"""Feed TTL: the RSS <ttl> of the last body parsed, kept for the polls that get a 304.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

A 304 carries no body, so no <ttl>: without the stored one, a feed that asks to be read
once a day was polled at the configured interval again from its first 304 on.  Feeds
stored before this revision get their TTL at their next poll with a body.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("ttl_seconds", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("ttl_seconds")
