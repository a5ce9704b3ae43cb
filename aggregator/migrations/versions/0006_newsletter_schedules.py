"""Newsletter schedules: each newsletter's schedule and time zone, and when they last changed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

A scheduled time of a new schedule that came before the change is not an issue missed:
moving a 07:00 newsletter to 09:00 at 10:00 (or adding a time zone to it) sent a second
issue that day.  A newsletter's first row records its schedule with no change time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "newsletter_schedules",
        sa.Column("newsletter", sa.String(64), primary_key=True),
        sa.Column("schedule", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True)),  # the models' UTCDateTime, as in 0002
    )


def downgrade() -> None:
    op.drop_table("newsletter_schedules")
