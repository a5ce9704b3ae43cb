"""The scheduler writes the output feeds at the next tick after a cycle could not, even
when no feed is due then.

The failed cycle logged that the entries are stored and the feeds "written at the next
cycle", but a tick with nothing due returned before publishing: the feeds waited for the
next feed due (an hour away, with the default interval), however soon the folder was fixed.

Real parts: a loopback feed server, real SQLite, real files, the scheduler's own poll job
(``Service.poll_due``) on a manual clock.  The tests run as root, whom permissions do not
stop: a file where the output folder should be provokes the error.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.clock import ManualClock
from aggregator.config import load_config
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
