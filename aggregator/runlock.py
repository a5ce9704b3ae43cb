"""The run lock: one scheduler per database.

In: a database URL.  Out: a context manager that holds the lock while the scheduler runs,
or ``SchedulerAlreadyRunning`` naming who holds it.

SQLite: ``flock`` on ``<database>.lock`` beside the file; the kernel releases it when the
process dies (even by ``kill -9``), so there is never a stale lock to clean up.
PostgreSQL: a session advisory lock named after the schema, held by a connection of its
own.  An in-memory database is private to its process and needs no lock.

One lock per database is the single-machine rule.  Sharing the work across machines on
PostgreSQL would replace it with per-feed claims (``SELECT … FOR UPDATE SKIP LOCKED`` on
the due feeds) in this module; nothing else assumes a single scheduler.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from aggregator.errors import AggregatorError, StoreError


class SchedulerAlreadyRunning(AggregatorError):
    """Another scheduler holds the run lock of this database."""


@contextlib.contextmanager
def run_lock(database_url: str) -> Iterator[None]:
    """Hold the scheduler's lock on the database at ``database_url``, or raise ``SchedulerAlreadyRunning``."""
    url = sa.make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        with _postgres_lock(url):
            yield
        return
    database = url.database or ""
    if backend != "sqlite" or database in ("", ":memory:") or url.query.get("uri"):
        yield
        return
    lock_path = Path(database).absolute().with_name(Path(database).name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"starting the scheduler: cannot open its lock file {lock_path}: {exc.strerror or exc};"
            " the database's folder must be writable"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            raise SchedulerAlreadyRunning(
                f"starting the scheduler: {database}: another scheduler is already running on this"
                f" database ({holder or 'holder unknown'}; lock file {lock_path}); stop it first"
            ) from None
        # Who holds it, for the message above; the lock itself is the flock, not this text.
        holder = f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock; the file stays (unlinking it would race a newcomer)


@contextlib.contextmanager
def _postgres_lock(url: sa.URL) -> Iterator[None]:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # as Store.open does
    shown = url.render_as_string(hide_password=True)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    key = sa.func.hashtext(sa.literal("aggregator scheduler ") + sa.func.current_schema())
    try:
        try:
            conn = engine.connect()
            held = conn.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar()
            conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"taking the scheduler lock: {shown}: {exc}") from exc
        with conn:
            if not held:
                raise SchedulerAlreadyRunning(
                    f"starting the scheduler: {shown}: another scheduler is already running on this"
                    " database; stop it first"
                )
            # Held by this connection's session until it closes (or the process dies).
            yield
    finally:
        engine.dispose()
