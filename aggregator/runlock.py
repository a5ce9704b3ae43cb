"""The database's two process locks: one scheduler per database, and polls against issues.

In: a database URL.  Out: context managers.  ``run_lock`` holds the scheduler's lock while
it runs, or raises ``SchedulerAlreadyRunning`` naming who holds it.  ``ingest_lock`` is a
readers-writer lock between processes: every poll holds it shared from before it reads
the clock (the time it stamps on what it finds) until what it found is stored, and
freezing a newsletter issue holds it alone.  Without it an ``aggregator poll`` from cron
and an ``aggregator digest NAME --send`` started at the same minute could freeze the issue
while the poll was still storing entries dated before the issue's end: the next issue
starts after that end, so those entries would be in no issue at all.  With it, a poll's
entries are either stored before the freeze or dated after it.

``sending_lock`` lets one process at a time send a database's newsletters.

SQLite: ``flock`` on ``<database>.lock`` (``.ingest.lock``, ``.send.lock``) beside the file
(its real path: symlinks resolved, so every path to it shares the lock);
the kernel releases it when the process dies (even by ``kill -9``), so there is never a
stale lock to clean up.  PostgreSQL: session advisory locks named after the schema, each
held by a connection of its own.  An in-memory database is private to its process and
needs no lock.

One scheduler per database is the single-machine rule.  Sharing the work across machines on
PostgreSQL would replace it with per-feed claims (``SELECT … FOR UPDATE SKIP LOCKED`` on
the due feeds) in this module; nothing else assumes a single scheduler.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from aggregator.errors import AggregatorError, StoreError

log = logging.getLogger(__name__)


class SchedulerAlreadyRunning(AggregatorError):
    """Another scheduler holds the run lock of this database."""


def _always() -> bool:
    return True


@contextlib.contextmanager
def run_lock(database_url: str) -> Iterator[Callable[[], bool]]:
    """Hold the scheduler's lock on the database at ``database_url``, or raise ``SchedulerAlreadyRunning``.

    Yields a probe: whether the lock is still held.  A file lock is held until the process
    lets it go; PostgreSQL drops a session's advisory lock with the session, when the server
    restarts or the connection breaks, and then a second scheduler could start.
    """
    url = sa.make_url(database_url)
    what = "starting the scheduler"
    if url.get_backend_name() == "postgresql":
        with _advisory_lock(url, "scheduler", what=what) as (held, conn, shown):
            if not held:
                raise SchedulerAlreadyRunning(
                    f"{what}: {shown}: another scheduler is already running on this database; stop it first"
                )
            yield lambda: _still_held(conn)
        return
    with _file_lock(url, ".lock", what=what) as (held, fd, lock_path):
        if fd is None:
            yield _always
            return
        if not held:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise SchedulerAlreadyRunning(
                f"{what}: {url.database}: another scheduler is already running on this database"
                f" ({holder or 'holder unknown'}; lock file {lock_path}); stop it first"
            )
        # Who holds it, for the message above; the lock itself is the flock, not this text.
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield _always


@contextlib.contextmanager
def ingest_lock(database_url: str, *, exclusive: bool) -> Iterator[None]:
    """Hold the lock between polls (``exclusive=False``, shared among them) and the freezing
    of a newsletter issue (``exclusive=True``), waiting as long as it takes.

    A poll takes it before reading the clock; an issue may read the clock first, since what
    matters is that no poll is between its clock reading and its last write while the issue
    is frozen.  Polls end (every fetch has a total timeout), so the wait does too.
    """
    url = sa.make_url(database_url)
    what = "freezing a newsletter issue" if exclusive else "polling"
    if url.get_backend_name() == "postgresql":
        with _advisory_lock(url, "ingest", what=what, shared=not exclusive, wait=True):
            yield
        return
    with _file_lock(url, ".ingest.lock", what=what, shared=not exclusive, wait=True):
        yield


@contextlib.contextmanager
def sending_lock(database_url: str) -> Iterator[bool]:
    """One process at a time sends the newsletters of a database: yields True when this one
    holds the lock, False at once when another does.

    Keyed to the database, not to a folder: two senders on one database (two checkouts, two
    hosts on PostgreSQL) would each settle the other's claimed recipients as left over by a
    crash, and send them again.
    """
    url = sa.make_url(database_url)
    what = "sending newsletters"
    if url.get_backend_name() == "postgresql":
        with _advisory_lock(url, "send", what=what) as (held, _conn, _shown):
            yield held
        return
    with _file_lock(url, ".send.lock", what=what) as (held, _fd, _path):
        yield held


# ----------------------------------------------------------------------- the two kinds of lock


@contextlib.contextmanager
def _file_lock(
    url: sa.URL, suffix: str, *, what: str, shared: bool = False, wait: bool = False
) -> Iterator[tuple[bool, int | None, Path | None]]:
    """``flock`` on the file beside a SQLite database: ``(held, fd, path)``; held is False
    when another process has it and ``wait`` is not asked for.  No file (an in-memory
    database): ``(True, None, None)``."""
    lock_path = _lock_file(url, suffix)
    if lock_path is None:
        yield True, None, None
        return
    fd = _open_lock_file(lock_path, what)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = wait
            if wait:
                log.warning("%s: %s", what, _waiting_for(not shared, f"lock file {lock_path}"))
                fcntl.flock(fd, mode)
        yield held, fd, lock_path
    finally:
        os.close(fd)  # releases the flock; the file stays (unlinking it would race a newcomer)


@contextlib.contextmanager
def _advisory_lock(
    url: sa.URL, name: str, *, what: str, shared: bool = False, wait: bool = False
) -> Iterator[tuple[bool, sa.Connection, str]]:
    """A PostgreSQL session advisory lock named after ``name`` and the schema, on a connection
    of its own: ``(held, connection, URL shown)``; held as the file lock's is.  It lasts as
    long as the connection's session (or the process)."""
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # as Store.open does
    shown = url.render_as_string(hide_password=True)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    key = sa.func.hashtext(sa.literal(f"aggregator {name} ") + sa.func.current_schema())
    if shared:
        try_lock, lock = sa.func.pg_try_advisory_lock_shared(key), sa.func.pg_advisory_lock_shared(key)
    else:
        try_lock, lock = sa.func.pg_try_advisory_lock(key), sa.func.pg_advisory_lock(key)
    try:
        try:
            conn = engine.connect()
            held = bool(conn.execute(sa.select(try_lock)).scalar())
            if not held and wait:
                log.warning("%s: %s", what, _waiting_for(not shared, f"advisory lock on {shown}"))
                conn.execute(sa.select(lock))
                held = True
            conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{what}: taking the {name} lock: {shown}: {_driver_message(exc)}") from exc
        with conn:
            yield held, conn, shown
    finally:
        engine.dispose()


# The advisory locks this session holds (the scheduler's connection holds no other).
_OWN_ADVISORY_LOCKS = sa.text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
)


def _still_held(conn: sa.Connection) -> bool:
    try:
        count = conn.execute(_OWN_ADVISORY_LOCKS).scalar()
        conn.commit()  # no transaction left open on the idle lock session
    except sa.exc.SQLAlchemyError:
        return False  # the session is gone (a restart, a broken connection): so is its lock
    return bool(count)


def _driver_message(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's own message, first line only, as the store words its errors: not
    SQLAlchemy's text, which adds the exception's class, the driver's hint on a line of its
    own and a link to SQLAlchemy's error catalogue."""
    reason: BaseException = exc.orig if isinstance(exc, sa.exc.StatementError) and exc.orig else exc
    text = str(reason).strip() or type(reason).__name__
    return text.splitlines()[0]


def _waiting_for(exclusive: bool, where: str) -> str:
    if exclusive:
        return f"waiting for a poll in progress to store what it fetched ({where})"
    return f"waiting for a newsletter issue being frozen by another process ({where})"


def _lock_file(url: sa.URL, suffix: str) -> Path | None:
    """The lock file beside a SQLite database file, symlinks and ``..`` resolved; None when
    no other process can open it (an in-memory database).

    Resolved because the lock belongs to the file, not to how a ``feeds.yaml`` spells it:
    beside ``data/shared.sqlite``, a symlink to another checkout's database, the lock file
    was ``data/shared.sqlite.lock``, so a second scheduler started on that database.  SQLite
    resolves symlinks too (its ``-wal`` file is beside the target).  A folder bind-mounted
    elsewhere needs nothing more: the lock file is in the same folder.  Not covered: a hard
    link (or one file bind-mounted under another name).  SQLite itself keeps a ``-wal`` beside
    each name, and writes through the second name fail ("disk I/O error"), so no second
    scheduler gets far; a lock keyed on the inode would need a folder both names share.
    """
    database = sqlite_file(url)
    if database is None:
        return None
    database = _resolved(database)
    return database.with_name(database.name + suffix)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()  # not strict: a fresh install's file does not exist yet
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        return path  # SQLite cannot open it either, and says so naming the path


def sqlite_file(url: str | sa.URL) -> Path | None:
    """The file of a SQLite database URL (absolute), or None: not SQLite, or in memory.
    A URI database (``sqlite:///file:data.db?mode=ro&uri=true``) is a file too: it names
    its path after ``file:``."""
    url = sa.make_url(url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if url.query.get("uri"):
        if url.query.get("mode") == "memory" or not database.startswith("file:"):
            return None
        parts = urlsplit(database)
        if "mode=memory" in parts.query:
            return None
        database = unquote(parts.path)
    if database in ("", ":memory:"):
        return None
    return Path(database).absolute()


def _open_lock_file(lock_path: Path, what: str) -> int:
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"{what}: cannot open the lock file {lock_path}: {exc.strerror or exc};"
            " the database's folder must be writable"
        ) from exc
