"""Newsletters: issues (frozen snapshots), per-recipient deliveries, web subscribers.

Revision ID: 0002
Revises: 0001
Create Date: 2025-08-18

Written by hand with plain column types, like 0001.  An issue is ``(newsletter,
number)`` and covers the window ``(window_start, window_end]``; its ``snapshot`` is the
frozen JSON the email and the archive page are both rendered from.  A delivery row is
written before a message's DATA is sent, which is what makes a restart safe.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "newsletter_issues",
        sa.Column("newsletter", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        _timestamp("window_start"),
        _timestamp("window_end", nullable=False),
        _timestamp("frozen_at", nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stories", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        _timestamp("finished_at"),
        sa.PrimaryKeyConstraint("newsletter", "number", name="pk_newsletter_issues"),
    )
    op.create_table(
        "newsletter_deliveries",
        sa.Column("newsletter", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("next_attempt"),
        _timestamp("updated", nullable=False),
        sa.PrimaryKeyConstraint("newsletter", "number", "recipient", name="pk_newsletter_deliveries"),
        sa.ForeignKeyConstraint(
            ["newsletter", "number"],
            ["newsletter_issues.newsletter", "newsletter_issues.number"],
            name="fk_newsletter_deliveries_newsletter_newsletter_issues",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_newsletter_deliveries_status", "newsletter_deliveries", ["newsletter", "number", "status"]
    )
    op.create_table(
        "newsletter_subscribers",
        sa.Column("newsletter", sa.String(64), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _timestamp("changed", nullable=False),
        sa.PrimaryKeyConstraint("newsletter", "address", name="pk_newsletter_subscribers"),
    )


def downgrade() -> None:
    op.drop_table("newsletter_subscribers")
    op.drop_index("ix_newsletter_deliveries_status", table_name="newsletter_deliveries")
    op.drop_table("newsletter_deliveries")
    op.drop_table("newsletter_issues")
