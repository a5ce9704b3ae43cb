"""When the scheduler polls: at each feed's next check, not at the poll tick after it.

The poll job runs every ``POLL_TICK`` and polls the feeds whose stored next check has
come.  Jitter only adds time, so a next check fell just after a tick and waited for the
next one: a feed set to 5 minutes was polled every 6.  The job is now woken at the
earliest next check (never before it, never sooner than ``POLL_MIN_GAP`` after the cycle
before).  The simulations run the service's jobs in a real ``AsyncIOScheduler`` (started
paused, so the machine's clock never fires it): the test fires the poll job at the next run
time the job store holds, jumping a ``ManualClock`` there, as APScheduler would, and the
service moves that time itself.  The last test runs the real scheduler in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator.clock import ManualClock
from aggregator.config import LoadedConfig, load_config
from aggregator.service import POLL_JOB_ID, POLL_MIN_GAP, POLL_WAKE_MARGIN, Service, next_runs, serve
from aggregator.store import Store
from aggregator.types import FeedState
from tests.feedserver import FeedServer, RecordedRequest
from tests.test_scheduler import RecordingIssues, rss, until, utc

pytest_plugins = ("tests.feedserver",)

START = utc(2025, 8, 19, 9)


def write_config(path: Path, feeds: list[str], interval: str, polling: str = "") -> LoadedConfig:
    lines = ["feeds:", *(f"  - url: {url}\n    interval: {interval}" for url in feeds)]
    text = "\n".join(lines) + "\nnewsletters: []\n" + polling
    text += f"database: sqlite:///{path.parent / 'data' / 'aggregator.sqlite'}\n"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@contextlib.asynccontextmanager
async def scheduled(
    loaded: LoadedConfig, store: Store, clock: ManualClock
) -> AsyncIterator[AsyncIOScheduler]:
    """The service's jobs installed in a real AsyncIOScheduler, started paused: only
    ``fire_poll_job`` runs them, by ``clock``."""
    service = Service(loaded, store, clock=clock, run_issue=RecordingIssues())
    scheduler = AsyncIOScheduler(timezone=UTC)
    service.install(scheduler)  # the first poll now, as `run` does at start
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


async def fire_poll_job(
    scheduler: AsyncIOScheduler, clock: ManualClock, end: datetime
) -> AsyncIterator[datetime]:
    """Run the poll job at each next run time its job store holds, up to ``end``, and yield it.

    As APScheduler does: the clock is at the run time, and the trigger's following time (a
    tick later) is stored before the job runs; the job itself may move it sooner.
    """
    while (job := scheduler.get_job(POLL_JOB_ID)).next_run_time <= end:
        when = job.next_run_time
        clock.set(when)
        scheduler.modify_job(POLL_JOB_ID, next_run_time=job.trigger.get_next_fire_time(when, when))
        await job.func()
        yield when


def new_fetches(seen: dict[str, list[FeedState]], states: list[FeedState]) -> bool:
    """Append to ``seen`` each feed's state after a fetch not seen yet; whether there was one."""
    fetched = False
    for state in states:
        history = seen.setdefault(state.url, [])
        if state.last_fetch is not None and (not history or history[-1].last_fetch != state.last_fetch):
            history.append(state)
            fetched = True
    return fetched


def lateness(history: list[FeedState]) -> list[timedelta]:
    """How long after the next check it had stored each fetch came (negative: before it)."""
    late = []
    for before, after in pairwise(history):
        assert before.next_check is not None
        assert after.last_fetch is not None
        late.append(after.last_fetch - before.next_check)
    return late


@pytest.mark.anyio
async def test_a_feed_set_to_5_minutes_is_polled_every_5_minutes_not_every_6(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    feed_server.add_feed("/news.xml", rss(("a", "Alpha")), etag='"v1"')
    url = feed_server.url("/news.xml")
    loaded = write_config(tmp_path / "feeds.yaml", [url], "5m")  # jitter at its default, 10%
    clock = ManualClock(START)
    seen: dict[str, list[FeedState]] = {}
    status_said: list[datetime | None] = []
    with Store.open(loaded.database_url) as store:
        async with scheduled(loaded, store, clock) as scheduler:
            async for _ in fire_poll_job(scheduler, clock, START + timedelta(hours=1, minutes=5)):
                if new_fetches(seen, store.feed_states([url])):
                    # When `aggregator status` says the poll job polls next.
                    status_said.append(next_runs(loaded, store, clock.now())[0].next_run)
    fetched = [s.last_fetch for s in seen[url]]
    gaps = [b - a for a, b in pairwise(fetched) if a is not None and b is not None]
    # 5 minutes plus jitter (at most 10%): not the 6 minutes of the tick after.
    slowest = timedelta(minutes=5, seconds=30) + POLL_MIN_GAP
    assert all(timedelta(minutes=5) <= gap <= slowest for gap in gaps), [str(g) for g in gaps]
    assert len(gaps) >= 11
    # And `status` tells the truth: the feed is polled at the time it shows, not a tick later
    # (a wake-up is never set less than POLL_WAKE_MARGIN after the run that sets it).
    lateness = [f - s for f, s in zip(fetched[1:], status_said[:-1], strict=True) if f and s]
    assert len(lateness) == len(fetched) - 1
    assert all(timedelta(0) <= late <= POLL_WAKE_MARGIN for late in lateness), [str(x) for x in lateness]


@pytest.mark.anyio
async def test_a_server_that_asked_us_to_wait_is_never_polled_before_its_next_check(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    # Twice "429, Retry-After: 1800", then 200s with "Cache-Control: max-age=430": both are
    # in the stored next check, which the wake-up must never come before.
    def busy(handler: Any, request: RecordedRequest) -> None:
        if feed_server.count("/busy") <= 2:
            headers = {"Retry-After": "1800", "Content-Type": "text/plain"}
            handler.respond(request, 429, b"slow down", headers)
        else:
            headers = {"Content-Type": "application/rss+xml", "Cache-Control": "max-age=430"}
            handler.respond(request, 200, rss(("a", "Alpha")), headers)

    feed_server._specials["/busy"] = busy
    url = feed_server.url("/busy")
    loaded = write_config(tmp_path / "feeds.yaml", [url], "5m")
    clock = ManualClock(START)
    seen: dict[str, list[FeedState]] = {}
    with Store.open(loaded.database_url) as store:
        async with scheduled(loaded, store, clock) as scheduler:
            async for _ in fire_poll_job(scheduler, clock, START + timedelta(hours=2, minutes=30)):
                new_fetches(seen, store.feed_states([url]))
    history = seen[url]
    assert [s.http_status for s in history[:3]] == [429, 429, 200]
    assert len(history) >= 10
    for before, after in pairwise(history):
        assert before.last_fetch is not None
        assert after.last_fetch is not None
        asked = timedelta(seconds=1800 if before.http_status == 429 else 430)
        assert after.last_fetch - before.last_fetch >= asked
    late = lateness(history)
    assert all(timedelta(0) <= t <= POLL_MIN_GAP for t in late), [str(t) for t in late]


@pytest.mark.anyio
async def test_many_feeds_due_seconds_apart_are_polled_on_time_in_a_few_cycles(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    # Forty feeds polled together, then due again over half a minute (their jitter): woken
    # once per feed, the job would run forty cycles; at the tick after, each is up to a minute late.
    urls = []
    for n in range(40):
        feed_server.add_feed(f"/f{n}.xml", rss((f"f{n}", f"Story {n}")), etag=f'"f{n}"')
        urls.append(feed_server.url(f"/f{n}.xml"))
    loaded = write_config(tmp_path / "feeds.yaml", urls, "5m")
    clock = ManualClock(START)
    seen: dict[str, list[FeedState]] = {}
    runs, cycles = [], []
    with Store.open(loaded.database_url) as store:
        async with scheduled(loaded, store, clock) as scheduler:
            async for when in fire_poll_job(scheduler, clock, START + timedelta(minutes=11)):
                runs.append(when)
                if new_fetches(seen, store.feed_states(urls)):
                    cycles.append(when)
    assert all(len(seen[url]) >= 2 for url in urls)  # each polled again after its 5 minutes
    late = [t for url in urls for t in lateness(seen[url])]
    assert all(timedelta(0) <= t <= POLL_MIN_GAP for t in late), sorted(str(t) for t in late)[-5:]
    # Cycles at least the minimum gap apart, however many feeds: at most 6 a minute, and
    # the job runs at most once more in a minute (a tick that only reads the store).
    assert min(b - a for a, b in pairwise(cycles)) >= POLL_MIN_GAP
    per_minute = 60 // POLL_MIN_GAP.seconds + 1
    assert all(sum(when <= t < when + timedelta(minutes=1) for t in runs) <= per_minute for when in runs)
    polls = sum(len(seen[url]) for url in urls)
    assert len(cycles) <= 12 < polls  # batched: ~4 cycles per half minute of due feeds


@pytest.mark.anyio
async def test_under_the_real_scheduler_a_feed_is_polled_at_its_next_check_not_at_the_tick(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    # Real time: a feed every second (min_interval lowered), the tick at its minute.  The
    # wake-up goes through APScheduler's own timer; before it, the second poll came a minute on.
    feed_server.add_feed("/news.xml", rss(("a", "Alpha")), etag='"v1"')
    loaded = write_config(
        tmp_path / "feeds.yaml", [feed_server.url("/news.xml")], "1s", "polling:\n  min_interval: 1s\n"
    )
    stopping = asyncio.Event()
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, run_issue=RecordingIssues(), poll_min_gap=timedelta(seconds=0.2))
        task = asyncio.create_task(serve(service, None, stopping=stopping))
        try:
            await until(lambda: feed_server.count("/news.xml") == 1, 10)
            began = time.monotonic()
            await until(lambda: feed_server.count("/news.xml") >= 3, 10)
            # Each a second (and its jitter) after the one before: never before its next check.
            # (Loosely: the exact times are the simulations' business.)
            assert time.monotonic() - began >= 1.0
        finally:
            stopping.set()
            await task
