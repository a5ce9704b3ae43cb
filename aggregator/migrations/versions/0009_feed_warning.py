"""Feed warning: the parser's warnings about the last body it accepted.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

A feed accepted despite broken XML (feedparser recovered, and some entries may be missing)
or a wrong charset was only named in one log line of the poll that read it: afterwards
``aggregator status`` said "ok", and whoever missed that line (cron's mail unread, the
scheduler's log rotated) never learned the feed is served broken.  The warnings, joined and
capped, are kept with the feed's state until a body parses cleanly.  Feeds stored before
this revision get theirs at their next poll with a body.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.add_column(sa.Column("last_warning", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("feeds") as batch:
        batch.drop_column("last_warning")
