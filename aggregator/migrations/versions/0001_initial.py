"""Initial schema: feeds, entries, entry_signatures, stories.

Revision ID: 0001
Revises:
Create Date: 2025-08-18

Written by hand, with plain column types (no imports from ``aggregator.store``), so
that this revision keeps creating the same schema however the code changes later.
Timestamps are ``DateTime(timezone=True)``: ``timestamptz`` on PostgreSQL, ISO text in
UTC on SQLite (``aggregator.store.UTCDateTime`` does the conversion).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("fetch_url", sa.Text(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.Text(), nullable=True),
        _timestamp("last_fetch"),
        _timestamp("last_unconditional_fetch"),
        _timestamp("next_check"),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("redirect_target", sa.Text(), nullable=True),
        sa.Column("redirect_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("url", name="pk_feeds"),
    )
    op.create_table(
        "stories",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        _timestamp("first_seen", nullable=False),
        _timestamp("updated", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stories"),
    )
    op.create_table(
        "entries",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("feed_url", sa.Text(), nullable=False),
        sa.Column("guid", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("canonical_url", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("authors", sa.JSON(), nullable=False),
        _timestamp("published"),
        _timestamp("updated"),
        sa.Column("content_html", sa.Text(), nullable=False),
        sa.Column("summary_html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("enclosures", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        _timestamp("first_seen", nullable=False),
        _timestamp("last_updated", nullable=False),
        sa.Column("duplicate_of", sa.String(16), nullable=True),
        sa.Column("duplicate_stage", sa.String(32), nullable=True),
        sa.Column("duplicate_score", sa.Float(), nullable=True),
        sa.Column("story", sa.String(64), nullable=True),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entries"),
        sa.ForeignKeyConstraint(["feed_url"], ["feeds.url"], name="fk_entries_feed_url_feeds"),
        sa.ForeignKeyConstraint(
            ["duplicate_of"], ["entries.id"], name="fk_entries_duplicate_of_entries", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["story"], ["stories.id"], name="fk_entries_story_stories", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("feed_url", "guid", name="uq_entries_feed_url_guid"),
    )
    op.create_index("ix_entries_canonical_url", "entries", ["canonical_url"])
    op.create_index("ix_entries_story", "entries", ["story"])
    op.create_index("ix_entries_first_seen_id", "entries", ["first_seen", "id"])
    op.create_table(
        "entry_signatures",
        sa.Column("entry_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_entry_signatures"),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name="fk_entry_signatures_entry_id_entries", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("entry_signatures")
    op.drop_index("ix_entries_first_seen_id", table_name="entries")
    op.drop_index("ix_entries_story", table_name="entries")
    op.drop_index("ix_entries_canonical_url", table_name="entries")
    op.drop_table("entries")
    op.drop_table("stories")
    op.drop_table("feeds")
