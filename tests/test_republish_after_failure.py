"""The scheduler writes the output feeds at the next tick after a cycle could not, even
when no feed is due then.

The failed cycle logged that the entries are stored and the feeds "written at the next
cycle", but a tick with nothing due returned before publishing: the feeds waited for the
next feed due (an hour away, with the default interval), however soon the folder was fixed.

Real parts: a loopback feed server, real SQLite (and its ingest lock file), real files, the
scheduler's own poll job (``Service.poll_due``) on a manual clock.  The tests run as root,
whom permissions do not stop: a file where the output folder should be provokes the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import pipeline
from aggregator.clock import ManualClock
from aggregator.config import load_config
from aggregator.runlock import ingest_lock
from aggregator.service import Service
from aggregator.store import Store
from tests.feedserver import FeedServer


def write_config(folder: Path, url: str) -> Path:
    config = folder / "feeds.yaml"
    config.write_text(f"feeds:\n  - url: {url}\nnewsletters: []\n", encoding="utf-8")
    return config


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.anyio
async def test_a_tick_with_nothing_due_writes_the_feeds_a_failed_cycle_could_not(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aggregator.service")
    loaded = load_config(write_config(tmp_path, feed_server.url("/atom.xml")))
    public = tmp_path / "public"
    public.write_text("a file where the output folder should be", encoding="utf-8")
    clock = ManualClock(datetime.now(UTC))
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=clock)
        assert await service.poll_due() is None  # the cycle failed at its last stage
        assert sum(store.entry_counts().values()) > 0
        [failed] = errors(caplog)
        assert failed.startswith("poll cycle failed: writing the output feeds: cannot write")
        assert feed_server.count("/atom.xml") == 1

        # Not fixed yet: tried again, but not said again every minute.
        clock.advance(timedelta(minutes=1))
        await service.poll_due()
        assert errors(caplog) == [failed]
        assert public.is_file()

        public.unlink()  # fixed
        clock.advance(timedelta(minutes=1))
        await service.poll_due()

        assert feed_server.count("/atom.xml") == 1  # nothing was due: no poll, only the feeds
        assert {p.name for p in public.iterdir()} >= {"feed.atom", "feed.rss", "feed.json"}
        assert "<entry>" in (public / "feed.atom").read_text(encoding="utf-8")
        assert errors(caplog) == [failed]
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any(line.startswith("output feeds written after the earlier failure: ") for line in said), said

        # Written: the next tick with nothing due leaves them alone again.
        (public / "feed.atom").unlink()
        clock.advance(timedelta(minutes=1))
        await service.poll_due()
        assert not (public / "feed.atom").exists()


@pytest.mark.anyio
async def test_a_new_reason_after_a_failed_cycle_is_logged_and_the_feeds_wait(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The folder moved away and something else is in the way now: that is news, said once.
    loaded = load_config(write_config(tmp_path, feed_server.url("/atom.xml")))
    public = tmp_path / "public"
    public.write_text("a file where the output folder should be", encoding="utf-8")
    clock = ManualClock(datetime.now(UTC))
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=clock)
        await service.poll_due()
        public.unlink()
        public.mkdir()
        (public / "feed.atom").mkdir()  # a folder where a feed file should be
        for _ in range(2):
            clock.advance(timedelta(minutes=1))
            await service.poll_due()
    [cycle, again] = errors(caplog)
    assert cycle.startswith("poll cycle failed: writing the output feeds: ")
    assert again.startswith(
        f"publishing after the earlier failure: writing the output feeds: cannot write {public / 'feed.atom'}"
    ), again


@pytest.mark.anyio
async def test_the_feeds_written_after_a_failure_wait_for_a_prune_of_another_process(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The republish took no lock: it could read the stories before `aggregator prune`
    # removed entries and write its files after, listing them again, and then count the
    # feeds as written.  It now holds the ingest lock shared, as a cycle does.
    caplog.set_level(logging.INFO, logger="aggregator.service")
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {feed_server.url('/atom.xml')}\nnewsletters: []\n"
        "polling: {interval: 30d, max_interval: 30d}\n"  # nothing due again in this test
        "retention: {max_age: 7d}\n",
        encoding="utf-8",
    )
    loaded = load_config(config)
    public = tmp_path / "public"
    public.write_text("a file where the output folder should be", encoding="utf-8")
    clock = ManualClock(datetime.now(UTC))
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=clock)
        assert await service.poll_due() is None  # stored, but the feeds could not be written
        stored = sum(store.entry_counts().values())
        assert stored > 0
        public.unlink()  # fixed
        clock.advance(timedelta(days=8))  # every entry is now older than retention.max_age

        def waiting_for_the_lock() -> bool:
            return any(
                r.name == "aggregator.runlock" and "waiting for" in r.getMessage() for r in caplog.records
            )

        # `aggregator prune` (cli.prune) holds the ingest lock alone, on the database's real
        # lock file, while the tick comes.  It removes the entries once the tick has had its
        # chance to read them.
        with ingest_lock(loaded.database_url, exclusive=True):
            tick = asyncio.ensure_future(service.poll_due())
            deadline = time.monotonic() + 10
            while not tick.done() and not waiting_for_the_lock() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            waited = not tick.done()
            report = pipeline.prune_entries(loaded, store, clock.now())
            assert report is not None
            assert report.entries == stored
        await tick

        # The prune's own rewrite of the feeds is left out: in the race it came before the
        # republish's files replaced them.  The feeds are the store after the prune.
        atom = (public / "feed.atom").read_text(encoding="utf-8")
        assert "<entry>" not in atom, "the republish wrote entries the prune removed"
        assert waited  # it waited for the prune rather than run beside it
        assert feed_server.count("/atom.xml") == 1  # nothing was due: no poll, only the feeds
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any(line.startswith("output feeds written after the earlier failure: ") for line in said), said
