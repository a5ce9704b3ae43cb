"""``file:`` feeds whose file system stops answering: the poll stops waiting at the total limit.

A hung network mount is stood in for by a file lease (``fcntl`` ``F_SETLEASE``): while the
test holds a write lease on a regular file, the kernel makes every other ``open()`` of it
wait until the lease is released (or ``/proc/sys/fs/lease-break-time``, 45 s by default,
has passed), as an ``open()`` on an NFS mount whose server is gone waits.  Linux only; the
tests skip where the file system refuses leases.

A FIFO nobody writes to would block an ``open()`` as well, but a FIFO is no feed file and is
refused before it is opened (see the last test), so it cannot stand in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from aggregator.fetch import Fetcher, FetchSettings, make_client
from aggregator.types import FeedState, FeedStatus, FetchResult
from tests.feedserver import RSS

fcntl = pytest.importorskip("fcntl")

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "F_SETLEASE"), reason="file leases are Linux only")

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
LIMIT = 0.3  # the total time limit for one fetch, in seconds
SETTINGS = FetchSettings(connect_timeout=LIMIT, read_timeout=LIMIT, total_timeout=LIMIT)


@contextlib.contextmanager
def opens_blocked(path: Path, *, at_most: float = 10.0) -> Iterator[None]:
    """While inside, ``open(path)`` from anywhere else waits in the kernel.

    The lease goes at the end, or after ``at_most`` seconds, so that a fetch that waits for
    the open (the defect) fails its test in seconds, not after lease-break-time.
    """
    fd = os.open(path, os.O_RDONLY)
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            os.close(fd)  # closing the descriptor ends the lease; waiting opens go on

    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
    except OSError as exc:
        release()
        pytest.skip(f"the file system refuses leases: {exc}")
    # A broken lease sends SIGIO to its owner, which would end the test process: no owner.
    fcntl.fcntl(fd, fcntl.F_SETOWN, 0)
    timer = threading.Timer(at_most, release)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        release()


def feed_file(tmp_path: Path) -> Path:
    path = tmp_path / "mounted feed.xml"
    path.write_bytes(RSS)
    return path


async def fetch(path: Path, state: FeedState | None = None) -> FetchResult:
    async with make_client(SETTINGS) as client:
        return await Fetcher(client, SETTINGS).fetch(state or FeedState(url=path.name), path.as_uri(), NOW)


def readers_of(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if str(path) in t.name]


def timed_out(path: Path) -> str:
    return (
        f"timed out after {LIMIT:g} s reading file {path}: the file system did not answer "
        "(total time limit for one fetch); is it on a network mount that is down?"
    )


@pytest.mark.anyio
async def test_a_file_read_that_does_not_return_times_out_naming_the_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = feed_file(tmp_path)
    with opens_blocked(path):
        started = time.monotonic()
        with anyio.fail_after(5):  # before the fix, the poll waited for as long as the open did
            result = await fetch(path)
        waited = time.monotonic() - started
        readers = readers_of(path)
    assert result.status is FeedStatus.ERROR
    assert result.error == timed_out(path)
    assert waited < LIMIT + 1
    # The read left behind finishes once the file system answers, and its result goes
    # nowhere: no late result set on a future nobody awaits, nothing logged.
    assert readers, "the read should have been left running in a thread of its own"
    for reader in readers:
        assert reader.daemon  # does not keep the process alive
        reader.join(timeout=5)
        assert not reader.is_alive()
    await anyio.sleep(0.05)  # let the loop run what the thread handed it
    assert not caplog.records


def test_an_abandoned_file_read_does_not_hold_up_the_end_of_the_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # ``asyncio.run`` (as the CLI runs a poll) waits for the threads of the loop's default
    # executor before it returns: a read stuck in one of them made the command hang at its
    # end even with the fetch given up.  And once the loop is closed, the thread that comes
    # back at last must not fail trying to hand its result over (pytest reports an exception
    # in a thread as an error).
    path = feed_file(tmp_path)
    with opens_blocked(path, at_most=3):
        started = time.monotonic()
        result = asyncio.run(fetch(path))
        took = time.monotonic() - started
        readers = readers_of(path)
    assert took < LIMIT + 1
    assert result.status is FeedStatus.ERROR
    assert result.error == timed_out(path)
    for reader in readers:
        reader.join(timeout=5)
        assert not reader.is_alive()
    assert not caplog.records


@pytest.mark.anyio
async def test_a_fifo_nobody_writes_to_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.xml"
    os.mkfifo(fifo)
    with anyio.fail_after(LIMIT + 1):
        result = await fetch(fifo)
    assert result.status is FeedStatus.ERROR
    assert result.error == f"not a file: {fifo}"


@pytest.mark.anyio
async def test_a_file_that_answers_in_time_is_read_as_before(tmp_path: Path) -> None:
    path = feed_file(tmp_path)
    result = await fetch(path)
    assert result.status is FeedStatus.OK, result.error
    assert result.body == RSS
    again = await fetch(path, FeedState(url=path.name, etag=result.etag))
    assert again.status is FeedStatus.NOT_MODIFIED


@pytest.mark.anyio
async def test_while_a_read_left_behind_is_stuck_later_polls_start_no_other(tmp_path: Path) -> None:
    # A scheduler polls the feed again and again while the mount stays dead: one blocked
    # thread, not one more per poll; once the file system answers, reading resumes.
    path = feed_file(tmp_path)
    with opens_blocked(path):
        first = await fetch(path)
        assert first.error == timed_out(path)
        again = [await fetch(path) for _ in range(3)]
        readers = readers_of(path)
    assert len(readers) == 1
    for result in again:
        assert result.status is FeedStatus.ERROR
        assert result.error == (
            f"an earlier read of file {path} has not returned yet: the file system does not answer "
            "(is it on a network mount that is down?); not read again until it does"
        )
    readers[0].join(timeout=5)
    assert (await fetch(path)).status is FeedStatus.OK
