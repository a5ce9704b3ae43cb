"""Meta: small facts about the database as a whole, by name.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

The story stage regroups only recent entries, so an edit of the topics in feeds.yaml (a
keyword topic added, a feed's topics removed) never reached the stories grouped before:
they kept the topics stored with them.  Stored stories are now relabelled when the topic
configuration changes, and the row ``topics`` records what they were last relabelled with
(a fingerprint of the rules and the configured names), so that an unchanged configuration
costs one small read.  Written by hand with plain column types, like 0001.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )


def downgrade() -> None:
    op.drop_table("meta")
