"""The store on real databases: every test runs on a SQLite file and a PostgreSQL schema."""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import sqlite3
import string
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from aggregator import store as store_module
from aggregator.errors import DatabaseUnavailable, StoreError
from aggregator.identity import entry_hashes
from aggregator.parse import parse_feed
from aggregator.store import NoDatabaseYet, SaveCounts, Store, entry_id, metadata, migration_config
from aggregator.types import DuplicateEvidence, Enclosure, Entry, FeedState, FeedStatus
from tests.conftest import table_names

FEED = "https://example.com/feed.xml"
OTHER = "https://example.org/rss"


def make_entry(guid: str, **changes: Any) -> Entry:
    base = Entry(
        guid=guid,
        url=f"https://example.com/{guid}",
        canonical_url=f"https://example.com/{guid}",
        title=f"Title {guid}",
        published=datetime(2025, 8, 17, 9, 30, tzinfo=UTC),
        content_html=f"<p>Body of {guid}</p>",
        text=f"Body of {guid}",
    )
    return replace(base, **changes)


def polled(url: str, now: datetime) -> FeedState:
    return FeedState(url=url, status=FeedStatus.OK, last_fetch=now, next_check=now + timedelta(hours=1))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store.open(database_url) as opened:
        yield opened


# ---------------------------------------------------------------- opening & migrations


def _head_revision() -> str | None:
    return ScriptDirectory.from_config(migration_config("sqlite://")).get_current_head()


def test_opening_twice_migrates_once_and_schema_matches_the_models(database_url: str) -> None:
    Store.open(database_url).close()
    with Store.open(database_url) as store, store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [
            _head_revision()
        ]
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        if conn.dialect.name == "postgresql":
            # The version table follows search_path into the test's own schema.
            schemas = conn.execute(
                sa.text(
                    "SELECT table_schema FROM information_schema.tables WHERE table_name = 'alembic_version'"
                    " AND table_schema = current_schema()"
                )
            ).all()
            assert len(schemas) == 1


def test_opening_to_read_where_nothing_was_stored_creates_nothing(tmp_path: Path, database_url: str) -> None:
    # For the commands that only read (status, export): no folder, no file, no table.
    url = (
        f"sqlite:///{tmp_path / 'data' / 'aggregator.sqlite'}"
        if database_url.startswith("sqlite")
        else database_url
    )
    with pytest.raises(NoDatabaseYet, match=r"^no database yet at "):
        Store.open(url, create=False)
    if url.startswith("sqlite"):
        assert not (tmp_path / "data").exists()
    else:  # the database itself exists (an administrator made it), and stays without a table
        assert table_names(url) == []
    Store.open(url).close()  # a poll creates it; then it is read as any other
    with Store.open(url, create=False) as store:
        assert store.feed_states() == []


def test_the_migrations_build_the_schema_of_the_models(database_url: str) -> None:
    # Store.open gives a new SQLite file the models' schema directly (store._create_new), so
    # the migrations are run here by alembic itself, and must build the same.
    command.upgrade(migration_config(database_url), "head")
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def _sqlite_schema(path: Path) -> dict[str, list[str]]:
    """Each table's and index's SQL in ``sqlite_master``, its parts sorted: the columns that
    migrations added come last in a migrated table (ALTER TABLE ADD COLUMN)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    schema = {}
    for name, sql in rows:
        head, _, body = sql.partition("(")
        parts, depth, part = [], 0, ""
        for char in body.rstrip().removesuffix(")"):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if char == "," and depth == 0:
                parts.append(part.strip())
                part = ""
            else:
                part += char
        schema[name] = [head.strip(), *sorted([*parts, part.strip()])]
    return schema


# Every revision but the newest, oldest first: a database some earlier version left behind.
_OLDER_REVISIONS = [
    script.revision
    for script in reversed(list(ScriptDirectory.from_config(migration_config("sqlite://")).walk_revisions()))
][:-1]


@pytest.mark.parametrize("revision", _OLDER_REVISIONS)
def test_a_database_of_each_older_revision_is_upgraded_keeping_its_rows(
    database_url: str, revision: str, now: datetime
) -> None:
    command.upgrade(migration_config(database_url), revision)
    eid = entry_id(FEED, "a")
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:  # the columns every revision has, as that revision's code wrote them
            old = sa.MetaData()
            old.reflect(conn, only=["feeds", "entries", "entry_signatures"])
            conn.execute(
                old.tables["feeds"].insert().values(url=FEED, status="ok", error_count=0, redirect_count=0)
            )
            conn.execute(
                old.tables["entries"].insert(),
                {
                    **dict.fromkeys(["content_html", "summary_html", "text"], "x"),
                    **dict.fromkeys(["enclosures", "categories", "topics"], ()),
                    "id": eid,
                    "feed_url": FEED,
                    "guid": "a",
                    "title": "Täst",
                    "authors": ["Zoë"],
                    "content_hash": "old",
                    "first_seen": now,
                    "last_updated": now,
                },
            )
            conn.execute(old.tables["entry_signatures"].insert().values(entry_id=eid, signature=b"sig"))
    finally:
        engine.dispose()
    with Store.open(database_url) as store:
        stored = store.get_entry(eid)
        assert stored is not None
        assert (stored.entry.title, stored.entry.authors, stored.first_seen) == ("Täst", ("Zoë",), now)
        assert list(store.iter_signatures()) == [(eid, b"sig")]
        assert store.save_poll(polled(FEED, now), [make_entry("a")], now) == SaveCounts(new=0, updated=1)
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() == (_head_revision(),)
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []


def test_a_new_sqlite_database_gets_the_schema_the_migrations_build(tmp_path: Path) -> None:
    Store.open(f"sqlite:///{tmp_path / 'new.sqlite'}").close()
    command.upgrade(migration_config(f"sqlite:///{tmp_path / 'migrated.sqlite'}"), "head")
    new, migrated = _sqlite_schema(tmp_path / "new.sqlite"), _sqlite_schema(tmp_path / "migrated.sqlite")
    assert new == migrated
    assert "alembic_version" in new
    with Store.open(f"sqlite:///{tmp_path / 'new.sqlite'}") as store, store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == (_head_revision(),)


def test_a_new_sqlite_database_is_made_without_importing_alembic(tmp_path: Path) -> None:
    code = (
        "import sys; from aggregator.store import Store; Store.open(sys.argv[1]).close();"
        " print('alembic' in sys.modules)"
    )
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False"]


def test_sqlite_file_gets_its_folder_and_safe_settings(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "aggregator.sqlite"
    with Store.open(f"sqlite:///{path}") as store, store.engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert path.is_file()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 30000}


def test_an_in_memory_database_is_one_database_for_every_thread(now: datetime) -> None:
    with Store.open("sqlite://") as store, ThreadPoolExecutor(1) as writer:
        writer.submit(store.save_poll, polled(FEED, now), [make_entry("a")], now).result()
        assert store.entry_counts() == {FEED: 1}


def test_an_in_memory_database_takes_one_thread_at_a_time(now: datetime) -> None:
    # Every thread was handed the one connection at once: a read begun while the writer
    # thread was saving a poll failed ("cannot start a transaction within a transaction"),
    # or its COMMIT committed half the poll.
    errors: list[BaseException] = []
    writing = threading.Event()
    with Store.open("sqlite://") as store:

        def write() -> None:
            try:
                for n in range(20):
                    batch = [make_entry(f"{n}-{i}") for i in range(300)]
                    for result in store.save_polls(
                        [(polled(f"https://feeds{n}.example/rss", now), batch)], now
                    ):
                        if isinstance(result, BaseException):
                            errors.append(result)
            finally:
                writing.set()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            while not writing.is_set():
                store.feed_states()
                store.entry_counts()
        except StoreError as exc:
            errors.append(exc)
        writer.join()
        assert errors == []
        assert sum(store.entry_counts().values()) == 20 * 300


def test_unopenable_sqlite_file_is_a_store_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/aggregator.sqlite"
    with pytest.raises(
        StoreError, match=r"opening database: sqlite:///.*not-a-folder/aggregator\.sqlite: .+"
    ):
        Store.open(url)


def test_unreachable_postgres_hides_the_password() -> None:
    url = "postgresql+psycopg://reader:s3cret@127.0.0.1:1/news"
    with pytest.raises(StoreError) as raised:
        Store.open(url)
    message = str(raised.value)
    assert message.startswith("opening database: postgresql+psycopg://reader:***@127.0.0.1:1/news: ")
    assert "s3cret" not in message
    assert "refused" in message or "connect" in message


def test_a_database_from_a_newer_version_is_refused(database_url: str) -> None:
    Store.open(database_url).close()
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"revision 9999 is unknown .* upgrade the aggregator"):
        Store.open(database_url)


def test_unsupported_databases_are_named() -> None:
    with pytest.raises(StoreError, match=r"mysql://u:\*\*\*@db/news: unsupported database 'mysql'"):
        Store.open("mysql://u:pw@db/news")


def test_a_plain_postgresql_url_uses_psycopg(database_url: str) -> None:
    if not database_url.startswith("postgresql+psycopg://"):
        pytest.skip("PostgreSQL only")
    with Store.open(database_url.replace("postgresql+psycopg://", "postgresql://", 1)) as store:
        assert store.engine.dialect.driver == "psycopg"


# --------------------------------------------------------------------------- identity


def test_entry_id_is_stable_and_depends_on_feed_and_guid() -> None:
    guid = "tag:example.com,2025:1"
    assert entry_id(FEED, guid) == "ac19729825be3203"
    assert entry_id(FEED, guid) == hashlib.sha256(f"{FEED}\0{guid}".encode()).hexdigest()[:16]
    assert entry_id(OTHER, guid) != entry_id(FEED, guid)
    assert entry_id("a", "bc") != entry_id("ab", "c")


# ------------------------------------------------------------------------------ feeds


def test_feed_state_round_trips_every_field(store: Store, now: datetime) -> None:
    state = FeedState(
        url=FEED,
        status=FeedStatus.ERROR,
        fetch_url="https://example.com/new-feed.xml",
        etag='W/"abc"',
        last_modified="Mon, 18 Aug 2025 11:00:00 GMT",
        last_fetch=now,
        last_unconditional_fetch=now - timedelta(days=1),
        next_check=(now + timedelta(minutes=90)).astimezone(timezone(timedelta(hours=-7))),
        http_status=503,
        error_count=3,
        last_error="fetching https://example.com/feed.xml: HTTP 503: try again later",
        redirect_target="https://example.com/moved.xml",
        redirect_count=2,
        title="Exämple — news",
        ttl=timedelta(minutes=1440),
    )
    store.save_poll(state, [], now)
    back = store.feed_state(FEED)
    assert back == state
    assert back.next_check is not None
    assert back.next_check.utcoffset() == timedelta(0)


def test_never_polled_feeds_and_configured_filter(store: Store, now: datetime) -> None:
    assert store.feed_state(FEED) == FeedState(url=FEED)
    store.sync_feeds([(FEED, "Example"), (OTHER, None)])
    store.sync_feeds([(FEED, "Example")])  # OTHER removed from the config: its row stays
    assert store.feed_states() == [FeedState(url=FEED, title="Example"), FeedState(url=OTHER)]
    unknown = "https://example.net/atom"
    assert store.feed_states([unknown, FEED]) == [
        FeedState(url=unknown),
        FeedState(url=FEED, title="Example"),
    ]


def test_configured_title_is_kept_by_a_poll_without_one(store: Store, now: datetime) -> None:
    store.sync_feeds([(FEED, "Configured")])
    store.save_poll(polled(FEED, now), [], now)
    assert store.feed_state(FEED).title == "Configured"
    store.sync_feeds([(FEED, "Renamed")])
    assert store.feed_state(FEED).title == "Renamed"


def test_polls_without_entries_are_saved_together_and_each_keeps_its_state(
    store: Store, now: datetime
) -> None:
    # A poll's 304s are written as one batch; a feed the table does not hold yet sends the
    # batch back to one feed at a time, and a feed with entries is saved as before.
    urls = [f"https://feeds{n}.example/rss" for n in range(4)]
    store.sync_feeds([(urls[0], "Configured"), (urls[1], None), (urls[2], None)])
    later = now + timedelta(minutes=30)
    states = [
        replace(polled(urls[0], later), etag='"a1"', http_status=304),  # no title: keeps "Configured"
        replace(polled(urls[1], later), etag='"b1"', http_status=304, title="Learned"),
        replace(polled(urls[2], later), status=FeedStatus.ERROR, error_count=2, last_error="HTTP 503"),
    ]
    updates: list[bool] = []

    def count(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE FEEDS"):
            updates.append(many)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert store.save_polls([(state, []) for state in states], later) == [SaveCounts()] * 3
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)
    assert len(updates) == 2  # three feeds: those with a title and those without, one statement each
    assert store.feed_states(urls[:3]) == [replace(states[0], title="Configured"), states[1], states[2]]

    unknown = replace(polled(urls[3], later), etag='"d1"')
    with_entries = replace(polled(urls[2], later), etag='"c2"')
    results = store.save_polls([(states[0], []), (unknown, []), (with_entries, [make_entry("x")])], later)
    assert results == [SaveCounts(), SaveCounts(), SaveCounts(new=1)]
    assert store.feed_state(urls[3]) == unknown
    assert store.feed_state(urls[2]) == with_entries
    assert store.entry_counts() == {urls[0]: 0, urls[1]: 0, urls[2]: 1, urls[3]: 0}


def test_a_feed_whose_write_fails_in_a_batch_fails_alone(store: Store, now: datetime) -> None:
    # Feeds of one batch are written without savepoints; the first failure sends the whole
    # batch back to be written again, each feed in a savepoint, so only the culprit is lost.
    urls = [f"https://feeds{n}.example/rss" for n in range(3)]
    for url in urls:
        store.save_poll(polled(url, now), [make_entry(f"{url}-old")], now)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        statements.append(statement.lstrip().upper())

    later = now + timedelta(hours=1)
    good = [
        (replace(polled(urls[0], later), etag='"a1"'), [make_entry("a1")]),
        (replace(polled(urls[2], later), etag='"c1"'), [make_entry("c1")]),
    ]
    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        assert store.save_polls(good, later) == [SaveCounts(new=1), SaveCounts(new=1)]
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    assert not [s for s in statements if s.startswith("SAVEPOINT")]  # none when all goes well

    latest = later + timedelta(hours=1)
    naive = make_entry("naive", published=datetime(2025, 8, 18, 12, 0))  # refused mid-write
    polls = [
        (replace(polled(urls[0], latest), etag='"a2"'), [make_entry("a1"), make_entry("a2")]),
        (replace(polled(urls[1], latest), etag='"b2"'), [make_entry("b2"), naive]),
        (replace(polled(urls[2], latest), etag='"c2"'), [make_entry("c2")]),
    ]
    results = store.save_polls(polls, latest)

    assert results[0] == SaveCounts(new=1)  # the feeds around the failed one are kept
    assert results[2] == SaveCounts(new=1)
    failed = results[1]
    assert isinstance(failed, StoreError)
    assert f"saving poll of {urls[1]}: " in str(failed)
    assert "naive datetime" in str(failed)
    # Nothing of the failed feed's poll was written, not even its new state or its good entry.
    assert store.feed_state(urls[1]) == polled(urls[1], now)
    assert store.feed_states([urls[0], urls[2]]) == [polls[0][0], polls[2][0]]
    assert sorted(e.entry.guid for e in store.iter_entries()) == sorted(
        [f"{url}-old" for url in urls] + ["a1", "a2", "c1", "c2"]
    )


# ---------------------------------------------------------------------------- entries


def test_every_entry_field_round_trips(store: Store, now: datetime) -> None:
    cest = timezone(timedelta(hours=2))
    entry = Entry(
        guid="urn:uuid:ü-1",
        url="https://example.com/artículo?x=1&y=2",
        canonical_url="https://example.com/artículo",
        title="Grüße aus Zürich — 東京 🚀",
        authors=("Zoë Ä", "李"),
        published=datetime(2025, 8, 17, 11, 30, 15, 123456, tzinfo=cest),
        updated=datetime(2025, 8, 18, 0, 0, tzinfo=UTC),
        content_html="<p>Ça va? <b>ja</b> \u2028</p>",
        summary_html="<p>résumé</p>",
        text="Ça va? ja",
        enclosures=(
            Enclosure("https://cdn.example.com/a.mp3", "audio/mpeg", 12_345_678),
            Enclosure("https://cdn.example.com/b.jpg"),
        ),
        categories=("Politik", "économie"),
    )
    counts = store.save_poll(polled(FEED, now), [entry], now)
    assert counts == SaveCounts(new=1, updated=0)

    stored = store.get_entry(entry_id(FEED, entry.guid))
    assert stored is not None
    assert stored.entry == entry
    assert stored.feed_url == FEED
    assert (stored.first_seen, stored.last_updated) == (now, now)
    assert (stored.duplicate_of, stored.story, stored.topics) == (None, None, ())
    assert stored.entry.published is not None
    assert stored.entry.published.utcoffset() == timedelta(0)
    assert stored.first_seen.utcoffset() == timedelta(0)
    assert store.get_entry("0000000000000000") is None


def test_the_first_and_last_dates_round_trip_whatever_the_postgresql_session_says(
    database_url: str, now: datetime
) -> None:
    # PostgreSQL sends timestamps as the session's TimeZone and DateStyle say, and initdb takes
    # the machine's zone: Go's zero time 0001-01-01T00:00Z, which feeds do carry, is year 0 in
    # New York and 9999-12-31T23:59:59Z year 10000 in Tokyo, neither a Python datetime, and a
    # DateStyle other than ISO is text psycopg cannot read.  Every read of the entries failed.
    # An old configuration's extra_float_digits=0 rounded the dedupe evidence to 15 digits.
    first = make_entry("first", published=datetime(1, 1, 1, tzinfo=UTC), updated=None)
    last = make_entry("last", published=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    evidence = DuplicateEvidence(
        entry_id(FEED, "last"), entry_id(FEED, "first"), "content", 1 / 3, None, 0.1 + 0.2
    )
    sessions = ["America/New_York", "Postgres,MDY"], ["Asia/Tokyo", "German"]
    for zone, style in sessions:
        url = database_url
        if url.startswith("postgresql"):
            url += f"%20-ctimezone%3D{zone}%20-cdatestyle%3D{style}%20-cextra_float_digits%3D0"
        with Store.open(url) as store:
            store.save_poll(polled(FEED, now), [first, last], now)
            store.save_duplicates([evidence])
            assert [e.entry for e in store.iter_entries()] == [first, last]
            assert store.feed_state(FEED) == polled(FEED, now)
            assert store.duplicate_evidence(evidence.entry_id) == evidence


def test_polling_the_same_feed_twice_stores_nothing_twice(store: Store, now: datetime) -> None:
    batch = [make_entry(f"g{i}") for i in range(5)]
    assert store.save_poll(polled(FEED, now), batch, now) == SaveCounts(new=5, updated=0)
    later = now + timedelta(hours=1)
    assert store.save_poll(polled(FEED, later), batch, later) == SaveCounts(new=0, updated=0)
    assert store.entry_counts() == {FEED: 5}
    assert {e.last_updated for e in store.iter_entries()} == {now}
    assert store.feed_state(FEED).last_fetch == later


def test_a_changed_entry_is_updated_keeping_its_id_and_first_seen(store: Store, now: datetime) -> None:
    store.save_poll(polled(FEED, now), [make_entry("a"), make_entry("b")], now)
    eid = entry_id(FEED, "a")
    store.save_signatures([(eid, b"old"), (entry_id(FEED, "b"), b"b-sig")])

    later = now + timedelta(hours=2)
    edited = make_entry("a", title="Corrected title", content_html="<p>new</p>")
    counts = store.save_poll(polled(FEED, later), [edited, make_entry("b"), make_entry("c")], later)

    assert counts == SaveCounts(new=1, updated=1)
    stored = store.get_entry(eid)
    assert stored is not None
    assert stored.entry == edited
    assert (stored.id, stored.first_seen, stored.last_updated) == (eid, now, later)
    # Its near-duplicate signature described the old text; it must be computed again.
    assert [e.id for e in store.entries_without_signature()] == [eid, entry_id(FEED, "c")]


def test_nul_characters_are_dropped_the_same_way_on_every_backend(store: Store, now: datetime) -> None:
    dirty = make_entry("nul\0guid", title="a\0b", content_html="<p>x\0y</p>", text="x\0y")
    assert store.save_poll(polled(FEED, now), [dirty], now) == SaveCounts(new=1, updated=0)
    assert store.save_poll(polled(FEED, now), [dirty], now) == SaveCounts(new=0, updated=0)
    [stored] = store.iter_entries()
    assert stored.id == entry_id(FEED, "nulguid")
    assert (stored.entry.guid, stored.entry.title, stored.entry.text) == ("nulguid", "ab", "xy")


def test_a_guid_repeated_within_one_poll_keeps_the_first(store: Store, now: datetime) -> None:
    first, again = make_entry("dup", title="first"), make_entry("dup", title="second")
    assert store.save_poll(polled(FEED, now), [first, again], now) == SaveCounts(new=1, updated=0)
    stored = store.get_entry(entry_id(FEED, "dup"))
    assert stored is not None
    assert stored.entry.title == "first"


def test_a_failure_mid_save_writes_nothing_of_that_poll(store: Store, now: datetime) -> None:
    before = polled(FEED, now)
    store.save_poll(before, [make_entry("a")], now)

    def fail_on_entry_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ENTRIES"):
            raise RuntimeError("disk full (injected)")

    later = now + timedelta(hours=1)
    after = replace(before, etag='"v2"', last_fetch=later, error_count=0)
    changed = make_entry("a", title="changed")
    sa.event.listen(store.engine, "before_cursor_execute", fail_on_entry_insert)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            store.save_poll(after, [changed, make_entry("b")], later)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", fail_on_entry_insert)

    assert store.feed_state(FEED) == before
    assert [e.entry for e in store.iter_entries()] == [make_entry("a")]


def test_a_bad_value_mid_save_is_a_store_error_and_writes_nothing(store: Store, now: datetime) -> None:
    store.save_poll(polled(FEED, now), [make_entry("a")], now)
    naive = make_entry("b", published=datetime(2025, 8, 18, 12, 0))  # naive: refused
    later = now + timedelta(hours=1)
    with pytest.raises(StoreError, match=re.escape(f"saving poll of {FEED}: ") + ".*naive datetime"):
        store.save_poll(polled(FEED, later), [make_entry("a", title="x"), naive], later)
    assert store.feed_state(FEED).last_fetch == now
    assert [e.entry for e in store.iter_entries()] == [make_entry("a")]


def test_counts_order_and_filters(store: Store, now: datetime) -> None:
    store.sync_feeds([(FEED, None), (OTHER, None), ("https://empty.example/feed", None)])
    store.save_poll(polled(FEED, now), [make_entry("a"), make_entry("b")], now)
    later = now + timedelta(minutes=5)
    store.save_poll(polled(OTHER, later), [make_entry("c")], later)

    assert store.entry_counts() == {FEED: 2, OTHER: 1, "https://empty.example/feed": 0}
    everything = list(store.iter_entries())
    assert [(e.first_seen, e.id) for e in everything] == sorted((e.first_seen, e.id) for e in everything)
    assert [e.entry.guid for e in everything][-1] == "c"
    assert [e.entry.guid for e in store.iter_entries([OTHER])] == ["c"]
    assert list(store.iter_entries([])) == []
    assert [e.entry.guid for e in store.entries_first_seen_since(later)] == ["c"]


def test_iteration_pages_through_many_entries_with_equal_first_seen(store: Store, now: datetime) -> None:
    batch = [make_entry(f"g{i:04d}") for i in range(2050)]
    assert store.save_poll(polled(FEED, now), batch, now) == SaveCounts(new=2050, updated=0)
    ids = [e.id for e in store.iter_entries()]
    assert len(ids) == 2050
    assert ids == sorted(ids)


def test_two_stores_on_one_database_take_turns(database_url: str, now: datetime) -> None:
    with Store.open(database_url) as scheduler, Store.open(database_url) as cli:
        scheduler.save_poll(polled(FEED, now), [make_entry("a")], now)
        cli.save_poll(polled(OTHER, now), [make_entry("b")], now)
        assert scheduler.entry_counts() == cli.entry_counts() == {FEED: 1, OTHER: 1}


def test_a_writer_waits_for_another_process_instead_of_failing(sqlite_url: str, now: datetime) -> None:
    with Store.open(sqlite_url) as cli, Store.open(sqlite_url) as scheduler:
        blocker = cli.engine.connect()
        blocker.execution_options(aggregator_write=True)  # BEGIN IMMEDIATE: holds the write lock
        blocker.begin()
        blocker.execute(sa.text("UPDATE feeds SET title = 'x'"))
        release = threading.Timer(0.3, blocker.commit)
        release.start()
        try:
            started = time.monotonic()
            counts = scheduler.save_poll(polled(FEED, now), [make_entry("a")], now)
            waited = time.monotonic() - started
        finally:
            release.join()
            blocker.close()
        assert counts == SaveCounts(new=1, updated=0)
        assert waited >= 0.2


# ------------------------------------------------------------------ dedupe & stories


def test_duplicate_verdicts_are_saved_and_cleared(store: Store, now: datetime) -> None:
    store.save_poll(polled(FEED, now), [make_entry("a")], now)
    store.save_poll(polled(OTHER, now), [make_entry("a")], now)
    kept, copy = entry_id(FEED, "a"), entry_id(OTHER, "a")

    store.save_duplicates(
        [DuplicateEvidence(copy, kept, "content", 0.93, kept, 0.7, 0.95), DuplicateEvidence(kept, None)]
    )
    stored = store.get_entry(copy)
    assert stored is not None
    assert stored.duplicate_of == kept
    assert store.duplicate_evidence(copy) == DuplicateEvidence(copy, kept, "content", 0.93, kept, 0.7, 0.95)
    assert store.duplicate_evidence(kept) == DuplicateEvidence(kept, None)
    assert store.duplicate_evidence("0000000000000000") is None
    assert store.duplicate_map() == {kept: None, copy: kept}
    assert [e.id for e in store.alternates_of(kept)] == [copy]

    store.save_duplicates([DuplicateEvidence(copy, None)])
    stored = store.get_entry(copy)
    assert stored is not None
    assert stored.duplicate_of is None
    store.save_duplicates([])


def test_a_verdict_naming_an_unknown_entry_is_refused(store: Store, now: datetime) -> None:
    store.save_poll(polled(FEED, now), [make_entry("a")], now)
    with pytest.raises(StoreError, match="saving duplicate verdicts"):
        store.save_duplicates([DuplicateEvidence(entry_id(FEED, "a"), "ffffffffffffffff", "url", 1.0)])


def test_signatures_land_with_their_verdicts_or_not_at_all(store: Store, now: datetime) -> None:
    # A signed entry is one the dedupe stage never compares again: a signature kept while its
    # verdict was refused left that entry out of dedupe for good.
    store.save_poll(polled(FEED, now), [make_entry("a"), make_entry("b")], now)
    a, b = entry_id(FEED, "a"), entry_id(FEED, "b")
    with pytest.raises(StoreError, match="saving duplicate verdicts"):
        store.save_duplicates(
            [DuplicateEvidence(a, "ffffffffffffffff", "url", 1.0)], signatures=[(a, b"a"), (b, b"b")]
        )
    assert {e.id for e in store.entries_without_signature()} == {a, b}

    store.save_duplicates([DuplicateEvidence(b, a, "url", 1.0, a)], signatures=[(a, b"a"), (b, b"b")])
    assert dict(store.iter_signatures()) == {a: b"a", b: b"b"}
    assert store.duplicate_map() == {a: None, b: a}


def test_signatures_round_trip_replace_and_filter(store: Store, now: datetime) -> None:
    later = now + timedelta(days=1)
    store.save_poll(polled(FEED, now), [make_entry("a"), make_entry("b")], now)
    store.save_poll(polled(OTHER, later), [make_entry("c")], later)
    a, b, c = entry_id(FEED, "a"), entry_id(FEED, "b"), entry_id(OTHER, "c")
    assert {e.id for e in store.entries_without_signature()} == {a, b, c}

    store.save_signatures([(a, b"\x00\x01"), (c, bytes(range(256)))])
    store.save_signatures([(a, b"\xff" * 1024)])  # replaces
    assert [e.id for e in store.entries_without_signature()] == [b]
    assert dict(store.iter_signatures()) == {a: b"\xff" * 1024, c: bytes(range(256))}
    assert list(store.iter_signatures(since=later)) == [(c, bytes(range(256)))]


def test_stories_and_their_members(store: Store, now: datetime) -> None:
    store.save_poll(polled(FEED, now), [make_entry("a"), make_entry("b")], now)
    store.save_poll(polled(OTHER, now), [make_entry("c")], now)
    a, b, c = entry_id(FEED, "a"), entry_id(FEED, "b"), entry_id(OTHER, "c")

    store.save_stories([("s1", "Floods in the north", ("weather", "europe"))], [(a, "s1"), (c, "s1")], now)
    [story] = store.iter_stories()
    assert (story.id, story.label, story.topics, story.first_seen, story.updated) == (
        "s1",
        "Floods in the north",
        ("weather", "europe"),
        now,
        now,
    )
    assert set(story.entry_ids) == {a, c}
    stored = store.get_entry(c)
    assert stored is not None
    assert (stored.story, stored.topics) == ("s1", ("weather", "europe"))

    # The same grouping again changes nothing; a new member or label marks it updated.
    later = now + timedelta(hours=1)
    store.save_stories([("s1", "Floods in the north", ("weather", "europe"))], [(a, "s1")], later)
    assert next(store.iter_stories()).updated == now
    store.save_stories([("s1", "Floods in the north", ("weather", "europe"))], [(b, "s1")], later)
    assert next(store.iter_stories()).updated == later

    store.save_stories([("s2", "Markets", ("economy",))], [(b, "s2")], later)
    by_id = {s.id: s for s in store.iter_stories()}
    assert set(by_id["s1"].entry_ids) == {a, c}
    assert by_id["s2"].entry_ids == (b,)
    assert by_id["s2"].first_seen == later
    exported = {e.id: (e.story, e.topics) for e in store.iter_entries()}
    assert exported == {
        a: ("s1", ("weather", "europe")),
        b: ("s2", ("economy",)),
        c: ("s1", ("weather", "europe")),
    }

    # A story whose entries all moved elsewhere is no longer listed.
    store.save_stories([("s1", "Floods in the north", ("weather", "europe"))], [(b, "s1")], later)
    assert [s.id for s in store.iter_stories()] == ["s1"]


def test_stories_are_read_a_page_at_a_time_and_relabelled_without_being_updated(
    store: Store, now: datetime
) -> None:
    entries = [make_entry(guid) for guid in "abcde"]
    store.save_poll(polled(FEED, now), entries, now)
    ids = [entry_id(FEED, guid) for guid in "abcde"]
    store.save_stories(
        [(f"s{i}", f"Story {i}", ("old",)) for i in range(4)] + [("empty", "No entries", ())],
        [(ids[0], "s0"), (ids[1], "s0"), (ids[2], "s1"), (ids[3], "s2"), (ids[4], "s3")],
        now,
    )

    pages = list(store.story_pages(size=3))  # "empty" has no entry: not listed
    assert [[story.id for story, _ in page] for page in pages] == [["s0", "s1", "s2"], ["s3"]]
    members = {
        story.id: [(m.id, m.entry.title, m.entry.text, m.topics) for m in ms]
        for page in pages
        for story, ms in page
    }
    assert members["s0"] == [
        (ids[0], "Title a", "Body of a", ("old",)),
        (ids[1], "Title b", "Body of b", ("old",)),
    ]

    store.save_story_topics([("s0", ("new", "auto")), ("s3", ())])
    later = {s.id: (s.topics, s.updated) for s in store.iter_stories()}
    assert later == {
        "s0": (("new", "auto"), now),
        "s1": (("old",), now),
        "s2": (("old",), now),
        "s3": ((), now),
    }
    assert {e.id: e.topics for e in store.get_entries(ids)} == {
        ids[0]: ("new", "auto"), ids[1]: ("new", "auto"), ids[2]: ("old",), ids[3]: ("old",), ids[4]: (),
    }  # fmt: skip
    assert {e.id: e.last_updated for e in store.get_entries(ids)} == dict.fromkeys(ids, now)

    assert store.meta_value("topics") is None
    store.set_meta_value("topics", "one")
    store.set_meta_value("topics", "two")
    assert store.meta_value("topics") == "two"


def test_hashes_computed_elsewhere_store_the_same_rows(
    store: Store, database_url: str, now: datetime
) -> None:
    entries = [make_entry("a"), make_entry("b", title="With a NUL\x00 inside")]
    store.save_poll(polled(FEED, now), entries, now, hashes=entry_hashes(entries))
    store.save_poll(polled(OTHER, now), entries, now)  # hashed by the store itself
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT feed_url, guid, content_hash FROM entries ORDER BY guid, feed_url")
        )
        by_feed: dict[str, dict[str, str]] = {}
        for feed, guid, digest in rows:
            by_feed.setdefault(feed, {})[guid] = digest
    assert by_feed[FEED] == by_feed[OTHER]
    # Polled again with the worker's hashes: nothing changed, nothing written.
    again = store.save_poll(polled(FEED, now), entries, now, hashes=entry_hashes(entries))
    assert again == SaveCounts(new=0, updated=0)


def test_entries_to_group_are_the_recent_ones_and_those_without_a_story(store: Store, now: datetime) -> None:
    earlier = now - timedelta(days=10)
    store.save_poll(polled(FEED, earlier), [make_entry("old-grouped"), make_entry("old-alone")], earlier)
    store.save_poll(polled(OTHER, now), [make_entry("new")], now)
    store.save_stories([("s1", "Old news", ())], [(entry_id(FEED, "old-grouped"), "s1")], now)
    chosen = [e.entry.guid for e in store.entries_to_group(now - timedelta(days=3))]
    assert chosen == ["old-alone", "new"]  # ordered by first seen


def test_stories_can_be_read_by_id(store: Store, now: datetime) -> None:
    store.save_poll(polled(FEED, now), [make_entry("a"), make_entry("b")], now)
    a, b = entry_id(FEED, "a"), entry_id(FEED, "b")
    store.save_stories([("s1", "One", ()), ("s2", "Two", ())], [(a, "s1"), (b, "s2")], now)
    [story] = store.iter_stories(["s2"])
    assert (story.id, story.label, story.entry_ids) == ("s2", "Two", (b,))
    assert list(store.iter_stories(["missing"])) == []


def test_source_keys_are_kept_and_a_rewritten_but_equal_entry_gets_its_new_key(
    store: Store, now: datetime
) -> None:
    a, b = make_entry("a"), make_entry("b")
    store.save_poll(polled(FEED, now), [a, b], now, source_keys=["key-a", "key-b"])
    assert store.source_keys(FEED) == {"key-a": "a", "key-b": "b"}
    assert store.source_keys(OTHER) == {}

    # The feed writes "a" differently but it cleans up to the same entry: not an update,
    # but the new key is what the next poll will see.  Entries left out (unchanged) stay.
    later = now + timedelta(hours=1)
    assert store.save_poll(polled(FEED, later), [a], later, source_keys=["key-a2"]) == SaveCounts()
    assert store.source_keys(FEED) == {"key-a2": "a", "key-b": "b"}
    stored = store.get_entry(entry_id(FEED, "a"))
    assert stored is not None
    assert stored.last_updated == now

    with pytest.raises(StoreError, match="1 source keys for 2 entries"):
        store.save_poll(polled(FEED, later), [a, b], later, source_keys=["only-one"])


def test_migrating_leaves_pygments_out(tmp_path: Path) -> None:
    # mako (alembic's) would import its Pygments plugin: 5 MB of the first poll, for nothing.
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    command.upgrade(migration_config(url), "0003")  # a database from before the newest revision
    code = (
        "import sys; from aggregator.store import Store; Store.open(sys.argv[1]).close();"
        " print('pygments' in sys.modules); import mako.ext.pygmentplugin"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["False"]


def test_two_processes_adding_the_same_new_feeds_at_once_both_succeed(database_url: str) -> None:
    # Two `aggregator poll` started together on a config with feeds the database has not
    # seen: both read "missing" and insert. PostgreSQL refused the second (duplicate key).
    urls = [(f"https://feeds.example/{n}.xml", None) for n in range(3000)]
    stores = [Store.open(database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def sync(store: Store) -> None:
        barrier.wait()
        try:
            store.sync_feeds(urls)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    try:
        for _ in range(3):
            threads = [threading.Thread(target=sync, args=(store,)) for store in stores]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            assert len(stores[0].feed_states()) == 3000
            with stores[0].engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM feeds"))
    finally:
        for store in stores:
            store.close()


def test_an_entry_with_a_guid_and_link_longer_than_an_index_allows_is_stored(
    database_url: str, now: datetime
) -> None:
    # PostgreSQL refuses an index entry over about 2,700 bytes: the feed's whole write failed,
    # its ordinary entries with it.  SQLite took them.
    noise = "".join(f"{n:x}" for n in range(1, 800))  # long and not compressible
    body = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<item><title>Long</title><guid>https://x.example/p?{noise}</guid></item>"
        f"<item><title>Linked</title><link>https://x.example/a?{noise}</link></item>"
        '<item><title>Plain</title><guid isPermaLink="false">plain-1</guid></item>'
        "</channel></rss>"
    ).encode()
    entries = parse_feed(body, {}, FEED).entries
    assert [len(e.guid) <= 100 for e in entries] == [True, True, True]
    with Store.open(database_url) as store:
        assert store.save_poll(polled(FEED, now), entries, now) == SaveCounts(new=3, updated=0)
        again = parse_feed(body, {}, FEED).entries
        assert store.save_poll(polled(FEED, now), again, now) == SaveCounts(new=0, updated=0)


def test_an_unsubscribe_racing_a_subscribe_of_the_same_address_is_kept(
    database_url: str, monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    # Our UPDATE finds no row; another request inserts it before our INSERT.  The insert then
    # does nothing, and the unsubscribe must still be written (it was lost on PostgreSQL).
    real = store_module._insert_missing
    with Store.open(database_url) as store:

        def racing(conn: sa.Connection, table: sa.Table, rows: Any) -> int:
            if table is store_module.subscribers_table and conn.dialect.name == "postgresql":
                with store.engine.begin() as other:  # the other request commits first
                    other.execute(
                        table.insert().values(
                            newsletter="daily", address="c@example.org", active=True, changed=now
                        )
                    )
            return real(conn, table, rows)

        monkeypatch.setattr(store_module, "_insert_missing", racing)
        store.set_subscriber("daily", "c@example.org", False, now + timedelta(hours=1))
        monkeypatch.setattr(store_module, "_insert_missing", real)
        assert store.subscriber("daily", "c@example.org") == (False, now + timedelta(hours=1))


def test_feeds_and_subscribers_are_inserted_on_sqlite_without_returning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    # SQLite before 3.35 (Debian 11, Ubuntu 20.04, RHEL 8) has no INSERT ... RETURNING.
    with Store.open(f"sqlite:///{tmp_path}/old.sqlite") as store:
        monkeypatch.setattr(store.engine.dialect, "insert_returning", False)
        store.sync_feeds([(FEED, "One"), (OTHER, None)])
        store.set_subscriber("daily", "a@example.org", True, now)
        store.save_poll(polled("https://new.example/feed", now), [make_entry("a")], now)
        assert {s.url for s in store.feed_states()} == {FEED, OTHER, "https://new.example/feed"}
        assert store.subscribers("daily") == {"a@example.org": True}


def test_data_the_database_refuses_fails_its_feed_alone(
    store: Store, now: datetime, database_url: str
) -> None:
    # PostgreSQL files "index row size exceeds maximum" under OperationalError, as it does a
    # lost connection: one feed's over-long link must not read as the database being down
    # (the poll would stop for every feed, at every tick).
    big = "".join(random.Random(1).choices(string.ascii_letters, k=9000))
    polls = [
        (FeedState(url=FEED), [make_entry("long", canonical_url="https://example.com/a?" + big)]),
        (FeedState(url=OTHER), [make_entry("fine")]),
    ]
    results = store.save_polls(polls, now)
    if database_url.startswith("postgresql"):
        assert isinstance(results[0], StoreError)
        assert not isinstance(results[0], DatabaseUnavailable)
    assert results[1] == SaveCounts(new=1)


def test_the_longest_feed_url_config_allows_is_stored_on_both_backends(store: Store, now: datetime) -> None:
    # feeds.yaml refuses a feed URL over config.MAX_URL_BYTES (a 3,000-byte one failed the
    # feeds sync on PostgreSQL only, past its ~2,700-byte index row limit); parse keeps
    # guids and canonical URLs within parse.MAX_INDEXED_BYTES.  Both at their limits, in
    # text that does not compress, must still fit every index on both backends.
    from aggregator.config import MAX_URL_BYTES  # noqa: PLC0415 -- this test alone
    from aggregator.parse import MAX_INDEXED_BYTES  # noqa: PLC0415 -- this test alone

    prefix = "https://example.com/"
    url = prefix + secrets.token_hex(MAX_URL_BYTES)[: MAX_URL_BYTES - len(prefix)]
    guid = secrets.token_hex(MAX_INDEXED_BYTES)[:MAX_INDEXED_BYTES]
    canonical = prefix + secrets.token_hex(MAX_INDEXED_BYTES)[: MAX_INDEXED_BYTES - len(prefix)]
    assert (len(url.encode()), len(guid.encode()), len(canonical.encode())) == (
        MAX_URL_BYTES,
        MAX_INDEXED_BYTES,
        MAX_INDEXED_BYTES,
    )
    store.sync_feeds([(url, "Long")])
    entry = make_entry(guid, canonical_url=canonical)
    assert store.save_poll(polled(url, now), [entry], now) == SaveCounts(new=1, updated=0)
    [stored] = store.iter_entries([url])
    assert (stored.feed_url, stored.entry.guid) == (url, guid)


def test_an_entry_removed_by_retention_is_not_stored_again_and_other_feeds_never_look(
    store: Store, now: datetime
) -> None:
    # Retention deletes entries for good; a feed that still carried one stored it again as new.
    store.save_poll(polled(FEED, now), [make_entry("a"), make_entry("b")], now)
    store.save_poll(polled(OTHER, now), [make_entry("x")], now)
    aged = store.aged_entries(now + timedelta(seconds=1))
    assert sorted(e.guid for e in aged) == ["a", "b", "x"]
    assert store.remove_entries([e for e in aged if e.guid == "a"], now) == 0
    assert store.tombstoned_feeds() == {FEED}
    assert store.get_entry(entry_id(FEED, "a")) is None

    later = now + timedelta(hours=1)
    tombstoned = store.tombstoned_feeds()  # what a poll cycle reads once
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        results = store.save_polls(
            [
                (polled(FEED, later), [make_entry("a"), make_entry("b"), make_entry("c")]),
                (polled(OTHER, later), [make_entry("x"), make_entry("y")]),
            ],
            later,
            tombstoned=tombstoned,
        )
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    assert results == [SaveCounts(new=1), SaveCounts(new=1)]
    # One look at the tombstones in the save: for the feed that has some, its new guids.
    assert sum("pruned_entries" in statement for statement in statements) == 1
    # Without the set given, save_poll reads it itself.
    assert store.save_poll(polled(FEED, later), [make_entry("a")], later) == SaveCounts()
    assert sorted(e.entry.guid for e in store.iter_entries()) == ["b", "c", "x", "y"]
