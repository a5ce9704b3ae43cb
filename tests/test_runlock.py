"""The database's process locks, on SQLite and PostgreSQL (each in its own schema): the run
lock (one scheduler per database) and the ingest lock (polls against issues being frozen)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator.errors import StoreError
from aggregator.runlock import SchedulerAlreadyRunning, ingest_lock, run_lock, sending_lock
from aggregator.service import _held_from_thread


def test_a_second_holder_is_refused_until_the_first_lets_go(database_url: str) -> None:
    with (
        run_lock(database_url),
        pytest.raises(SchedulerAlreadyRunning, match="another scheduler is already running"),
        run_lock(database_url),
    ):
        pass
    with run_lock(database_url):  # released: the next scheduler may start
        pass


def test_two_databases_do_not_share_a_lock(database_url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path}/other.sqlite"
    with run_lock(database_url), run_lock(other):
        pass


def test_a_lock_file_that_cannot_be_made_is_a_store_error_naming_it(tmp_path: Path) -> None:
    # Its folder cannot exist (a file is in the way), as with a read-only disk: no traceback.
    (tmp_path / "data").write_text("not a folder", encoding="utf-8")
    lock = run_lock(f"sqlite:///{tmp_path}/data/db.sqlite")
    with (
        pytest.raises(
            StoreError, match=r"starting the scheduler: cannot open the lock file .*data/db\.sqlite\.lock"
        ),
        lock,
    ):
        pass


@pytest.mark.parametrize(
    ("take", "what"),
    [
        (run_lock, "starting the scheduler: taking the scheduler lock"),
        (lambda url: ingest_lock(url, exclusive=False), "polling: taking the ingest lock"),
        (sending_lock, "sending newsletters: taking the send lock"),
    ],
)
def test_an_unreachable_postgresql_server_is_one_line_naming_it_without_its_password(
    take: Any, what: str
) -> None:
    # `aggregator run --once` against a server that is down printed SQLAlchemy's three-line
    # text: the exception's class, the driver's hint on a line of its own and a link to
    # SQLAlchemy's error catalogue, unlike every other database error the commands print.
    with pytest.raises(StoreError) as raised, take("postgresql+psycopg://reader:s3cret@127.0.0.1:1/news"):
        pass
    message = str(raised.value)
    assert message.startswith(f"{what}: postgresql+psycopg://reader:***@127.0.0.1:1/news: connection failed")
    assert "\n" not in message
    assert "s3cret" not in message
    assert "sqlalche.me" not in message
    assert "OperationalError" not in message


# ----------------------------------------------------------------------- the ingest lock


def _in_thread(database_url: str, *, exclusive: bool, release: threading.Event) -> threading.Event:
    """Take the ingest lock in a thread (its own connection or file handle, as another
    process would) and hold it until ``release`` is set; returns the event set once held."""
    held = threading.Event()

    def hold() -> None:
        with ingest_lock(database_url, exclusive=exclusive):
            held.set()
            release.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    return held


def test_polls_share_the_ingest_lock_and_an_issue_waits_for_all_of_them(database_url: str) -> None:
    first_done, second_done, issue_done = threading.Event(), threading.Event(), threading.Event()
    assert _in_thread(database_url, exclusive=False, release=first_done).wait(5)
    assert _in_thread(database_url, exclusive=False, release=second_done).wait(5)  # polls overlap
    issue = _in_thread(database_url, exclusive=True, release=issue_done)
    assert not issue.wait(0.3)  # two polls are storing: the issue waits
    first_done.set()
    assert not issue.wait(0.3)  # one is still storing
    second_done.set()
    assert issue.wait(5)
    poll = _in_thread(database_url, exclusive=False, release=threading.Event())
    assert not poll.wait(0.3)  # and a poll waits for the issue being frozen
    issue_done.set()
    assert poll.wait(5)


def test_a_wait_for_the_ingest_lock_cancelled_lets_it_go_once_it_comes(sqlite_url: str) -> None:
    # The scheduler waits for the lock in a thread; a stop cancels the poll meanwhile.  The
    # thread still gets the lock in the end, and must not keep it: issues would wait forever.
    issue_done = threading.Event()
    assert _in_thread(sqlite_url, exclusive=True, release=issue_done).wait(5)
    lock = ingest_lock(sqlite_url, exclusive=False)  # still referenced: only an exit lets it go

    async def cancelled_poll() -> None:
        waiting = asyncio.create_task(_hold(lock))
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        issue_done.set()
        await asyncio.sleep(0.5)  # the thread gets the lock now, and lets it go

    asyncio.run(cancelled_poll())
    assert _in_thread(sqlite_url, exclusive=True, release=threading.Event()).wait(5)


async def _hold(lock: contextlib.AbstractContextManager[None]) -> None:
    async with _held_from_thread(lock):
        raise AssertionError("the issue holds the lock: this poll cannot have it yet")


def test_the_run_lock_says_when_postgresql_dropped_it(database_url: str) -> None:
    # A PostgreSQL restart ends the session that held the advisory lock; nothing noticed,
    # and a second scheduler could start on the same database.
    if not database_url.startswith("postgresql"):
        with run_lock(database_url) as still_held:
            assert still_held()  # a file lock is held until the process lets it go
        return
    with run_lock(database_url) as still_held:
        assert still_held()
        engine = sa.create_engine(sa.make_url(database_url).set(drivername="postgresql+psycopg"))
        try:
            with engine.begin() as conn:  # what a restart does to the session holding it
                # Only this schema's run lock: every advisory lock of the server was every
                # other test's and scheduler's on it too, which then saw theirs lost.
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND granted AND pid <> pg_backend_pid()"
                        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                        " AND objid = hashtext('aggregator scheduler ' || current_schema())::oid"
                    )
                )
        finally:
            engine.dispose()
        assert not still_held()
        with run_lock(database_url):  # free for a new scheduler: the old one must know
            pass


def test_a_sqlite_uri_database_is_locked_like_a_path(tmp_path: Path) -> None:
    # "sqlite:///file:...?uri=true" got no lock at all: two senders at once, each resending
    # the other's claimed readers.
    url = f"sqlite:///file:{tmp_path / 'data.db'}?uri=true"
    with sending_lock(url) as first, sending_lock(url) as second:
        assert (first, second) == (True, False)
    with sending_lock("sqlite:///file:memdb?mode=memory&uri=true") as alone:
        assert alone  # in memory: no other process can open it
