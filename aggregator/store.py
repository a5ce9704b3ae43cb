"""The database: schema, migrations and every query the project makes.

In: a database URL (``sqlite:///data/aggregator.sqlite`` by default, or
``postgresql+psycopg://user:pass@host/db``), ``FeedState`` and ``Entry`` records from a
poll, and the verdicts of the dedupe and story stages.  Out: ``FeedState``,
``StoredEntry``, ``StoredStory`` and ``SaveCounts`` records; no SQLAlchemy row ever
leaves this module.

``Store.open(url)`` creates the database if needed and migrates it to the newest
schema with alembic (the revisions live in ``aggregator/migrations/versions``), so
opening the same database twice, or from the scheduler and the CLI at once, is safe.
``Store.open(url, create=False)`` is for the commands that only read (``status``,
``export``): where nothing has been stored yet (no SQLite file, or a database without a
table) it creates nothing, no folder, file or table, and raises ``NoDatabaseYet``.
A database already at the newest revision is opened without importing alembic: every
``aggregator poll`` from cron would otherwise pay for it.  Nor is a new SQLite file: it
gets the models' tables and the newest revision recorded at once (``_create_new``; the
tests check that the migrations build the same schema).

Identity: a feed is its URL as configured; an entry is ``(feed url, guid)`` and its
project id is ``entry_id(feed_url, guid)``.  Every write is one transaction: a poll of
one feed either lands completely (state and entries) or not at all.  ``save_polls`` puts
several feeds' polls in one transaction, so that a poll of many feeds pays for one commit
per batch while each feed still lands whole or not at all (should one feed's write fail,
the batch is written again with a savepoint per feed); the polls that bring no entries
(304s, errors) share one savepoint and one ``executemany``.

Retention (``remove_entries``) deletes old entries for good and leaves a tombstone
``(feed url, guid)`` in ``pruned_entries`` for each, which the saves of a poll honour: an
entry removed while its feed still carries it is not stored again as new.

New entries are inserted with the driver's ``executemany``, their values converted by
each column type's own bind processor: SQLAlchemy's per-row statement machinery cost
more than SQLite itself (about 60 µs an entry), and the values sent are the same.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (durable across application
crashes, at most the last commits lost on power failure) and a busy timeout, so a
running scheduler and a CLI command can share the file; writes begin with ``BEGIN
IMMEDIATE`` so that they wait for the lock up front instead of failing halfway.
"""

from __future__ import annotations

import json
import operator
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

import sqlalchemy as sa

from aggregator.errors import DatabaseUnavailable, StoreError
from aggregator.identity import content_hash, entry_id, without_nul  # the first two re-exported
from aggregator.runlock import sqlite_file
from aggregator.types import (
    AgedEntry,
    DuplicateEvidence,
    Enclosure,
    Entry,
    FeedState,
    FeedStatus,
    StoredEntry,
)
from aggregator.urls import without_password

if TYPE_CHECKING:
    from alembic.config import Config

# _ALEMBIC: alembic is imported only to migrate (about 0.1 s and 8 MB); see _migrate.
# _PYGMENTS: alembic imports mako.exceptions, which imports mako's Pygments plugin whenever
# Pygments is installed (rich brings it): 42 modules, 5 MB and 40 ms, only to colour mako's
# HTML error pages, which nothing here renders.  _migrate keeps the plugin out (mako falls
# back to plain escaping): the first poll of a new database no longer pays for it.
_MAKO_PYGMENTS = "mako.ext.pygmentplugin"

__all__ = [
    "MIGRATIONS_DIR",
    "DeliveryRecord",
    "IssueRecord",
    "NoDatabaseYet",
    "SaveCounts",
    "Store",
    "StoredStory",
    "content_hash",
    "entry_id",
    "metadata",
    "migration_config",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long a writer waits for another process's write transaction (SQLite only).
# Saves are short (one feed each), so this only matters when a migration or a big
# batch from another process holds the lock.
SQLITE_BUSY_TIMEOUT_S = 30.0

# Rows fetched per round trip by the iterators; each page is its own short read, so a
# slow consumer (an export piped into gzip) never holds a read transaction open.
PAGE_SIZE = 1000

# Ids per ``IN (...)`` list; SQLite allows 32766 bound parameters, PostgreSQL 65535.
IN_CHUNK = 500

# Stories read (with their members' titles and texts) and relabelled per transaction.
STORY_PAGE = 200

# A fixed key for PostgreSQL's advisory lock that serializes concurrent migrations.
_PG_MIGRATION_LOCK = 0x61676772  # "aggr"


class NoDatabaseYet(StoreError):
    """``Store.open(url, create=False)`` found nothing stored at ``url`` yet (no SQLite file,
    or a database without a table): nothing has been polled there.  ``where`` is the file,
    or the URL with its password hidden."""

    def __init__(self, where: str) -> None:
        super().__init__(f"no database yet at {where}")
        self.where = where


@dataclass(frozen=True, slots=True)
class SaveCounts:
    """What one ``save_poll`` wrote: entries inserted and entries whose content changed."""

    new: int = 0
    updated: int = 0


@dataclass(frozen=True, slots=True)
class StoredStory:
    """A story as stored: its stable id, label, topics and member entries (first seen first)."""

    id: str
    label: str
    topics: tuple[str, ...]
    first_seen: datetime
    updated: datetime  # last time its label, topics or members changed
    entry_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IssueRecord:
    """One newsletter issue as stored: ``(newsletter, number)`` covering ``(window_start, window_end]``.

    ``status`` is ``sending`` until every recipient has an outcome, then ``done``; an
    issue with nothing new is recorded as ``empty`` (no email) so the next window starts
    after it.  ``snapshot`` is the frozen JSON both the email and the archive come from.
    ``number`` keys the issue in the store, one per run, empty ones included; the number
    readers see is the snapshot's (``newsletters.shown_number``), which empty issues do
    not use up.
    """

    newsletter: str
    number: int
    window_start: datetime | None
    window_end: datetime
    frozen_at: datetime
    status: str
    stories: int
    snapshot: str
    finished_at: datetime | None = None

    @property
    def snapshot_number(self) -> int | None:
        """The number readers see, from the frozen JSON; None when it does not say (an issue
        not written by this program)."""
        try:
            number = json.loads(self.snapshot).get("number")
        except (ValueError, AttributeError):
            return None
        return number if isinstance(number, int) else None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One recipient of one issue.

    ``status``: ``pending`` (not tried), ``sending`` (claimed), ``in_data`` (the server
    took DATA: the message may have gone out), ``sent``, ``retry`` (a 4xx; try again at
    ``next_attempt``), ``failed`` (a 5xx, or retries ran out), ``uncertain`` (the
    connection broke during DATA: it may have arrived, so it is never sent again),
    ``unsubscribed`` (the reader left after the issue was frozen: not sent).
    """

    newsletter: str
    number: int
    recipient: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt: datetime | None
    updated: datetime


# --------------------------------------------------------------------------- schema


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps ``timestamp with time zone``; SQLite has no such type, so the value
    is converted to UTC and stored as SQLAlchemy's fixed-width ISO text, which sorts
    chronologically.  Naive datetimes are refused: their meaning depends on the machine.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the store needs timezone-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Named constraints let later migrations (and SQLite's batch mode) refer to them.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

feeds_table = sa.Table(
    "feeds",
    metadata,
    sa.Column("url", sa.Text, primary_key=True),  # as configured in feeds.yaml
    sa.Column("title", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),  # a FeedStatus value
    sa.Column("fetch_url", sa.Text),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_fetch", UTCDateTime),
    sa.Column("last_unconditional_fetch", UTCDateTime),
    sa.Column("next_check", UTCDateTime),
    sa.Column("http_status", sa.Integer),
    sa.Column("error_count", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("redirect_target", sa.Text),
    sa.Column("redirect_count", sa.Integer, nullable=False),
    sa.Column("ttl_seconds", sa.Integer),  # the RSS <ttl> of the last body parsed
    sa.Column("last_warning", sa.Text),  # the parser's warnings about it (polling.warning_text)
)

stories_table = sa.Table(
    "stories",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("topics", sa.JSON, nullable=False),  # list of names
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("updated", UTCDateTime, nullable=False),
)

entries_table = sa.Table(
    "entries",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),  # entry_id(feed_url, guid)
    sa.Column("feed_url", sa.Text, sa.ForeignKey("feeds.url"), nullable=False),
    sa.Column("guid", sa.Text, nullable=False),
    sa.Column("url", sa.Text),
    sa.Column("canonical_url", sa.Text, index=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("authors", sa.JSON, nullable=False),  # list of names
    sa.Column("published", UTCDateTime),
    sa.Column("updated", UTCDateTime),
    sa.Column("content_html", sa.Text, nullable=False),
    sa.Column("summary_html", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("enclosures", sa.JSON, nullable=False),  # list of {"url", "type", "length"}
    sa.Column("categories", sa.JSON, nullable=False),  # list of terms
    sa.Column("content_hash", sa.String(64), nullable=False),
    # parse.source_key of the raw entry this row was cleaned from: an entry the feed still
    # writes the same way is not cleaned again (see parse's module docstring).
    sa.Column("source_key", sa.String(32)),
    sa.Column("first_seen", UTCDateTime, nullable=False),
    sa.Column("last_updated", UTCDateTime, nullable=False),
    # Written by the dedupe stage: the id of the copy kept, how it was found, how close.
    sa.Column("duplicate_of", sa.String(16), sa.ForeignKey("entries.id", ondelete="SET NULL")),
    sa.Column("duplicate_stage", sa.String(32)),
    sa.Column("duplicate_score", sa.Float),
    sa.Column("duplicate_matched", sa.String(16)),  # the entry whose match made it a copy
    sa.Column("duplicate_jaccard", sa.Float),
    sa.Column("duplicate_containment", sa.Float),
    # Written by the story stage; topics are the story's, copied for export and filtering.
    sa.Column("story", sa.String(64), sa.ForeignKey("stories.id", ondelete="SET NULL"), index=True),
    sa.Column("topics", sa.JSON, nullable=False),
    sa.UniqueConstraint("feed_url", "guid"),
    sa.Index(None, "first_seen", "id"),
    sa.Index("ix_entries_duplicate_of", "duplicate_of"),
)

signatures_table = sa.Table(
    "entry_signatures",
    metadata,
    sa.Column("entry_id", sa.String(16), sa.ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("signature", sa.LargeBinary, nullable=False),  # a serialized MinHash
)


issues_table = sa.Table(
    "newsletter_issues",
    metadata,
    sa.Column("newsletter", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("window_start", UTCDateTime),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("frozen_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # sending | done | empty
    sa.Column("stories", sa.Integer, nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),  # JSON of the frozen issue
    sa.Column("finished_at", UTCDateTime),
)

deliveries_table = sa.Table(
    "newsletter_deliveries",
    metadata,
    sa.Column("newsletter", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("recipient", sa.Text, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # see DeliveryRecord
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt", UTCDateTime),
    sa.Column("updated", UTCDateTime, nullable=False),
    sa.ForeignKeyConstraint(
        ["newsletter", "number"],
        ["newsletter_issues.newsletter", "newsletter_issues.number"],
        ondelete="CASCADE",
    ),
    sa.Index("ix_newsletter_deliveries_status", "newsletter", "number", "status"),
)

subscribers_table = sa.Table(
    "newsletter_subscribers",
    metadata,
    sa.Column("newsletter", sa.String(64), primary_key=True),
    sa.Column("address", sa.Text, primary_key=True),  # lower-cased
    sa.Column("active", sa.Boolean, nullable=False),  # False: unsubscribed (overrides feeds.yaml)
    sa.Column("changed", UTCDateTime, nullable=False),
)


schedules_table = sa.Table(
    "newsletter_schedules",
    metadata,
    sa.Column("newsletter", sa.String(64), primary_key=True),
    sa.Column("schedule", sa.Text, nullable=False),  # crontab, as in feeds.yaml
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("since", UTCDateTime),  # when it last changed; None: as first seen here
)


# Entries removed by retention (``aggregator prune``) whose feed may still carry them: a poll
# does not store them again as new.  Kept for good (a few dozen bytes each).  No foreign key:
# the entry is gone, and feeds rows are never deleted.
pruned_table = sa.Table(
    "pruned_entries",
    metadata,
    sa.Column("feed_url", sa.Text, primary_key=True),
    sa.Column("guid", sa.Text, primary_key=True),
    sa.Column("pruned_at", UTCDateTime, nullable=False),
)


# Small facts about the database as a whole, by name: what the story stage last relabelled
# stored stories with ("topics", see Store.meta_value).
meta_table = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # JSON, as its writer shapes it
)


# Every column of an entry but its bodies, which read as "" (see Store.iter_entries).
_BODY_COLUMNS = frozenset({"content_html", "summary_html", "text"})
_WITHOUT_BODIES = sa.select(
    *(sa.literal("").label(c.name) if c.name in _BODY_COLUMNS else c for c in entries_table.c)
)
# What keyword topics match on (title and text), without the HTML bodies they came from.
_WITHOUT_HTML = sa.select(
    *(sa.literal("").label(c.name) if c.name in _BODY_COLUMNS - {"text"} else c for c in entries_table.c)
)


# ------------------------------------------------------------------- engine & migrations


def migration_config(url: str | sa.URL) -> Config:
    """An alembic ``Config`` for this package's migrations, without any ``alembic.ini``.

    Also the way to write a new revision, e.g.::

        command.revision(migration_config("sqlite:///dev.sqlite"), "add x", autogenerate=True)
    """
    from alembic.config import Config  # noqa: PLC0415 -- see _ALEMBIC

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if isinstance(url, sa.URL):
        url = url.render_as_string(hide_password=False)
    # ConfigParser interpolates "%"; escape it so URL-encoded passwords survive.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let us issue BEGIN ourselves (see _sqlite_on_begin): pysqlite's own implicit
    # transactions start late and cannot be made IMMEDIATE per transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync at checkpoints only
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _postgresql_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # PostgreSQL sends values as text shaped by the session's settings, which come from the
    # server's configuration.  Timestamps come in its TimeZone (initdb takes the machine's):
    # east of UTC 9999-12-31T23:59:59Z is year 10000, west of it 0001-01-01T00:00Z (Go's zero
    # time, which feeds carry) is year 0, no Python datetime, and every read of such a row
    # failed; psycopg reads only ISO dates; extra_float_digits below 1 (old configurations)
    # rounds floats to 15 digits.  What is stored is the same whatever the session says.
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.execute("SET datestyle TO 'ISO'")
        cursor.execute("SET extra_float_digits TO 1")
    dbapi_connection.commit()


def _sqlite_on_begin(conn: sa.Connection) -> None:
    # A write transaction that starts as a read and upgrades later fails with
    # SQLITE_BUSY at once if another process wrote meanwhile (busy_timeout does not
    # apply).  Writers therefore take the lock up front with BEGIN IMMEDIATE.
    mode = "IMMEDIATE" if conn.get_execution_options().get("aggregator_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def _create_engine(url: sa.URL) -> sa.Engine:
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername == "postgresql":
            # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
            url = url.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(url, pool_pre_ping=True)
        sa.event.listen(engine, "connect", _postgresql_on_connect)
        return engine
    if backend != "sqlite":
        raise ValueError(
            f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    if url.get_driver_name() not in ("pysqlite", ""):
        raise ValueError(f"unsupported SQLite driver {url.get_driver_name()!r}; use sqlite:///PATH")
    database = url.database or ""
    if database in ("", ":memory:"):
        # One connection for everyone: with a pool, each thread (the pipeline's writer
        # thread, say) would get a fresh, empty in-memory database of its own.  A pool of
        # that one connection lends it to one thread at a time (StaticPool lent it to all at
        # once: a read begun during a write failed, or committed half of it); the others wait
        # as a file's writers do.
        engine = sa.create_engine(
            url,
            poolclass=sa.pool.QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_BUSY_TIMEOUT_S,
            connect_args={"check_same_thread": False},
        )
    else:
        if not url.query.get("uri"):
            # A fresh install points at data/aggregator.sqlite before data/ exists.
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
    sa.event.listen(engine, "connect", _sqlite_on_connect)
    sa.event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _why(exc: BaseException) -> str:
    """The driver's own message, first line only, without SQLAlchemy's boilerplate."""
    if isinstance(exc, sa.exc.StatementError) and exc.orig is not None:  # DBAPIError included
        exc = exc.orig
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# SQLSTATE classes of a database that cannot work at all now: connection exception,
# insufficient resources (disk full), operator intervention (shutdown), system error (I/O).
# Not 54, "program limit exceeded" (an index row too big): that is one feed's data.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57", "58")
_UNAVAILABLE_SQLITE = ("locked", "busy", "disk i/o", "disk is full", "unable to open", "readonly")


def _store_error(exc: BaseException) -> type[StoreError]:
    """``DatabaseUnavailable`` for a failure of the database itself (locked, full, disk I/O,
    the connection lost), else ``StoreError`` (data it refused: the feed's own problem)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable
    if not isinstance(exc, sa.exc.OperationalError):
        return StoreError
    state = getattr(exc.orig, "sqlstate", None)
    if isinstance(state, str) and state:
        return DatabaseUnavailable if state[:2] in _UNAVAILABLE_SQLSTATES else StoreError
    text = str(exc.orig).lower()
    return DatabaseUnavailable if any(word in text for word in _UNAVAILABLE_SQLITE) else StoreError


def _safe_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):  # UnicodeError too: a path that is not UTF-8
        return without_password(url).encode("utf-8", "backslashreplace").decode("utf-8")


_REVISION_LINE = re.compile(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']\s*$", re.MULTILINE)
_DOWN_REVISION_LINE = re.compile(r"^down_revision\b[^=\n]*=\s*(?:None|[\"']([^\"']+)[\"'])\s*$", re.MULTILINE)


def _script_head() -> str | None:
    """The newest revision under ``migrations/versions``, read from each file's
    ``revision = "..."`` and ``down_revision = "..."`` lines without importing alembic.

    None when any file is not that plain (a merge, a branch, an unusual spelling): then
    alembic itself decides, so this shortcut can skip a migration only when it is sure.
    """
    parents: dict[str, str | None] = {}
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revisions, downs = _REVISION_LINE.findall(text), _DOWN_REVISION_LINE.findall(text)
        if len(revisions) != 1 or len(downs) != 1:
            return None
        parents[revisions[0]] = downs[0] or None
    heads = set(parents) - set(parents.values())
    return heads.pop() if len(heads) == 1 else None


def _at_head(engine: sa.Engine) -> bool:
    """Whether the database records exactly the newest revision (so nothing to migrate)."""
    head = _script_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    except sa.exc.DBAPIError:
        return False  # no such table yet, or unreachable: the full path says which
    return current == [head]


def _has_tables(engine: sa.Engine) -> bool:
    """Whether the database holds any table (in PostgreSQL, in the schema it searches first):
    one without is a database nothing has been stored in yet."""
    with engine.connect() as conn:
        return bool(sa.inspect(conn).get_table_names())


def _create_new(engine: sa.Engine) -> bool:
    """Give a new SQLite database (not a single table or index yet) the newest schema.

    The tables come from the models and the newest revision is recorded in alembic's
    version table, as alembic's cookbook builds an up-to-date database from scratch
    ("create_all", then "stamp head"), without importing alembic (see _ALEMBIC): a new
    database's first poll is the benchmark's cold one.  The models and the migrations are
    kept equal by the tests (tests/test_store.py compares both ways); columns that
    migrations added come last in a migrated table and in model order here.  SQLite only,
    where the result was compared; returns False when the database is not new (or the
    revisions are not a plain line), and the migrations decide.
    """
    head = _script_head()
    if engine.dialect.name != "sqlite" or head is None:
        return False
    with engine.connect() as conn:
        conn.execution_options(aggregator_write=True)  # BEGIN IMMEDIATE: one creator at a time
        with conn.begin():
            if conn.execute(sa.text("SELECT count(*) FROM sqlite_master")).scalar():
                return False
            metadata.create_all(conn)
            version = sa.Table(
                "alembic_version",  # as alembic.runtime.migration creates it
                sa.MetaData(),
                sa.Column("version_num", sa.String(32), nullable=False),
                sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
            )
            version.create(conn)
            conn.execute(version.insert().values(version_num=head))
    return True


def _migrate(engine: sa.Engine, url: sa.URL) -> None:
    if _at_head(engine) or _create_new(engine):
        return
    # See _ALEMBIC and _PYGMENTS.
    keep_out = "mako.exceptions" not in sys.modules and _MAKO_PYGMENTS not in sys.modules
    if keep_out:
        # A None entry makes "import mako.ext.pygmentplugin" raise ImportError.
        sys.modules[_MAKO_PYGMENTS] = None  # type: ignore[assignment]
    try:
        from alembic import command  # noqa: PLC0415
        from alembic.migration import MigrationContext  # noqa: PLC0415
        from alembic.script import ScriptDirectory  # noqa: PLC0415
        from alembic.util.exc import CommandError  # noqa: PLC0415
    finally:
        if keep_out and sys.modules.get(_MAKO_PYGMENTS, ...) is None:
            del sys.modules[_MAKO_PYGMENTS]  # whoever imports it later gets it

    cfg = migration_config(url)
    with engine.connect() as conn:
        conn.execution_options(aggregator_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Two processes opening a fresh database must not both create tables.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            known = {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}
            unknown = set(MigrationContext.configure(conn).get_current_heads()) - known
            if unknown:
                # Alembic would say "Can't locate revision"; say what it means instead.
                raise ValueError(
                    f"schema revision {', '.join(sorted(unknown))} is unknown to this version of the"
                    f" aggregator (it knows {', '.join(sorted(known))}); the database was written by a"
                    " newer version: upgrade the aggregator"
                )
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:  # Store.open names ValueError's message
                raise ValueError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class _InsertPlan:
    """An ``INSERT`` of every column of a table in the driver's own SQL, and the bind
    processor of each column for the dialect (None where the value goes as it is)."""

    sql: str | None  # None: a parameter style we do not write by hand; use SQLAlchemy
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def of(cls, table: sa.Table, dialect: sa.Dialect) -> _InsertPlan:
        columns = tuple(c.name for c in table.columns)
        # The composed processor SQLAlchemy itself applies: TypeDecorator then its impl.
        processors = tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in table.columns)
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
        if mark is None:
            return cls(None, columns, processors)
        quote = dialect.identifier_preparer.quote
        names, marks = ", ".join(map(quote, columns)), ", ".join([mark] * len(columns))
        # Names from our own metadata, quoted; every value is a parameter.
        sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608
        return cls(sql, columns, processors)

    def params(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Each row's values in column order, converted by the column's processor.

        A value that is the very object the previous row had in that column (``now``,
        None, an empty tuple) is converted once: processors are pure functions.
        """
        get = operator.itemgetter(*self.columns)
        converting = [(i, p) for i, p in enumerate(self.processors) if p is not None]
        seen: list[object] = [_UNSEEN] * len(self.columns)
        done: list[object] = [None] * len(self.columns)
        params = []
        for row in rows:
            values = list(get(row))
            for i, process in converting:
                value = values[i]
                if value is seen[i]:
                    values[i] = done[i]
                else:
                    seen[i], values[i] = value, process(value)
                    done[i] = values[i]
            params.append(tuple(values))
        return params


_UNSEEN = object()


# --------------------------------------------------------------------------- the store


class Store:
    """An open database.  Create with ``Store.open(url)``; close with ``close()`` or ``with``.

    Safe to share between threads (each call takes a pooled connection); every method
    is one short transaction.
    """

    def __init__(self, engine: sa.Engine, url: str) -> None:
        self._engine = engine
        self.url = url  # password hidden; for messages
        self._insert_plans: dict[str, _InsertPlan] = {}

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Open (creating if needed) the database at ``url`` and migrate it to the newest schema.

        With ``create=False`` (a command that only reads) a database that does not exist
        yet is not created: ``NoDatabaseYet``, and no folder, file or table was made.  One
        that exists is still migrated: the queries need the newest schema.

        Raises ``StoreError`` naming the URL (password hidden) and the reason when the
        database cannot be reached, created or migrated.
        """
        shown = _safe_url(url)
        engine: sa.Engine | None = None
        try:
            parsed = sa.make_url(url)
            # Before the engine: SQLite would create the file on connecting, and
            # _create_engine its folder.
            database = None if create else sqlite_file(parsed)
            if database is not None and not database.exists():
                raise NoDatabaseYet(str(database))
            engine = _create_engine(parsed)
            if not create and not _has_tables(engine):
                raise NoDatabaseYet(shown if database is None else str(database))
            _migrate(engine, parsed)
        except NoDatabaseYet:
            if engine is not None:
                engine.dispose()
            raise
        except (sa.exc.SQLAlchemyError, ImportError, OSError, ValueError) as exc:
            if engine is not None:
                engine.dispose()
            raise StoreError(f"opening database: {shown}: {_why(exc)}") from exc
        return cls(engine, shown)

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine, for tests and benchmarks that need to look underneath."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self, what: str, *, write: bool) -> Iterator[sa.Connection]:
        """One transaction; any database failure becomes ``StoreError("what: url: why")``."""
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(aggregator_write=True)
                with conn.begin():
                    yield conn
        except (sa.exc.SQLAlchemyError, ValueError) as exc:
            raise _store_error(exc)(f"{what}: {self.url}: {_why(exc)}") from exc

    def check_writable(self) -> None:
        """Raise ``DatabaseUnavailable`` when the database can be read but not written: a
        SQLite file made read-only, a PostgreSQL user without the right, a read-only replica.

        ``aggregator run`` checks this before it starts (hence the message): else it said
        "scheduler started" and then failed every minute, and its supervisor never saw it
        exit.  A statement that changes no row, in a transaction rolled back, is enough and
        leaves nothing behind: SQLite refuses any write statement on a read-only file
        ("attempt to write a readonly database"; ``BEGIN IMMEDIATE`` alone passes),
        PostgreSQL one in a read-only transaction or without the privilege.  Not through
        ``_transaction``: whatever the reason, it is the database that cannot be written
        (PostgreSQL's read-only transaction would read as a ``StoreError`` of the data).
        """
        nothing = meta_table.delete().where(meta_table.c.key == "")  # no key is empty: no row goes
        try:
            with self._engine.connect() as conn, conn.begin() as transaction:
                conn.execute(nothing)
                transaction.rollback()
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"starting the scheduler: {self.url}: {_why(exc)}") from exc

    # ------------------------------------------------------------------ feeds

    def sync_feeds(self, urls: Sequence[tuple[str, str | None]]) -> None:
        """Make sure every configured ``(url, title)`` has a feeds row.

        Rows of feeds no longer configured stay (with their entries) as history; pass
        the configured URLs to ``feed_states`` to leave them out.  A configured title
        replaces the stored one; ``None`` keeps it.
        """
        wanted = dict(urls)
        with self._transaction("recording configured feeds", write=True) as conn:
            known = dict(conn.execute(sa.select(feeds_table.c.url, feeds_table.c.title)).all())
            new = [_feed_row(FeedState(url=u, title=t)) for u, t in wanted.items() if u not in known]
            retitled = [
                {"b_url": u, "title": t}
                for u, t in wanted.items()
                if u in known and t is not None and known[u] != t
            ]
            if new:
                # Another process may add the same feeds between our read and this insert.
                _insert_missing(conn, feeds_table, new)
            if retitled:
                conn.execute(
                    feeds_table.update().where(feeds_table.c.url == sa.bindparam("b_url")),
                    retitled,
                )

    def feed_state(self, url: str) -> FeedState:
        """What we remember about polling ``url``; ``FeedState(url)`` (status NEVER) if nothing."""
        return self.feed_states([url])[0]

    def feed_states(self, urls: Sequence[str] | None = None) -> list[FeedState]:
        """Every feed's state, by URL; with ``urls``, exactly those, in that order."""
        with self._transaction("reading feed states", write=False) as conn:
            query = sa.select(feeds_table)
            if urls is None:
                rows = conn.execute(query.order_by(feeds_table.c.url)).mappings().all()
                return [_feed_state(row) for row in rows]
            found: dict[str, FeedState] = {}
            for chunk in _chunks(list(dict.fromkeys(urls))):
                for row in conn.execute(query.where(feeds_table.c.url.in_(chunk))).mappings():
                    found[row["url"]] = _feed_state(row)
        return [found.get(url) or FeedState(url=url) for url in urls]

    # ------------------------------------------------------------------ polls

    def save_poll(
        self,
        state: FeedState,
        entries: Sequence[Entry],
        now: datetime,
        hashes: Sequence[str] | None = None,
        source_keys: Sequence[str] | None = None,
        *,
        tombstoned: Collection[str] | None = None,
    ) -> SaveCounts:
        """Store one feed's poll in one transaction: its new state and its entries.

        Entries are matched by ``(feed url, guid)``: a new one is inserted with
        ``first_seen=now``; one whose content changed is rewritten with
        ``last_updated=now``, keeping its id and ``first_seen`` (and losing its stale
        near-duplicate signature); an unchanged one is not written.  When a feed
        repeats a guid, its first occurrence wins.  On any failure nothing of this
        poll is written and ``StoreError`` is raised.

        ``hashes``, when given, are the entries' ``identity.entry_hashes`` computed
        elsewhere (by the parse workers), one per entry in order; else they are computed here.
        ``source_keys``, when given, are the entries' ``ParsedFeed.source_keys``, kept for
        ``source_keys()``.  Entries the parser left out as unchanged need not be passed.

        An entry that retention removed (``remove_entries``) is not stored again, though the
        feed still carries it.  ``tombstoned``, when given, is ``tombstoned_feeds()`` read
        by the caller (once per poll cycle, under the ingest lock that pruning takes
        alone); else it is read here.  Only the feeds in it pay for a look at the tombstones.
        """
        with self._transaction(f"saving poll of {state.url}", write=True) as conn:
            if tombstoned is None:
                tombstoned = _tombstoned_feeds(conn)
            return self._write_poll(
                conn, state, entries, now, hashes=hashes, source_keys=source_keys, tombstoned=tombstoned
            )

    def save_polls(
        self,
        polls: Sequence[tuple[FeedState, Sequence[Entry]]],
        now: datetime,
        hashes: Sequence[Sequence[str] | None] | None = None,
        source_keys: Sequence[Sequence[str] | None] | None = None,
        *,
        tombstoned: Collection[str] | None = None,
    ) -> list[SaveCounts | StoreError]:
        """Store several feeds' polls in one transaction; each lands whole or not at all.

        Each feed is saved as ``save_poll`` would, and the results come back in order:
        a feed whose write fails gets a ``StoreError`` in its place, nothing of it is
        written, and the others are kept.  If the transaction itself fails (it cannot
        begin or commit), nothing is written and every place holds that error.  The batch
        only shares the cost of one commit (about 0.3 ms on SQLite, most of a 304's write).
        ``hashes`` and ``source_keys`` hold each poll's (or None), and ``tombstoned`` is
        the one set of all, as ``save_poll`` takes them.

        The feeds are first written one after the other, without savepoints.  Only when
        one of them fails is that transaction rolled back and the batch written again with
        a savepoint per feed, so that the one at fault is rolled back alone.  A savepoint
        is not free: SQLite copies every page a write inside it changes to a statement
        journal, a temporary file once it passes 64 KiB.  For a first poll of 1,000 feeds
        that was 300 MB of writes and a fifth of the writer's CPU, to guard against a
        failure that almost never comes.
        """
        for name, given in (("hashes", hashes), ("source keys", source_keys)):
            if given is not None and len(given) != len(polls):
                raise ValueError(f"save_polls: {len(given)} lists of {name} for {len(polls)} polls")
        what = f"saving polls of {len(polls)} feeds"
        try:
            try:
                with self._transaction(what, write=True) as conn:
                    gone = _tombstoned_feeds(conn) if tombstoned is None else tombstoned
                    return self._write_polls(
                        conn, polls, now, hashes, source_keys, tombstoned=gone, apart=False
                    )
            except _FeedWriteFailed:  # rolled back: write them again, each in a savepoint
                with self._transaction(what, write=True) as conn:
                    gone = _tombstoned_feeds(conn) if tombstoned is None else tombstoned
                    return self._write_polls(
                        conn, polls, now, hashes, source_keys, tombstoned=gone, apart=True
                    )
        except StoreError as exc:
            return [exc] * len(polls)

    def _write_polls(
        self,
        conn: sa.Connection,
        polls: Sequence[tuple[FeedState, Sequence[Entry]]],
        now: datetime,
        hashes: Sequence[Sequence[str] | None] | None,
        source_keys: Sequence[Sequence[str] | None] | None,
        *,
        tombstoned: Collection[str],
        apart: bool,
    ) -> list[SaveCounts | StoreError]:
        """``save_polls`` inside its transaction.  Not ``apart``: the first feed whose write
        fails raises ``_FeedWriteFailed``.  ``apart``: each feed is written in a savepoint of
        its own, and one that fails is rolled back to it and gets a ``StoreError``."""
        results: list[SaveCounts | StoreError | None] = [None] * len(polls)
        # Polls that bring no entries (a 304, an error: most of a poll) write one row
        # each: all of them as one statement in one savepoint, not three statements
        # apiece.  Should that fail, each is written alone below, so that the one at
        # fault is named and the others kept.
        bare = [index for index, (_, entries) in enumerate(polls) if not entries]
        if len(bare) > 1 and _write_feed_states(conn, [polls[index][0] for index in bare]):
            for index in bare:
                results[index] = SaveCounts()
        for index, (state, entries) in enumerate(polls):
            if results[index] is not None:
                continue
            digests = hashes[index] if hashes is not None else None
            keys = source_keys[index] if source_keys is not None else None
            try:
                with conn.begin_nested() if apart else nullcontext():
                    results[index] = self._write_poll(
                        conn, state, entries, now, hashes=digests, source_keys=keys, tombstoned=tombstoned
                    )
            except (sa.exc.SQLAlchemyError, ValueError) as exc:
                if not apart:
                    raise _FeedWriteFailed from exc
                failed = _store_error(exc)(f"saving poll of {state.url}: {self.url}: {_why(exc)}")
                failed.__cause__ = exc
                results[index] = failed
        return cast(list[SaveCounts | StoreError], results)  # every poll has its result now

    def _write_poll(
        self,
        conn: sa.Connection,
        state: FeedState,
        entries: Sequence[Entry],
        now: datetime,
        *,
        hashes: Sequence[str] | None = None,
        source_keys: Sequence[str] | None = None,
        tombstoned: Collection[str] = frozenset(),
    ) -> SaveCounts:
        # One SELECT of what we have, then at most one bulk INSERT and two bulk UPDATEs.
        for name, given in (("hashes", hashes), ("source keys", source_keys)):
            if given is not None and len(given) != len(entries):
                raise ValueError(
                    f"saving poll of {state.url}: {len(given)} {name} for {len(entries)} entries"
                )
        incoming: dict[str, tuple[Entry, str | None, str | None]] = {}
        for index, entry in enumerate(map(without_nul, entries)):
            incoming.setdefault(
                entry.guid,
                (
                    entry,
                    hashes[index] if hashes is not None else None,
                    source_keys[index] if source_keys is not None else None,
                ),
            )
        _write_feed_state(conn, state)
        if not incoming:
            return SaveCounts()
        existing = {
            guid: (digest, key)
            for guid, digest, key in conn.execute(_ENTRY_HASHES, {"b_feed_url": state.url})
        }
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        rekeyed: list[dict[str, Any]] = []
        for guid, (entry, known, key) in incoming.items():
            digest = known or content_hash(entry)
            old, old_key = existing.get(guid, (None, None))
            if old is None:
                row = _entry_row(entry, digest, now, key)
                row.update(
                    id=entry_id(state.url, guid),
                    feed_url=state.url,
                    first_seen=now,
                    duplicate_of=None,
                    duplicate_stage=None,
                    duplicate_score=None,
                    duplicate_matched=None,
                    duplicate_jaccard=None,
                    duplicate_containment=None,
                    story=None,
                    topics=(),
                )
                inserts.append(row)
            elif old != digest:
                row = _entry_row(entry, digest, now, key)
                row["b_id"] = entry_id(state.url, guid)
                updates.append(row)
            elif key is not None and key != old_key:
                # The same entry, written differently (or stored before keys were kept):
                # remember how, so that the next poll need not clean it again.
                rekeyed.append({"b_id": entry_id(state.url, guid), "source_key": key})
        inserts = _without_pruned(conn, state.url, inserts, tombstoned)
        if inserts:
            self._insert_many(conn, entries_table, inserts)
        if rekeyed:
            conn.execute(_SET_SOURCE_KEY, rekeyed)
        if updates:
            conn.execute(entries_table.update().where(entries_table.c.id == sa.bindparam("b_id")), updates)
            ids = [row["b_id"] for row in updates]
            for chunk in _chunks(ids):
                conn.execute(signatures_table.delete().where(signatures_table.c.entry_id.in_(chunk)))
        return SaveCounts(new=len(inserts), updated=len(updates))

    def _insert_many(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """``INSERT`` ``rows`` (every column given) with the driver's ``executemany``.

        Each value goes through its column type's bind processor for this dialect, as in
        ``conn.execute(table.insert(), rows)``, which costs several times more per row.
        """
        plan = self._insert_plans.get(table.name)
        if plan is None:
            plan = self._insert_plans[table.name] = _InsertPlan.of(table, conn.dialect)
        if plan.sql is None:
            conn.execute(table.insert(), rows)
            return
        conn.exec_driver_sql(plan.sql, plan.params(rows))

    def source_keys(self, feed_url: str) -> dict[str, str]:
        """The source keys of ``feed_url``'s stored entries and their guids, for ``parse_feed(known=...)``."""
        with self._transaction(f"reading source keys of {feed_url}", write=False) as conn:
            return dict(conn.execute(_SOURCE_KEYS, {"b_feed_url": feed_url}).all())

    # ---------------------------------------------------------------- entries

    def entry_counts(self) -> dict[str, int]:
        """How many entries are stored per feed URL (0 for a feed with none)."""
        query = (
            # guid, not id: (feed_url, guid) is an index that covers the count, so the
            # entries' rows (kilobytes of HTML each) are never read.
            sa.select(feeds_table.c.url, sa.func.count(entries_table.c.guid))
            .select_from(feeds_table.outerjoin(entries_table, entries_table.c.feed_url == feeds_table.c.url))
            .group_by(feeds_table.c.url)
        )
        with self._transaction("counting entries", write=False) as conn:
            return {url: int(count) for url, count in conn.execute(query)}

    def iter_entries(
        self, feed_urls: Sequence[str] | None = None, *, bodies: bool = True
    ) -> Iterator[StoredEntry]:
        """Every stored entry (of ``feed_urls`` if given), ordered by ``(first_seen, id)``.

        Read page by page, so entries saved while iterating after the current position
        appear, and no transaction stays open between pages.  ``bodies=False`` leaves the
        content, summary and text empty (``aggregator export`` prints none of them): a page
        of articles with 100 KB bodies held about 400 MB.
        """
        if feed_urls is not None and not feed_urls:
            return
        where: list[sa.ColumnElement[bool]] = []
        if feed_urls is not None:
            where.append(entries_table.c.feed_url.in_(list(dict.fromkeys(feed_urls))))
        query = sa.select(entries_table) if bodies else _WITHOUT_BODIES
        for row in self._paged(query, where, "reading entries"):
            yield _stored_entry(row)

    def get_entry(self, id: str) -> StoredEntry | None:
        """The entry with the project id ``id``, or None."""
        with self._transaction(f"reading entry {id}", write=False) as conn:
            row = conn.execute(sa.select(entries_table).where(entries_table.c.id == id)).mappings().first()
        return None if row is None else _stored_entry(row)

    def entries_first_seen_since(self, since: datetime) -> list[StoredEntry]:
        """Entries first seen at or after ``since``, ordered by ``(first_seen, id)``."""
        return list(self._paged_entries([entries_table.c.first_seen >= since], "reading recent entries"))

    def entries_to_group(self, since: datetime) -> list[StoredEntry]:
        """Entries first seen at or after ``since``, or with no story yet: what the story stage
        may regroup (older entries that have a story keep it), ordered by ``(first_seen, id)``."""
        where = [sa.or_(entries_table.c.first_seen >= since, entries_table.c.story.is_(None))]
        return list(self._paged_entries(where, "reading entries to group"))

    def _paged_entries(self, where: Sequence[sa.ColumnElement[bool]], what: str) -> Iterator[StoredEntry]:
        for row in self._paged(sa.select(entries_table), where, what):
            yield _stored_entry(row)

    def _paged(
        self, query: sa.Select[Any], where: Sequence[sa.ColumnElement[bool]], what: str
    ) -> Iterator[sa.RowMapping]:
        """Keyset pagination over ``(entries.first_seen, entries.id)``."""
        after: tuple[datetime, str] | None = None
        while True:
            page_query = query.where(*where)
            if after is not None:
                seen, last_id = after
                page_query = page_query.where(
                    sa.or_(
                        entries_table.c.first_seen > seen,
                        sa.and_(entries_table.c.first_seen == seen, entries_table.c.id > last_id),
                    )
                )
            page_query = page_query.order_by(entries_table.c.first_seen, entries_table.c.id).limit(PAGE_SIZE)
            with self._transaction(what, write=False) as conn:
                rows = conn.execute(page_query).mappings().all()
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            after = (rows[-1]["first_seen"], rows[-1]["id"])

    # ------------------------------------------------------------ dedupe stage

    def save_duplicates(
        self, verdicts: Iterable[DuplicateEvidence], *, signatures: Iterable[tuple[str, bytes]] = ()
    ) -> None:
        """Record dedupe verdicts, with their evidence, in one transaction.

        ``duplicate_of`` None marks an entry as an original (clearing an earlier verdict).
        ``signatures`` (as ``save_signatures`` takes them) are written in the same
        transaction: an entry with a signature is one the dedupe stage has done with and
        never compares again, so a signature committed without its verdict (the verdicts'
        write failing, the process killed between two commits) left a copy uncollapsed
        for good.
        """
        signed = {eid: bytes(sig) for eid, sig in signatures}
        rows = [
            {
                "b_id": v.entry_id,
                "duplicate_of": v.duplicate_of,
                "duplicate_stage": v.stage,
                "duplicate_score": v.score,
                "duplicate_matched": v.matched,
                "duplicate_jaccard": v.jaccard,
                "duplicate_containment": v.containment,
            }
            for v in verdicts
        ]
        if not rows and not signed:
            return
        with self._transaction("saving duplicate verdicts", write=True) as conn:
            if signed:
                _write_signatures(conn, signed)
            if rows:
                conn.execute(entries_table.update().where(entries_table.c.id == sa.bindparam("b_id")), rows)

    def duplicate_evidence(self, entry_id: str) -> DuplicateEvidence | None:
        """What the dedupe stage found for one entry; None for an unknown id."""
        c = entries_table.c
        query = sa.select(
            c.duplicate_of,
            c.duplicate_stage,
            c.duplicate_score,
            c.duplicate_matched,
            c.duplicate_jaccard,
            c.duplicate_containment,
        ).where(c.id == entry_id)
        with self._transaction("reading duplicate evidence", write=False) as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return DuplicateEvidence(entry_id, *row)

    def duplicate_map(self) -> dict[str, str | None]:
        """Every entry id → the id of its kept copy (None for kept entries): what dedupe starts from."""
        query = sa.select(entries_table.c.id, entries_table.c.duplicate_of)
        with self._transaction("reading duplicate verdicts", write=False) as conn:
            rows = conn.execute(query).all()
        return {eid: dup for eid, dup in rows}  # noqa: C416 -- Row pairs, unpacked

    def alternates_of(self, entry_id: str) -> list[StoredEntry]:
        """The entries whose kept copy is ``entry_id`` (the other outlets that carried it)."""
        query = (
            sa.select(entries_table)
            .where(entries_table.c.duplicate_of == entry_id)
            .order_by(entries_table.c.first_seen, entries_table.c.id)
        )
        with self._transaction("reading alternate copies", write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [_stored_entry(row) for row in rows]

    def copies_of(self, ids: Iterable[str]) -> list[StoredEntry]:
        """The entries whose kept copy is one of ``ids``, by ``(first_seen, id)``."""
        return self._entries_in(entries_table.c.duplicate_of, ids, "reading alternate copies")

    def _entries_in(self, column: sa.Column[Any], values: Iterable[str], what: str) -> list[StoredEntry]:
        """The entries whose ``column`` is one of ``values``, by ``(first_seen, id)``."""
        wanted = list(dict.fromkeys(values))
        found: list[StoredEntry] = []
        with self._transaction(what, write=False) as conn:
            for chunk in _chunks(wanted):
                rows = conn.execute(sa.select(entries_table).where(column.in_(chunk))).mappings()
                found.extend(_stored_entry(row) for row in rows)
        found.sort(key=lambda e: (e.first_seen, e.id))
        return found

    def save_signatures(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store near-duplicate signatures ``(entry id, bytes)``, replacing earlier ones."""
        rows = {eid: bytes(sig) for eid, sig in items}
        if not rows:
            return
        with self._transaction("saving signatures", write=True) as conn:
            _write_signatures(conn, rows)

    def iter_signatures(self, since: datetime | None = None) -> Iterator[tuple[str, bytes]]:
        """``(entry id, signature)`` of entries first seen at or after ``since`` (all if None).

        Ordered by the entries' ``(first_seen, id)``.
        """
        query = sa.select(
            entries_table.c.id, entries_table.c.first_seen, signatures_table.c.signature
        ).select_from(entries_table.join(signatures_table, signatures_table.c.entry_id == entries_table.c.id))
        where: list[sa.ColumnElement[bool]] = [] if since is None else [entries_table.c.first_seen >= since]
        for row in self._paged(query, where, "reading signatures"):
            yield row["id"], bytes(row["signature"])

    def entries_without_signature(self) -> list[StoredEntry]:
        """Entries that have no signature yet (new, or changed since it was computed)."""
        query = sa.select(entries_table).select_from(
            entries_table.outerjoin(signatures_table, signatures_table.c.entry_id == entries_table.c.id)
        )
        where = [signatures_table.c.entry_id.is_(None)]
        return [_stored_entry(row) for row in self._paged(query, where, "reading unsigned entries")]

    # ------------------------------------------------------------- story stage

    def save_stories(
        self,
        stories: Iterable[tuple[str, str, tuple[str, ...]]],
        assignments: Iterable[tuple[str, str]],
        now: datetime,
    ) -> None:
        """Record stories ``(id, label, topics)`` and memberships ``(entry id, story id)``.

        In one transaction.  A new story gets ``first_seen=now``; a story whose label or
        topics changed, or that gained an entry, gets ``updated=now``.  Each assigned
        entry takes its story's topics.  Entries not mentioned keep what they had.
        """
        given = {sid: (label, tuple(topics)) for sid, label, topics in stories}
        members = dict(assignments)
        with self._transaction("saving stories", write=True) as conn:
            known: dict[str, tuple[str, tuple[str, ...]]] = {}
            for chunk in _chunks(list(given.keys() | set(members.values()))):
                query = sa.select(stories_table.c.id, stories_table.c.label, stories_table.c.topics).where(
                    stories_table.c.id.in_(chunk)
                )
                for sid, label, topics in conn.execute(query):
                    known[sid] = (label, tuple(topics))
            current: dict[str, tuple[str | None, tuple[str, ...]]] = {}
            for chunk in _chunks(list(members)):
                query = sa.select(entries_table.c.id, entries_table.c.story, entries_table.c.topics).where(
                    entries_table.c.id.in_(chunk)
                )
                for eid, sid, topics in conn.execute(query):
                    current[eid] = (sid, tuple(topics))

            # Stories gaining an entry count as updated, as do relabelled ones.
            gaining = {sid for eid, sid in members.items() if eid in current and current[eid][0] != sid}
            new = [sid for sid in given if sid not in known]
            changed = sorted(
                {sid for sid in given if sid in known and known[sid] != given[sid]}
                | {sid for sid in gaining if sid in known}
            )
            if new:
                conn.execute(
                    stories_table.insert(),
                    [
                        {
                            "id": sid,
                            "label": given[sid][0],
                            "topics": list(given[sid][1]),
                            "first_seen": now,
                            "updated": now,
                        }
                        for sid in new
                    ],
                )
            if changed:
                final = {**known, **given}
                conn.execute(
                    stories_table.update().where(stories_table.c.id == sa.bindparam("b_id")),
                    [
                        {"b_id": sid, "label": final[sid][0], "topics": list(final[sid][1]), "updated": now}
                        for sid in changed
                    ],
                )
            topics_of = {**known, **given}
            entry_rows = []
            for eid, sid in members.items():
                topics = topics_of[sid][1] if sid in topics_of else ()
                if eid in current and current[eid] != (sid, topics):
                    entry_rows.append({"b_id": eid, "story": sid, "topics": list(topics)})
            if entry_rows:
                conn.execute(
                    entries_table.update().where(entries_table.c.id == sa.bindparam("b_id")), entry_rows
                )

    def iter_stories(self, ids: Sequence[str] | None = None) -> Iterator[StoredStory]:
        """Every story that has entries (or only those of ``ids``, a few), with them, ordered
        by ``(first_seen, id)``.

        A story whose entries all moved to other stories stays in the table (its id
        is never reused) but is not listed.
        """
        with self._transaction("reading stories", write=False) as conn:
            members: dict[str, list[str]] = {}
            query = (
                sa.select(entries_table.c.story, entries_table.c.id)
                .where(entries_table.c.story.is_not(None))
                .order_by(entries_table.c.first_seen, entries_table.c.id)
            )
            stories_query = sa.select(stories_table).order_by(stories_table.c.first_seen, stories_table.c.id)
            if ids is not None:
                query = query.where(entries_table.c.story.in_(ids))
                stories_query = stories_query.where(stories_table.c.id.in_(ids))
            for sid, eid in conn.execute(query):
                members.setdefault(sid, []).append(eid)
            rows = conn.execute(stories_query).mappings()
            result = [_stored_story(row, members[row["id"]]) for row in rows if row["id"] in members]
        yield from result

    def story_pages(self, size: int = STORY_PAGE) -> Iterator[list[tuple[StoredStory, list[StoredEntry]]]]:
        """Every story that has entries, with its members (their ``text`` but not their HTML), ``size``
        stories a page, by id.

        Each page is its own short read, so memory stays bounded however many stories are
        stored and a write between pages (``save_story_topics``) waits for no long read.
        """
        after: str | None = None
        member = sa.exists().where(entries_table.c.story == stories_table.c.id)
        while True:
            query = sa.select(stories_table).where(member).order_by(stories_table.c.id).limit(size)
            if after is not None:
                query = query.where(stories_table.c.id > after)
            with self._transaction("reading stories to relabel", write=False) as conn:
                rows = conn.execute(query).mappings().all()
                members: dict[str, list[StoredEntry]] = {}
                for chunk in _chunks([row["id"] for row in rows]):
                    found = conn.execute(
                        _WITHOUT_HTML.where(entries_table.c.story.in_(chunk)).order_by(
                            entries_table.c.first_seen, entries_table.c.id
                        )
                    ).mappings()
                    for entry in map(_stored_entry, found):
                        members.setdefault(cast(str, entry.story), []).append(entry)
            page = [
                (_stored_story(row, members.get(row["id"], [])), members.get(row["id"], [])) for row in rows
            ]
            if page:
                yield page
            if len(rows) < size:
                return
            after = rows[-1]["id"]

    def save_story_topics(self, topics: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        """Give each story ``(id, topics)`` these topics, and every entry in it too, in one
        transaction, leaving ``updated`` as it was: the story's news did not change, only
        which topics (feeds.yaml) it is filed under."""
        rows = [{"b_id": sid, "topics": list(names)} for sid, names in topics]
        if not rows:
            return
        with self._transaction(f"relabelling {len(rows)} stories", write=True) as conn:
            conn.execute(stories_table.update().where(stories_table.c.id == sa.bindparam("b_id")), rows)
            conn.execute(entries_table.update().where(entries_table.c.story == sa.bindparam("b_id")), rows)

    def meta_value(self, key: str) -> str | None:
        """The value recorded under ``key`` in the ``meta`` table, or None."""
        with self._transaction(f"reading {key} record", write=False) as conn:
            return conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()

    def set_meta_value(self, key: str, value: str) -> None:
        """Record ``value`` under ``key`` (replacing what was there)."""
        with self._transaction(f"recording {key}", write=True) as conn:
            updated = conn.execute(meta_table.update().where(meta_table.c.key == key).values(value=value))
            if not updated.rowcount:
                conn.execute(meta_table.insert().values(key=key, value=value))

    # --------------------------------------------------------------- retention

    def tombstoned_feeds(self) -> frozenset[str]:
        """The feeds with an entry removed by retention: a poll cycle reads this once and
        passes it to ``save_polls`` (``tombstoned``), so the other feeds' saves never look."""
        with self._transaction("reading removed entries", write=False) as conn:
            return _tombstoned_feeds(conn)

    def aged_entries(self, cutoff: datetime) -> list[AgedEntry]:
        """The entries first seen and last changed before ``cutoff``, by id."""
        c = entries_table.c
        query = (
            sa.select(c.id, c.feed_url, c.guid, c.story)
            .where(c.first_seen < cutoff, c.last_updated < cutoff)
            .order_by(c.id)
        )
        with self._transaction("reading old entries", write=False) as conn:
            return [AgedEntry(*row) for row in conn.execute(query)]

    def story_sizes(self, ids: Iterable[str]) -> dict[str, int]:
        """How many entries each story of ``ids`` has now (a story with none is left out)."""
        sizes: dict[str, int] = {}
        story = entries_table.c.story
        with self._transaction("counting the entries of stories", write=False) as conn:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                query = sa.select(story, sa.func.count()).where(story.in_(chunk)).group_by(story)
                sizes.update((sid, int(count)) for sid, count in conn.execute(query))
        return sizes

    def remove_entries(self, entries: Sequence[AgedEntry], now: datetime) -> int:
        """Delete ``entries`` for good, in one transaction, and the stories they leave with
        no entry; returns how many stories went.

        Each leaves a tombstone ``(feed url, guid, now)``, so that a poll does not store it
        again as new while its feed still carries it.  Their signatures go with them (ON
        DELETE CASCADE).  The caller passes whole copy groups (``retention``): a kept copy
        deleted without its copies would turn them into originals (ON DELETE SET NULL).
        """
        if not entries:
            return 0
        ids = [e.id for e in entries]
        tombstones = [{"feed_url": e.feed_url, "guid": e.guid, "pruned_at": now} for e in entries]
        removed = 0
        with self._transaction(f"removing {len(ids)} old entries", write=True) as conn:
            stories: set[str] = set()
            for chunk in _chunks(ids):  # as stored now, not as read before
                found = sa.select(entries_table.c.story).where(
                    entries_table.c.id.in_(chunk), entries_table.c.story.is_not(None)
                )
                stories.update(conn.execute(found).scalars())
            _insert_missing(conn, pruned_table, tombstones)  # one there already: removed before
            for chunk in _chunks(ids):
                conn.execute(entries_table.delete().where(entries_table.c.id.in_(chunk)))
            member = sa.exists().where(entries_table.c.story == stories_table.c.id)
            for chunk in _chunks(sorted(stories)):
                query = stories_table.delete().where(stories_table.c.id.in_(chunk), ~member)
                removed += int(conn.execute(query).rowcount)
        return removed

    # ------------------------------------------------------------ newsletters

    def get_entries(self, ids: Iterable[str]) -> list[StoredEntry]:
        """The entries with these project ids (unknown ids are skipped), by ``(first_seen, id)``."""
        return self._entries_in(entries_table.c.id, ids, "reading entries by id")

    def feed_titles(self) -> dict[str, str]:
        """Feed URL (as configured) → the title we know for it (configured, else the feed's own)."""
        with self._transaction("reading feed titles", write=False) as conn:
            rows = conn.execute(sa.select(feeds_table.c.url, feeds_table.c.title)).all()
        return {url: title for url, title in rows if title}

    def latest_issue(self, newsletter: str, *, with_stories: bool = False) -> IssueRecord | None:
        """The newest issue of ``newsletter`` (any status; with ``with_stories``, the newest
        that is not ``empty``), or None if there is none."""
        query = sa.select(issues_table).where(issues_table.c.newsletter == newsletter)
        if with_stories:
            query = query.where(issues_table.c.status != "empty")
        query = query.order_by(issues_table.c.number.desc()).limit(1)
        with self._transaction(f"reading the latest issue of {newsletter}", write=False) as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _issue(row)

    def issues(self, newsletter: str, *, ending_after: datetime | None = None) -> list[IssueRecord]:
        """Every issue of ``newsletter`` (with ``ending_after``, those whose window ends after
        it), oldest first."""
        query = sa.select(issues_table).where(issues_table.c.newsletter == newsletter)
        if ending_after is not None:
            query = query.where(issues_table.c.window_end > ending_after)
        query = query.order_by(issues_table.c.number)
        with self._transaction(f"reading issues of {newsletter}", write=False) as conn:
            return [_issue(row) for row in conn.execute(query).mappings()]

    def freeze_issue(self, issue: IssueRecord, recipients: Sequence[str], now: datetime) -> None:
        """Record a new issue and one ``pending`` delivery per recipient, in one transaction.

        Raises ``StoreError`` if that issue number exists already (another process froze it).
        """
        with self._transaction(_freezing(issue), write=True) as conn:
            conn.execute(
                issues_table.insert().values(
                    newsletter=issue.newsletter,
                    number=issue.number,
                    window_start=issue.window_start,
                    window_end=issue.window_end,
                    frozen_at=issue.frozen_at,
                    status=issue.status,
                    stories=issue.stories,
                    snapshot=issue.snapshot,
                    finished_at=issue.finished_at,
                )
            )
            rows = [
                {
                    "newsletter": issue.newsletter,
                    "number": issue.number,
                    "recipient": address,
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                    "next_attempt": None,
                    "updated": now,
                }
                for address in dict.fromkeys(recipients)
            ]
            if rows:
                conn.execute(deliveries_table.insert(), rows)

    def finish_issue(self, newsletter: str, number: int, now: datetime) -> None:
        """Mark an issue ``done``: every recipient has an outcome."""
        with self._transaction(f"finishing issue {number} of {newsletter}", write=True) as conn:
            conn.execute(
                issues_table.update()
                .where(issues_table.c.newsletter == newsletter, issues_table.c.number == number)
                .values(status="done", finished_at=now)
            )

    def deliveries(self, newsletter: str, number: int) -> list[DeliveryRecord]:
        """Every recipient of one issue with its delivery state, by address."""
        query = (
            sa.select(deliveries_table)
            .where(deliveries_table.c.newsletter == newsletter, deliveries_table.c.number == number)
            .order_by(deliveries_table.c.recipient)
        )
        with self._transaction(f"reading deliveries of {newsletter} #{number}", write=False) as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]

    def claim_delivery(self, newsletter: str, number: int, recipient: str, now: datetime) -> bool:
        """Move one delivery from ``pending`` (or a due ``retry``) to ``sending``; False if not ours.

        Committed before the message's DATA goes out: after a crash the row says
        ``sending``, and the message is not sent again.  The conditional UPDATE makes the
        claim safe against another process claiming the same recipient.
        """
        table = deliveries_table
        query = (
            table.update()
            .where(
                table.c.newsletter == newsletter,
                table.c.number == number,
                table.c.recipient == recipient,
                sa.or_(
                    table.c.status == "pending",
                    sa.and_(
                        table.c.status == "retry",
                        sa.or_(table.c.next_attempt.is_(None), table.c.next_attempt <= now),
                    ),
                ),
            )
            .values(status="sending", attempts=table.c.attempts + 1, updated=now)
        )
        with self._transaction(f"claiming delivery to {recipient}", write=True) as conn:
            return conn.execute(query).rowcount == 1

    def set_delivery(
        self,
        newsletter: str,
        number: int,
        recipient: str,
        status: str,
        now: datetime,
        *,
        error: str | None = None,
        next_attempt: datetime | None = None,
        only_from: Sequence[str] | None = None,
    ) -> int:
        """Record a delivery's outcome; with ``only_from``, only if its status is one of those.

        Returns how many rows changed (0 or 1).
        """
        table = deliveries_table
        query = table.update().where(
            table.c.newsletter == newsletter, table.c.number == number, table.c.recipient == recipient
        )
        if only_from is not None:
            query = query.where(table.c.status.in_(list(only_from)))
        query = query.values(status=status, last_error=error, next_attempt=next_attempt, updated=now)
        with self._transaction(f"recording delivery to {recipient}", write=True) as conn:
            return int(conn.execute(query).rowcount)

    def subscribers(self, newsletter: str) -> dict[str, bool]:
        """Addresses the web side knows for ``newsletter`` → active (False: unsubscribed)."""
        query = sa.select(subscribers_table.c.address, subscribers_table.c.active).where(
            subscribers_table.c.newsletter == newsletter
        )
        with self._transaction(f"reading subscribers of {newsletter}", write=False) as conn:
            return {address: bool(active) for address, active in conn.execute(query)}

    def subscriber(self, newsletter: str, address: str) -> tuple[bool, datetime] | None:
        """``(active, when it last changed)`` for one address of ``newsletter``, None if unknown."""
        table = subscribers_table
        query = sa.select(table.c.active, table.c.changed).where(
            table.c.newsletter == newsletter, table.c.address == address.strip().lower()
        )
        with self._transaction(f"reading subscriber {address}", write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else (bool(row.active), row.changed)

    def set_subscriber(self, newsletter: str, address: str, active: bool, now: datetime) -> None:
        """Subscribe (``active``) or unsubscribe ``address``; an unsubscribe also overrides feeds.yaml."""
        address = address.strip().lower()
        table = subscribers_table
        update = (
            table.update()
            .where(table.c.newsletter == newsletter, table.c.address == address)
            .values(active=active, changed=now)
        )
        row = {"newsletter": newsletter, "address": address, "active": active, "changed": now}
        with self._transaction(f"recording subscriber {address}", write=True) as conn:
            if conn.execute(update).rowcount == 0 and _insert_missing(conn, table, [row]) == 0:
                conn.execute(update)  # subscribed meanwhile by another request

    def newsletter_schedule(self, newsletter: str) -> tuple[str, str, datetime | None] | None:
        """``(schedule, timezone, since)`` last recorded for ``newsletter`` (``since``: when
        it took effect, None when it has not changed since first recorded); None if never."""
        table = schedules_table
        query = sa.select(table.c.schedule, table.c.timezone, table.c.since).where(
            table.c.newsletter == newsletter
        )
        with self._transaction(f"reading the schedule of {newsletter}", write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else (row.schedule, row.timezone, row.since)

    def record_newsletter_schedule(
        self, newsletter: str, schedule: str, timezone: str, since: datetime | None
    ) -> None:
        """Record ``newsletter``'s schedule and since when it counts (see ``newsletter_schedule``)."""
        table = schedules_table
        row = {"newsletter": newsletter, "schedule": schedule, "timezone": timezone, "since": since}
        update = table.update().where(table.c.newsletter == newsletter).values(**row)
        with self._transaction(f"recording the schedule of {newsletter}", write=True) as conn:
            if conn.execute(update).rowcount == 0 and _insert_missing(conn, table, [row]) == 0:
                conn.execute(update)  # recorded meanwhile by another process


def _freezing(issue: IssueRecord) -> str:
    """What a failure to freeze ``issue`` says it was doing, naming the issue as readers and
    the log know it.  Not by ``issue.number``, the store's key, which empty issues use up
    too: "freezing issue 8" of an issue the archive and the log call #4."""
    if issue.status == "empty":  # never sent, and numbered for nobody: by its time
        return f"recording that {issue.newsletter} had nothing new at {_utc_shown(issue.window_end)}"
    number = issue.snapshot_number
    if number is None:
        return f"freezing the issue of {issue.newsletter} at {_utc_shown(issue.window_end)}"
    return f"freezing issue #{number} of {issue.newsletter}"


def _utc_shown(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return f"{aware.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


# ------------------------------------------------------------------ row <-> record


def _issue(row: sa.RowMapping) -> IssueRecord:
    return IssueRecord(
        newsletter=row["newsletter"],
        number=row["number"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        frozen_at=row["frozen_at"],
        status=row["status"],
        stories=row["stories"],
        snapshot=row["snapshot"],
        finished_at=row["finished_at"],
    )


def _delivery(row: sa.RowMapping) -> DeliveryRecord:
    return DeliveryRecord(
        newsletter=row["newsletter"],
        number=row["number"],
        recipient=row["recipient"],
        status=row["status"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt=row["next_attempt"],
        updated=row["updated"],
    )


def _chunks(items: list[str], size: int = IN_CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _feed_row(state: FeedState) -> dict[str, Any]:
    return {
        "url": state.url,
        "title": state.title,
        "status": state.status.value,
        "fetch_url": state.fetch_url,
        "etag": state.etag,
        "last_modified": state.last_modified,
        "last_fetch": state.last_fetch,
        "last_unconditional_fetch": state.last_unconditional_fetch,
        "next_check": state.next_check,
        "http_status": state.http_status,
        "error_count": state.error_count,
        "last_error": state.last_error,
        "redirect_target": state.redirect_target,
        "redirect_count": state.redirect_count,
        # Capped to a 32-bit INTEGER (68 years): polling clamps every delay far below that.
        "ttl_seconds": None if state.ttl is None else min(int(state.ttl.total_seconds()), 2**31 - 1),
        "last_warning": state.last_warning,
    }


# Statements with bound parameters instead of values: built once, compiled once (SQLAlchemy
# caches the compiled form), where ``.values(...)`` would build and key a new statement per
# feed, which cost more than the write itself.
_UPDATE_FEED = feeds_table.update().where(feeds_table.c.url == sa.bindparam("b_url"))
_ENTRY_HASHES = sa.select(
    entries_table.c.guid, entries_table.c.content_hash, entries_table.c.source_key
).where(entries_table.c.feed_url == sa.bindparam("b_feed_url"))
_SET_SOURCE_KEY = (
    entries_table.update()
    .where(entries_table.c.id == sa.bindparam("b_id"))
    .values(source_key=sa.bindparam("source_key"))
)
_SOURCE_KEYS = sa.select(entries_table.c.source_key, entries_table.c.guid).where(
    entries_table.c.feed_url == sa.bindparam("b_feed_url"), entries_table.c.source_key.is_not(None)
)


def _tombstoned_feeds(conn: sa.Connection) -> frozenset[str]:
    """The feeds that have any entry removed by retention (see ``Store.tombstoned_feeds``)."""
    return frozenset(conn.execute(sa.select(pruned_table.c.feed_url).distinct()).scalars())


def _without_pruned(
    conn: sa.Connection, feed_url: str, inserts: list[dict[str, Any]], tombstoned: Collection[str]
) -> list[dict[str, Any]]:
    """The rows of ``inserts`` (new entries of ``feed_url``) that retention did not remove;
    only a feed in ``tombstoned`` (``_tombstoned_feeds``) has any to look up."""
    if not inserts or feed_url not in tombstoned:
        return inserts
    gone: set[str] = set()
    for chunk in _chunks([row["guid"] for row in inserts]):
        query = sa.select(pruned_table.c.guid).where(
            pruned_table.c.feed_url == feed_url, pruned_table.c.guid.in_(chunk)
        )
        gone.update(conn.execute(query).scalars())
    return [row for row in inserts if row["guid"] not in gone] if gone else inserts


def _feed_update(state: FeedState) -> dict[str, Any]:
    """``state`` as parameters of ``_UPDATE_FEED``."""
    row = _feed_row(state)
    if state.title is None:
        del row["title"]  # a poll that learned no title keeps the configured one
    row["b_url"] = row.pop("url")
    return row


def _write_feed_state(conn: sa.Connection, state: FeedState) -> None:
    result = conn.execute(_UPDATE_FEED, _feed_update(state))
    if result.rowcount == 0 and _insert_missing(conn, feeds_table, [_feed_row(state)]) == 0:
        conn.execute(_UPDATE_FEED, _feed_update(state))  # another process inserted it meanwhile


def _write_signatures(conn: sa.Connection, rows: dict[str, bytes]) -> None:
    """Store the signatures ``rows`` (entry id → bytes), replacing earlier ones."""
    for chunk in _chunks(list(rows)):
        conn.execute(signatures_table.delete().where(signatures_table.c.entry_id.in_(chunk)))
    conn.execute(
        signatures_table.insert(), [{"entry_id": eid, "signature": sig} for eid, sig in rows.items()]
    )


def _insert_missing(conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert ``rows``, skipping those whose primary key exists (also when another
    transaction inserted it since we looked); how many were inserted."""
    keys = list(table.primary_key.columns)
    statement: sa.Insert
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415 -- only with PostgreSQL

        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    else:
        from sqlalchemy.dialects import sqlite  # noqa: PLC0415 -- the same for SQLite

        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
    if not conn.dialect.insert_returning:  # SQLite before 3.35, whose rowcount is right
        return int(conn.execute(statement, list(rows)).rowcount)
    # rowcount of a multi-row insert is -1 on psycopg: count the keys returned instead.
    return len(conn.execute(statement.returning(*keys), list(rows)).all())


def _write_feed_states(conn: sa.Connection, states: Sequence[FeedState]) -> bool:
    """Update many feeds' rows at once, in a savepoint; False (and nothing written) when a
    row is missing, the driver cannot count the rows of a batch, or the database refuses."""
    if not conn.dialect.supports_sane_multi_rowcount:
        return False
    batches: dict[bool, list[dict[str, Any]]] = {}
    for state in states:  # one statement per set of columns: with a title, and without
        batches.setdefault(state.title is None, []).append(_feed_update(state))
    try:
        with conn.begin_nested():
            for rows in batches.values():
                if conn.execute(_UPDATE_FEED, rows).rowcount != len(rows):
                    raise _RowsMissing
    except (_RowsMissing, sa.exc.SQLAlchemyError):
        return False
    return True


class _RowsMissing(Exception):
    """A batch of feed updates found fewer rows than feeds (see ``_write_feed_states``)."""


class _FeedWriteFailed(Exception):
    """One feed's write failed in a batch written without savepoints (see ``Store.save_polls``).

    Not a database error, so that ``Store._transaction`` rolls back and lets it through
    rather than turning it into the whole batch's ``StoreError``.
    """


def _feed_state(row: sa.RowMapping) -> FeedState:
    return FeedState(
        url=row["url"],
        status=FeedStatus(row["status"]),
        fetch_url=row["fetch_url"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        last_fetch=row["last_fetch"],
        last_unconditional_fetch=row["last_unconditional_fetch"],
        next_check=row["next_check"],
        http_status=row["http_status"],
        error_count=row["error_count"],
        last_error=row["last_error"],
        redirect_target=row["redirect_target"],
        redirect_count=row["redirect_count"],
        title=row["title"],
        ttl=None if row["ttl_seconds"] is None else timedelta(seconds=row["ttl_seconds"]),
        last_warning=row["last_warning"],
    )


def _entry_row(entry: Entry, digest: str, now: datetime, source_key: str | None = None) -> dict[str, Any]:
    return {
        "guid": entry.guid,
        "url": entry.url,
        "canonical_url": entry.canonical_url,
        "title": entry.title,
        # Tuples, not lists: stored as the same JSON arrays, and an empty one is always the
        # same object, which _InsertPlan.params converts once per batch.
        "authors": entry.authors,
        "published": entry.published,
        "updated": entry.updated,
        "content_html": entry.content_html,
        "summary_html": entry.summary_html,
        "text": entry.text,
        "enclosures": tuple({"url": e.url, "type": e.type, "length": e.length} for e in entry.enclosures),
        "categories": entry.categories,
        "content_hash": digest,
        "source_key": source_key,
        "last_updated": now,
    }


def _stored_story(row: sa.RowMapping, members: Sequence[str] | Sequence[StoredEntry]) -> StoredStory:
    return StoredStory(
        id=row["id"],
        label=row["label"],
        topics=tuple(row["topics"]),
        first_seen=row["first_seen"],
        updated=row["updated"],
        entry_ids=tuple(m if isinstance(m, str) else m.id for m in members),
    )


def _stored_entry(row: sa.RowMapping) -> StoredEntry:
    entry = Entry(
        guid=row["guid"],
        url=row["url"],
        canonical_url=row["canonical_url"],
        title=row["title"],
        authors=tuple(row["authors"]),
        published=row["published"],
        updated=row["updated"],
        content_html=row["content_html"],
        summary_html=row["summary_html"],
        text=row["text"],
        enclosures=tuple(Enclosure(e["url"], e.get("type"), e.get("length")) for e in row["enclosures"]),
        categories=tuple(row["categories"]),
    )
    return StoredEntry(
        id=row["id"],
        feed_url=row["feed_url"],
        entry=entry,
        first_seen=row["first_seen"],
        last_updated=row["last_updated"],
        duplicate_of=row["duplicate_of"],
        story=row["story"],
        topics=tuple(row["topics"]),
    )
