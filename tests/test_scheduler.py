"""The long-running scheduler: schedules with a controlled clock, reloads, locks, stops and crashes.

Three kinds of test, all with real parts (a loopback feed server, real SQLite, a real
aiosmtpd server, real files):

- a simulated day and a half with a ``ManualClock``: the test jumps the clock from one
  fire time to the next using the very triggers the scheduler installs, and runs the
  jobs' bodies at those times; no real time passes;
- the service under a real APScheduler in this process (config edits, sleep catch-up),
  for a second or two of real time;
- ``python scheduler.py`` as a real subprocess: a second instance, SIGTERM, ``kill -9``
  in the middle of a poll and of a digest, then a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator import mail
from aggregator.clock import ManualClock
from aggregator.config import LoadedConfig, NewsletterConfig, load_config
from aggregator.errors import AggregatorError
from aggregator.newsletters import run_due_newsletters
from aggregator.runlock import SchedulerAlreadyRunning, run_lock, sending_lock
from aggregator.schedule import last_fire_time, newsletter_trigger
from aggregator.service import (
    NEWSLETTER_JOB_PREFIX,
    POLL_JOB_ID,
    PRUNE_JOB_ID,
    RETRY_JOB_ID,
    ConfigWatcher,
    DigestRun,
    JsonFormatter,
    NextRun,
    Service,
    _QuietPollSkips,
    next_runs,
    serve,
)
from aggregator.store import IssueRecord, Store, entry_id
from aggregator.types import Entry, FeedState
from tests.conftest import PROJECT_ROOT, _postgres_schema_url
from tests.feedserver import FeedServer
from tests.test_mail import (
    PASSWORD,
    USER,
    Handler,
    start_server,
    tls_files,  # noqa: F401 -- a fixture
)

pytest_plugins = ("tests.feedserver",)

SCHEDULER = PROJECT_ROOT / "scheduler.py"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def rss(*items: tuple[str, str]) -> bytes:
    """An RSS 2.0 document with ``(guid, title)`` items."""
    body = "".join(
        f"<item><title>{title}</title><link>http://127.0.0.1/{guid}</link><guid>{guid}</guid>"
        f"<description>{title}: what happened, in some words.</description></item>"
        for guid, title in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Loopback</title>'
        f"<link>http://127.0.0.1/</link><description>d</description>{body}</channel></rss>"
    ).encode()


def write_config(
    path: Path, feeds: list[str], newsletters: str = "newsletters: []\n", extra: str = ""
) -> Path:
    lines = ["feeds:"] + [f"  - url: {url}\n    interval: 1h" for url in feeds]
    if not feeds:
        lines = ["feeds: []"]
    text = "\n".join(lines) + "\n" + newsletters + extra
    text += f"database: sqlite:///{path.parent / 'data' / 'aggregator.sqlite'}\n"
    # Replace atomically, as editors do, so the watcher never sees half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


class RecordingIssues:
    """A ``RunIssue`` that records when it was asked for which issue, and stores the issue.

    It stores what the newsletters module stores (an issue per window), so the
    scheduler's own catch-up rule reads real rows.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[str, datetime, datetime]] = []

    async def __call__(
        self,
        loaded: LoadedConfig,
        store: Store,
        newsletter: NewsletterConfig,
        *,
        scheduled_for: datetime,
        now: datetime,
        stop: threading.Event,
    ) -> tuple[DigestRun, ...]:
        self.runs.append((newsletter.name, scheduled_for, now))
        latest = store.latest_issue(newsletter.name)
        if latest is not None and latest.status == "sending":
            store.finish_issue(newsletter.name, latest.number, now)
            return (DigestRun(newsletter.name, scheduled_for, "done", latest.number),)
        number = record_issue(store, newsletter.name, now, status="done")
        return (DigestRun(newsletter.name, scheduled_for, "done", number),)


def record_issue(store: Store, name: str, window_end: datetime, *, status: str = "done") -> int:
    latest = store.latest_issue(name)
    number = 1 if latest is None else latest.number + 1
    start = None if latest is None else latest.window_end
    issue = IssueRecord(name, number, start, window_end, window_end, status, 0, "{}", None)
    store.freeze_issue(issue, [], window_end)
    return number


async def simulate(
    service: Service,
    clock: ManualClock,
    until: datetime,
    events: dict[datetime, Callable[[], None]] | None = None,
) -> list[tuple[datetime, str]]:
    """Run the service's jobs at their fire times up to ``until``, jumping the clock between them."""
    triggers = service.triggers()
    upcoming = {job: trigger.get_next_fire_time(None, clock.now()) for job, trigger in triggers.items()}
    pending = sorted((events or {}).items())
    ran = []
    while True:
        job, when = min(((j, w) for j, w in upcoming.items() if w is not None), key=lambda item: item[1])
        if when > until:
            return ran
        while pending and pending[0][0] <= when:
            pending.pop(0)[1]()
        clock.set(when)
        await service.run_job(job)
        ran.append((when.astimezone(UTC), job))
        upcoming[job] = triggers[job].get_next_fire_time(when, when)


# --------------------------------------------------------------------------- a simulated day


@pytest.mark.anyio
async def test_a_simulated_day_and_a_half_across_the_autumn_clock_change(
    feed_server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aggregator.service")
    feed_server.add_feed("/news.xml", rss(("a", "Alpha")), etag='"v1"')
    newsletters = """newsletters:
  - name: night
    title: Night owls
    schedule: "30 2 * * *"
    timezone: Europe/Paris
  - name: paris
    title: Paris morning
    schedule: "0 7 * * *"
    timezone: Europe/Paris
  - name: newyork
    title: New York evening
    schedule: "30 18 * * *"
    timezone: America/New_York
"""
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [feed_server.url("/news.xml")], newsletters))
    clock = ManualClock(utc(2025, 10, 25))
    issues = RecordingIssues()
    published_at = utc(2025, 10, 26, 9, 10)

    def publish() -> None:
        feed_server.add_feed("/news.xml", rss(("b", "Bravo"), ("a", "Alpha")), etag='"v2"')

    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=clock, run_issue=issues, poll_tick=timedelta(minutes=15))
        await simulate(service, clock, utc(2025, 10, 27), {published_at: publish})

        # Each newsletter at its local time: Paris moves from 05:00 to 06:00 UTC when the
        # clocks go back; New York (which changes a week later) stays at 22:30 UTC; the
        # 02:30 issue is sent once although 02:30 happened twice that night.
        assert [(name, when) for name, when, _ in issues.runs] == [
            ("night", utc(2025, 10, 25, 0, 30)),
            ("paris", utc(2025, 10, 25, 5)),
            ("newyork", utc(2025, 10, 25, 22, 30)),
            ("night", utc(2025, 10, 26, 0, 30)),
            ("paris", utc(2025, 10, 26, 6)),
            ("newyork", utc(2025, 10, 26, 22, 30)),
        ]
        assert all(now == when for _, when, now in issues.runs)  # on time, not a tick late

        # The feed was polled at its cadence (1 hour, plus jitter, plus at most one tick).
        polls = len(feed_server.requests("/news.xml"))
        assert 35 <= polls <= 48
        bravo = next(e for e in store.iter_entries() if e.entry.title == "Bravo")
        assert published_at < bravo.first_seen <= published_at + timedelta(hours=1, minutes=25)

    cycles = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "poll_cycle"]
    assert len(cycles) == polls  # one line per cycle that polled something
    assert sum(r.fields["new_entries"] for r in cycles) == 2  # type: ignore[attr-defined]
    assert sum(1 for r in caplog.records if getattr(r, "fields", {}).get("event") == "digest") == 6


@pytest.mark.anyio
async def test_at_start_one_missed_issue_is_caught_up_and_an_interrupted_one_finished(
    tmp_path: Path, now: datetime
) -> None:
    newsletters = """newsletters:
  - {name: daily, title: Daily, schedule: "0 7 * * *"}
  - {name: interrupted, title: Interrupted, schedule: "0 7 * * *"}
  - {name: fresh, title: Fresh, schedule: "0 7 * * *"}
"""
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [], newsletters))
    issues = RecordingIssues()
    with Store.open(loaded.database_url) as store:
        record_issue(store, "daily", now - timedelta(days=3, hours=5))  # down for three days
        record_issue(store, "interrupted", now - timedelta(hours=5), status="sending")  # killed mid-send
        service = Service(loaded, store, clock=ManualClock(now), run_issue=issues)
        await service.catch_up()
        await service.catch_up()  # a second start right after sends nothing more
        assert [(name, when) for name, when, _ in issues.runs] == [
            ("daily", utc(2025, 8, 18, 7)),  # one issue, the latest, not three
            ("interrupted", now - timedelta(hours=5)),  # finished, not started afresh
            ("fresh", now),  # never sent: due at once, as with `run --once`
        ]
        # After that, "fresh" follows its schedule.
        runs = {r.job: r.next_run for r in next_runs(loaded, store, now)}
        assert runs[NEWSLETTER_JOB_PREFIX + "fresh"] == utc(2025, 8, 19, 7)


def test_status_lists_the_retry_job_with_what_waits_and_when(tmp_path: Path, now: datetime) -> None:
    newsletters = """newsletters:
  - {name: daily, title: Daily, schedule: "0 7 * * *"}
  - {name: weekly, title: Weekly, schedule: "0 7 * * 1"}
"""
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [], newsletters))
    with Store.open(loaded.database_url) as store:
        assert next_runs(loaded, store, now)[-1] == NextRun(RETRY_JOB_ID, None, "nothing to retry")

        issue = IssueRecord("daily", 1, None, now, now, "sending", 0, "{}", None)
        store.freeze_issue(issue, ["a@example.org", "b@example.org", "c@example.org"], now)
        later = now + timedelta(minutes=10)
        store.set_delivery("daily", 1, "a@example.org", "retry", now, error="451 busy", next_attempt=later)
        store.set_delivery("daily", 1, "b@example.org", "sent", now)
        store.set_delivery("daily", 1, "c@example.org", "failed", now, error="550 no such user")
        expected = NextRun(RETRY_JOB_ID, later, "daily #1: 1 delivery waiting")
        assert next_runs(loaded, store, now)[-1] == expected


@pytest.mark.anyio
async def test_the_prune_job_runs_daily_and_logs_what_it_removed(
    tmp_path: Path, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    # The scheduler had no retention: the database grew for as long as it ran.
    caplog.set_level(logging.INFO, logger="aggregator.service")
    feed = "http://127.0.0.1:9/feed.xml"
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [feed]))
    clock = ManualClock(now)
    with Store.open(loaded.database_url) as store:
        for guid, seen in (("old", now - timedelta(days=200)), ("new", now - timedelta(days=2))):
            entry = Entry(
                guid=guid, url=f"http://127.0.0.1/{guid}", canonical_url=None, title=guid, text=guid
            )
            store.save_poll(FeedState(feed), [entry], seen)
        service = Service(loaded, store, clock=clock, run_issue=RecordingIssues())
        scheduler = AsyncIOScheduler(timezone=UTC)
        service.install(scheduler)
        job = scheduler.get_job(PRUNE_JOB_ID)
        assert job is not None
        assert (job.coalesce, job.max_instances) == (True, 1)
        assert job.next_run_time == now + timedelta(minutes=5)  # a few minutes after start
        assert service.triggers()[PRUNE_JOB_ID].interval == timedelta(days=1)
        status = {run.job: run for run in next_runs(loaded, store, now)}
        assert "entries stored over 180 days" in status[PRUNE_JOB_ID].detail

        await service.run_job(PRUNE_JOB_ID)
        assert [e.entry.guid for e in store.iter_entries()] == ["new"]
        await service.run_job(PRUNE_JOB_ID)  # nothing more: no second line

    [line] = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "prune"]
    assert line.fields["entries"] == 1  # type: ignore[attr-defined]
    assert line.fields["feeds"] == {feed: 1}  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def issue_due_during_a_poll(
    feed_server: FeedServer, tmp_path: Path
) -> AsyncIterator[tuple[Service, Store, asyncio.Task[Any]]]:
    """A poll of a slow feed started at 06:59:45 (it dates what it stores by then), and the
    clock past 07:00, when issue #2 of ``daily`` is due, while the poll still fetches."""
    newsletters = (
        'newsletters:\n  - {name: daily, title: Daily, schedule: "0 7 * * *", subscribers: [a@example.org]}\n'
    )
    loaded = load_config(
        write_config(tmp_path / "feeds.yaml", [feed_server.url("/slow?delay=1.5")], newsletters)
    )
    clock = ManualClock(utc(2025, 8, 19, 6, 59, 45))
    with Store.open(loaded.database_url) as store:
        record_issue(store, "daily", utc(2025, 8, 18, 7), status="empty")
        service = Service(loaded, store, clock=clock)
        polling = asyncio.create_task(service.run_job(POLL_JOB_ID))
        await asyncio.sleep(0.5)  # the fetch is under way
        clock.advance(timedelta(seconds=30))
        yield service, store, polling


@pytest.mark.anyio
async def test_an_issue_due_while_a_poll_is_fetching_waits_for_what_that_poll_stores(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    # Frozen at once, the issue would miss what the poll stores, and so would every later
    # one: it is dated before the issue's end.
    async with issue_due_during_a_poll(feed_server, tmp_path) as (service, store, polling):
        await service.run_job(NEWSLETTER_JOB_PREFIX + "daily")
        await polling
        latest = store.latest_issue("daily")
        assert latest is not None
        assert (latest.number, latest.status, latest.stories) == (2, "done", 1)
    [eml] = (tmp_path / "newsletters" / "outbox").glob("*.eml")
    assert "First story" in eml.read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_a_stop_while_an_issue_waits_for_a_poll_freezes_no_issue(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    async with issue_due_during_a_poll(feed_server, tmp_path) as (service, store, polling):
        issue_job = asyncio.create_task(service.run_job(NEWSLETTER_JOB_PREFIX + "daily"))
        await asyncio.sleep(0.1)  # the issue waits for the poll
        await service.stop()  # SIGTERM
        assert issue_job.done()  # the stop waited for it
        await asyncio.gather(polling, issue_job, return_exceptions=True)
        latest = store.latest_issue("daily")
        assert latest is not None
        assert latest.number == 1  # nothing frozen from a poll cut short


async def start_with_a_daily_newsletter(feed_server: FeedServer, tmp_path: Path) -> DigestRun:
    """The service started on /news.xml and a never-sent daily newsletter to one reader
    (no smtp: the outbox); the one issue its start sent."""
    newsletters = (
        'newsletters:\n  - {name: daily, title: Daily, schedule: "0 7 * * *", subscribers: [a@example.org]}\n'
    )
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [feed_server.url("/news.xml")], newsletters))
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=ManualClock(datetime.now(UTC)))
        [run] = await service.start()
    return run


@pytest.mark.anyio
async def test_at_start_the_first_poll_comes_before_a_first_issue(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    feed_server.add_feed("/news.xml", rss(("a", "Alpha"), ("b", "Bravo")), etag='"v1"')
    run = await start_with_a_daily_newsletter(feed_server, tmp_path)
    assert run.status == "done"  # not "empty": the issue holds what the first poll found
    assert run.sent == 1
    assert len(list((tmp_path / "newsletters" / "outbox").glob("*.eml"))) == 1


@pytest.mark.anyio
async def test_without_a_mail_server_the_log_says_written_to_the_outbox_not_sent(
    feed_server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing was sent: the message is a file in newsletters/outbox/ (the log said "1 sent").
    caplog.set_level(logging.INFO, logger="aggregator")
    feed_server.add_feed("/news.xml", rss(("a", "Alpha")), etag='"v1"')
    run = await start_with_a_daily_newsletter(feed_server, tmp_path)
    assert run.outbox == tmp_path / "newsletters" / "outbox"
    [line] = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "digest"]
    assert "1 message written to " in line.getMessage()
    assert " sent" not in line.getMessage()
    assert line.fields["outbox"] == str(tmp_path / "newsletters" / "outbox")  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_at_start_a_failing_publish_is_reported_and_the_issue_still_goes_out(
    feed_server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feed_server.add_feed("/news.xml", rss(("a", "Alpha")))
    newsletters = 'newsletters:\n  - {name: daily, title: Daily, schedule: "0 7 * * *"}\n'
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [feed_server.url("/news.xml")], newsletters))
    (tmp_path / "public").write_text("a file where the output folder should be")
    issues = RecordingIssues()
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=ManualClock(datetime.now(UTC)), run_issue=issues)
        await service.start()
        assert store.entry_counts()[feed_server.url("/news.xml")] == 1  # the poll's work is kept
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("poll cycle failed")]
    assert failed
    assert "public" in failed[0]
    assert [name for name, _, _ in issues.runs] == ["daily"]  # the catch-up after it still ran


# --------------------------------------------------------------------------- real APScheduler


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("new_schedule", "edited", "next_issue"),
    [
        (
            'schedule: "0 9 * * *"',
            datetime(2025, 8, 19, 10, tzinfo=UTC),
            datetime(2025, 8, 20, 9, tzinfo=UTC),
        ),
        (  # the commonest edit: a time zone added to a schedule that was in UTC
            'schedule: "0 7 * * *", timezone: America/New_York',
            datetime(2025, 8, 19, 12, tzinfo=UTC),
            datetime(2025, 8, 20, 11, tzinfo=UTC),
        ),
    ],
)
async def test_a_schedule_changed_after_todays_issue_sends_no_second_one_today(
    tmp_path: Path, new_schedule: str, edited: datetime, next_issue: datetime
) -> None:
    # The new schedule's time earlier today counted as missed: a second issue within a
    # minute of the edit, while running and after a restart alike.
    config = tmp_path / "feeds.yaml"
    loaded = load_config(
        write_config(config, [], 'newsletters:\n  - {name: daily, title: D, schedule: "0 7 * * *"}\n')
    )
    clock = ManualClock(datetime(2025, 8, 18, 6, tzinfo=UTC))
    issues = RecordingIssues()
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=clock, run_issue=issues)
        await service.catch_up()  # the first issue, at start
        clock.set(datetime(2025, 8, 19, 7, tzinfo=UTC))
        await service.run_job(NEWSLETTER_JOB_PREFIX + "daily")  # today's
        clock.set(edited)
        service.apply_config(
            load_config(
                write_config(config, [], f"newsletters:\n  - {{name: daily, title: D, {new_schedule}}}\n")
            )
        )
        clock.advance(timedelta(minutes=1))
        await service.run_job(RETRY_JOB_ID)
        restarted = Service(service.loaded, store, clock=clock, run_issue=issues)
        await restarted.catch_up()
        assert [when for _name, _for, when in issues.runs] == [
            datetime(2025, 8, 18, 6, tzinfo=UTC),
            datetime(2025, 8, 19, 7, tzinfo=UTC),
        ]
        clock.set(next_issue)  # the new schedule's first time after the edit
        await restarted.run_job(NEWSLETTER_JOB_PREFIX + "daily")
        assert issues.runs[-1][2] == next_issue


# One daily newsletter to one reader, at the schedule given (for the schedule-change tests).
DAILY_TO_ONE = 'newsletters:\n  - {name: daily, title: D, schedule: "%s", subscribers: [a@example.org]}\n'


def issues_sent(loaded: LoadedConfig, store: Store, when: datetime, outbox: mail.Transport) -> list[int]:
    """The numbers of the issues ``run_due_newsletters`` (as ``run --once``) sends at ``when``."""
    return [o.number for o in run_due_newsletters(loaded, store, when, transport=outbox)]


def test_run_once_after_a_schedule_change_waits_for_the_new_schedule(tmp_path: Path) -> None:
    # `aggregator run --once` from cron asks the newsletters module: the same rule.
    config = tmp_path / "feeds.yaml"
    loaded = load_config(write_config(config, [], DAILY_TO_ONE % "0 7 * * *"))
    outbox = mail.Outbox(tmp_path / "outbox")
    with Store.open(loaded.database_url) as store:
        assert issues_sent(loaded, store, datetime(2025, 8, 19, 7, 1, tzinfo=UTC), outbox) == [1]
        moved = load_config(write_config(config, [], DAILY_TO_ONE % "0 9 * * *"))
        assert issues_sent(moved, store, datetime(2025, 8, 19, 10, tzinfo=UTC), outbox) == []
        assert issues_sent(moved, store, datetime(2025, 8, 20, 9, 1, tzinfo=UTC), outbox) == [2]


def test_a_schedule_change_holds_back_no_issue_that_was_due(tmp_path: Path) -> None:
    # Dated when first seen, a change cancelled issues: one the old schedule had due and
    # missed (the machine was off), and one of the new schedule's first time when the
    # change was read only after it (an hourly `run --once`).
    config = tmp_path / "feeds.yaml"
    loaded = load_config(write_config(config, [], DAILY_TO_ONE % "0 7 * * *"))
    outbox = mail.Outbox(tmp_path / "outbox")
    with Store.open(loaded.database_url) as store:
        assert issues_sent(loaded, store, datetime(2025, 8, 18, 7, 1, tzinfo=UTC), outbox) == [1]
        # Off over Tuesday 07:00; at 11:00 the time becomes 08:00: Tuesday still gets its issue.
        moved = load_config(write_config(config, [], DAILY_TO_ONE % "0 8 * * *"))
        assert issues_sent(moved, store, datetime(2025, 8, 19, 11, tzinfo=UTC), outbox) == [2]
        # At 07:30 on Wednesday 08:00 becomes 07:45; cron's run at 08:05 is the first to read it.
        again = write_config(config, [], DAILY_TO_ONE % "45 7 * * *")
        edit = datetime(2025, 8, 20, 7, 30, tzinfo=UTC).timestamp()
        os.utime(again, (edit, edit))
        assert issues_sent(load_config(again), store, datetime(2025, 8, 20, 8, 5, tzinfo=UTC), outbox) == [3]


def test_status_records_nothing_it_reads(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    daily = 'newsletters:\n  - {name: daily, title: D, schedule: "%s"}\n'
    loaded = load_config(write_config(config, [], daily % "0 7 * * *"))
    with Store.open(loaded.database_url) as store:
        run_due_newsletters(
            loaded, store, datetime(2025, 8, 18, 7, 1, tzinfo=UTC), transport=mail.Outbox(tmp_path)
        )
        recorded = store.newsletter_schedule("daily")
        moved = load_config(write_config(config, [], daily % "0 9 * * *"))
        next_runs(moved, store, datetime(2025, 8, 19, 10, tzinfo=UTC))
        assert store.newsletter_schedule("daily") == recorded


@pytest.mark.anyio
async def test_after_the_machine_slept_missed_runs_collapse_into_one_issue(tmp_path: Path) -> None:
    newsletters = 'newsletters:\n  - {name: daily, title: Daily, schedule: "0 7 * * *"}\n'
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [], newsletters))
    issues = RecordingIssues()
    real_now = datetime.now(UTC)
    trigger = newsletter_trigger(loaded.config.newsletters[0])
    latest = last_fire_time(trigger, real_now)
    assert latest is not None
    with Store.open(loaded.database_url) as store:
        record_issue(store, "daily", latest - timedelta(days=3))
        service = Service(loaded, store, run_issue=issues)
        scheduler = AsyncIOScheduler(timezone=UTC)
        service.install(scheduler)
        scheduler.start(paused=True)
        job = scheduler.get_job(NEWSLETTER_JOB_PREFIX + "daily")
        assert (job.coalesce, job.max_instances) == (True, 1)
        assert job.misfire_grace_time >= 24 * 3600
        # As if the event loop slept through three scheduled times.
        scheduler.modify_job(job.id, next_run_time=latest - timedelta(days=2, seconds=1))
        scheduler.resume()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if issues.runs:
                break
        await asyncio.sleep(0.2)
        scheduler.shutdown(wait=False)
    assert [(name, when) for name, when, _ in issues.runs] == [("daily", latest)]


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait (in the event loop) for ``predicate`` to hold; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.anyio
async def test_a_feed_that_moved_permanently_is_a_log_event_naming_the_line_to_change(
    feed_server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The line was only a message ("notice: feeds.yaml:3: ... has moved permanently to ..."):
    # a log processor had no event, no feed, no new URL and no line to act on.
    caplog.set_level(logging.INFO, logger="aggregator.service")
    moved = feed_server.url("/moved").replace("//", "//reader:s3cret@")  # 301 to /feed.xml
    config = write_config(tmp_path / "feeds.yaml", [feed_server.url("/feed.xml"), moved])
    loaded = load_config(config)
    clock = ManualClock(utc(2025, 8, 19, 9))
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=clock)
        for _ in range(3):  # a permanent redirect is adopted once seen three times in a row
            await service.run_job(POLL_JOB_ID)
            clock.advance(timedelta(hours=2))
    lines = [
        json.loads(JsonFormatter().format(r)) for r in caplog.records if "moved permanently" in r.getMessage()
    ]
    assert len(lines) == 1
    (line,) = lines
    assert line["message"].startswith("notice: feeds.yaml:4: ")  # the human message is kept
    assert "update the url" in line["message"]
    assert {k: line[k] for k in ("event", "feed", "moved_to", "file", "line")} == {
        "event": "feed_moved",
        "feed": feed_server.url("/moved").replace("//", "//reader:***@"),  # as configured, no password
        "moved_to": feed_server.url("/feed.xml").replace("//", "//reader:***@"),  # same origin
        "file": str(config),
        "line": 4,
    }


@pytest.mark.anyio
async def test_a_feed_added_while_the_poll_job_runs_is_polled_when_it_ends(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    # APScheduler skips a job that is still running without calling it: the poll asked for
    # by the edit was lost, and the new feed waited for the next tick (a minute).
    slow = feed_server.url("/slow?delay=1.5")
    feed_server.add_feed("/b.xml", rss(("b", "Bravo")))
    path = write_config(tmp_path / "feeds.yaml", [slow])
    loaded = load_config(path)
    stopping = asyncio.Event()

    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, run_issue=RecordingIssues())
        task = asyncio.create_task(serve(service, None, stopping=stopping))
        try:
            await until(lambda: feed_server.count("/slow") == 1 and not service._polling, 10)
            assert service.scheduler is not None
            moment = datetime.now(UTC)  # the slow feed due again, and its poll job started
            store.save_poll(
                replace(store.feed_state(slow), next_check=moment - timedelta(minutes=1)), [], moment
            )
            service.scheduler.modify_job(POLL_JOB_ID, next_run_time=datetime.now(UTC))
            await until(lambda: feed_server.count("/slow") == 2, 5)
            service.apply_config(load_config(write_config(path, [slow, feed_server.url("/b.xml")])))
            await until(lambda: feed_server.count("/b.xml") == 1, 6)
        finally:
            stopping.set()
            await task


@pytest.mark.anyio
async def test_config_edits_take_effect_while_running_and_a_bad_edit_is_survived(
    feed_server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aggregator.service")
    for name in ("a", "b", "c"):
        feed_server.add_feed(f"/{name}.xml", rss((name, name.upper())))
    a, b, c = (feed_server.url(f"/{n}.xml") for n in "abc")
    daily = 'newsletters:\n  - {name: daily, title: Daily, schedule: "0 7 * * *"}\n'
    path = write_config(tmp_path / "feeds.yaml", [a], daily)
    watcher = ConfigWatcher(path)
    loaded = watcher.load()
    stopping = asyncio.Event()

    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, run_issue=RecordingIssues())
        task = asyncio.create_task(serve(service, watcher, watch_interval=0.1, stopping=stopping))
        try:
            await until(lambda: feed_server.count("/a.xml") == 1)
            assert service.scheduler is not None
            # Make a due again: only its removal from feeds.yaml should keep it from being polled.
            moment = datetime.now(UTC)
            store.save_poll(
                replace(store.feed_state(a), next_check=moment - timedelta(minutes=1)), [], moment
            )

            paris = (
                "newsletters:\n"
                '  - {name: daily, title: Daily, schedule: "30 8 * * *", timezone: Europe/Paris}\n'
            )
            write_config(path, [b], paris)
            await until(lambda: feed_server.count("/b.xml") == 1)
            await asyncio.sleep(0.2)
            assert feed_server.count("/a.xml") == 1  # removed: not polled although due
            job = service.scheduler.get_job(NEWSLETTER_JOB_PREFIX + "daily")
            assert str(job.trigger) == "30 8 * * * (Europe/Paris)"
            assert job.next_run_time.tzinfo is not None

            # A typo: reported with its line, and the process keeps the last good config.
            path.write_text(path.read_text().replace("interval: 1h", "intervall: 1h"), encoding="utf-8")
            await until(
                lambda: any("still running on the last good config" in r.message for r in caplog.records)
            )
            problem = next(
                r for r in caplog.records if getattr(r, "fields", {}).get("event") == "config_problem"
            )
            assert f"{path}:3:" in problem.message
            assert "intervall" in problem.message
            assert [f.url for f in service.loaded.config.feeds] == [b]

            # A duration too large to keep: it raised OverflowError, which ended the watching
            # silently, so that no later edit was ever applied.
            caplog.clear()
            path.write_text(
                path.read_text().replace("intervall: 1h", "interval: 99999999999h"), encoding="utf-8"
            )
            await until(
                lambda: any("still running on the last good config" in r.message for r in caplog.records)
            )
            assert any("bad duration '99999999999h'" in r.message for r in caplog.records)

            write_config(path, [b, c], paris)  # fixed, and a feed added
            await until(lambda: feed_server.count("/c.xml") == 1)
            assert not task.done()
        finally:
            stopping.set()
            await task


@pytest.mark.anyio
async def test_an_edit_of_the_database_keeps_polling_the_database_in_use(
    feed_server: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The edit was refused in words ("restart the scheduler to use it") but not in deeds: the
    # ingest and sending locks were taken on the new database, so with one not reachable yet
    # every poll cycle and every issue failed until the restart.
    feed_server.add_feed("/b.xml", rss(("b", "Bravo")))
    a, b = feed_server.url("/feed.xml"), feed_server.url("/b.xml")
    path = write_config(tmp_path / "feeds.yaml", [a])
    watcher = ConfigWatcher(path)
    loaded = watcher.load()
    stopping = asyncio.Event()

    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, run_issue=RecordingIssues())
        task = asyncio.create_task(serve(service, watcher, watch_interval=0.1, stopping=stopping))
        try:
            await until(lambda: feed_server.count("/feed.xml") == 1 and not service._polling)
            text = write_config(path, [a, b]).read_text(encoding="utf-8")
            moved = "database: postgresql+psycopg://postgres@127.0.0.1:9/not_yet\n"
            path.write_text(text.replace(text[text.index("database:") :], moved), encoding="utf-8")
            await until(lambda: feed_server.count("/b.xml") == 1 and not service._polling)
            assert any("the database changed" in r.message for r in caplog.records)
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert store.entry_counts().get(b) == 1
            assert service.loaded.database_url == loaded.database_url
        finally:
            stopping.set()
            await task


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_schema_url()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_stop_waits_for_the_retry_job_to_end_its_read(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A stop waited for polls and digests but not for the retry job: asyncio.run then cancelled
    # it in the middle of a read, and APScheduler logged an ERROR with a traceback on a clean
    # stop (every lost PostgreSQL lock did it: the poll and retry jobs share their tick).
    letters = 'newsletters:\n  - {name: daily, title: Daily, schedule: "0 7 * * *", timezone: UTC}\n'
    path = write_config(tmp_path / "feeds.yaml", [], letters)
    text = path.read_text(encoding="utf-8")
    path.write_text(text[: text.index("database:")] + f"database: {postgres_url}\n", encoding="utf-8")
    loaded = load_config(path)
    engine = sa.create_engine(postgres_url)
    # The lock is held in the blocker's transaction; who waits for it is asked on a connection
    # of its own, a transaction per question: pg_stat_activity is read once a transaction,
    # and a session the job opened after that first read was never seen (a flaky failure).
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(engine.dispose)  # last, also when an assertion fails: no connection left to GC
        store = cleanup.enter_context(Store.open(loaded.database_url))
        blocker = cleanup.enter_context(engine.connect())
        watcher = cleanup.enter_context(engine.connect().execution_options(isolation_level="AUTOCOMMIT"))
        record_issue(store, "daily", datetime.now(UTC))  # sent: nothing waits, but the job reads
        service = Service(loaded, store, run_issue=RecordingIssues(), poll_tick=timedelta(seconds=0.2))
        stopping = asyncio.Event()
        task = asyncio.create_task(serve(service, None, stopping=stopping))
        try:
            await asyncio.sleep(0.5)  # the catch-up at start is done
            blocker.execute(sa.text("LOCK TABLE newsletter_issues IN ACCESS EXCLUSIVE MODE"))
            me = blocker.execute(sa.text("SELECT pg_backend_pid()")).scalar()
            waiting = sa.text("SELECT count(*) FROM pg_stat_activity WHERE :me = ANY(pg_blocking_pids(pid))")
            deadline = time.monotonic() + 5
            while not watcher.execute(waiting, {"me": me}).scalar():
                assert time.monotonic() < deadline, "the retry job never read"
                await asyncio.sleep(0.05)
            stopping.set()
            await asyncio.sleep(1)
            returned_while_reading = task.done()
        finally:
            blocker.rollback()  # the read goes on
            stopping.set()
            await asyncio.wait_for(task, 10)
    assert not returned_while_reading
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --------------------------------------------------------------------------- real processes


class Scheduler:
    """``python scheduler.py --log-format json -v`` in a subprocess; its log events read by a thread."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCHEDULER), "--config", str(config), "--log-format", "json", "-v"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=config.parent,
            env={**os.environ, **(env or {})},
        )
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    event = {"event": "not_json", "message": line}
                with self._lock:
                    self.events.append(event)

    def seen(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]

    def wait_for(self, predicate: Callable[[], bool], seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            if self.proc.poll() is not None:
                self._reader.join(2)
                pytest.fail(f"scheduler exited with {self.proc.returncode}: {self.events}")
            assert time.monotonic() < deadline, f"timed out; events: {self.events}"
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM, seconds: float = 10.0) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(seconds)
        self._reader.join(2)
        return code

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no cleanup of any kind
        self.proc.wait(10)
        self._reader.join(2)


@pytest.fixture
def processes() -> Iterator[list[Scheduler]]:
    started: list[Scheduler] = []
    yield started
    for process in started:
        if process.proc.poll() is None:
            process.kill()


def test_a_second_scheduler_on_the_same_database_says_so_and_exits_non_zero(
    feed_server: FeedServer, tmp_path: Path, processes: list[Scheduler]
) -> None:
    config = write_config(tmp_path / "feeds.yaml", [feed_server.url("/feed.xml")])
    first = Scheduler(config)
    processes.append(first)
    first.wait_for(lambda: bool(first.seen("poll_cycle")))
    second = subprocess.run(
        [sys.executable, str(SCHEDULER), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 3
    assert "another scheduler is already running on this database" in second.stderr
    assert f"pid {first.proc.pid}" in second.stderr
    assert feed_server.count("/feed.xml") == 1  # the second one polled nothing
    assert first.stop() == 0
    assert first.seen("stopped")
    # In the same process too: the lock is a plain context manager.
    url = load_config(config).database_url
    with run_lock(url), pytest.raises(SchedulerAlreadyRunning), run_lock(url):
        pass


def test_sighup_reads_feeds_yaml_at_once_and_a_second_sigterm_while_stopping_still_exits_0(
    feed_server: FeedServer, tmp_path: Path, processes: list[Scheduler]
) -> None:
    # SIGHUP (`systemctl reload`) had its default action: the process died mid-poll.  And a
    # second SIGTERM that came once the handlers were gone killed it with status 143.
    feed_server.add_feed("/b.xml", rss(("b", "Bravo")))
    config = write_config(tmp_path / "feeds.yaml", [feed_server.url("/feed.xml")])
    first = Scheduler(config)
    processes.append(first)
    first.wait_for(lambda: bool(first.seen("poll_cycle")))
    write_config(config, [feed_server.url("/feed.xml"), feed_server.url("/b.xml")])
    first.proc.send_signal(signal.SIGHUP)
    first.wait_for(lambda: feed_server.count("/b.xml") == 1, seconds=10)
    assert first.proc.poll() is None
    assert first.seen("config_reloaded")
    first.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    assert first.stop(signal.SIGTERM) == 0
    assert first.seen("stopped")


@pytest.mark.anyio
async def test_a_scheduler_that_lost_its_lock_stops_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # (The lock's probe is tested against PostgreSQL in test_runlock.) Running on without it,
    # a second scheduler would poll and send alongside; stopping lets the supervisor restart it.
    loaded = load_config(write_config(tmp_path / "feeds.yaml", []))
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, lock_held=lambda: False)
        await asyncio.wait_for(serve(service, None, stopping=asyncio.Event()), timeout=10)
    assert service.lock_lost
    assert any("scheduler lock" in r.message and "was lost" in r.message for r in caplog.records)


def test_a_feeds_yaml_missing_for_a_moment_is_looked_at_twice_like_any_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Editors that move the old file away before writing the new one made a spurious ERROR
    # and a reload of the same config.
    path = write_config(tmp_path / "feeds.yaml", ["https://example.org/feed.xml"])
    watcher = ConfigWatcher(path)
    watcher.load()
    text = path.read_text()
    path.unlink()
    assert watcher.check() is None  # gone for one look: maybe mid-save
    path.write_text(text)
    assert watcher.check() is None  # back, unchanged: nothing to do
    assert watcher.check() is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    path.unlink()
    watcher.check()
    watcher.check()  # still gone at the second look: that is worth saying
    assert any("cannot read the config" in r.message for r in caplog.records)


def test_the_retry_job_waiting_behind_a_long_poll_is_not_a_warning() -> None:
    quiet = _QuietPollSkips()
    for job_id in (POLL_JOB_ID, RETRY_JOB_ID):
        job = type("Job", (), {"id": job_id})()
        record = logging.LogRecord(
            "apscheduler",
            logging.WARNING,
            __file__,
            1,
            'Execution of job "%s" skipped: maximum number of running instances reached (1)',
            (job,),
            None,
        )
        assert not quiet.filter(record), job_id


def test_kill_9_during_a_poll_loses_nothing_stored_and_sigterm_cancels_a_hanging_fetch(
    feed_server: FeedServer, tmp_path: Path, processes: list[Scheduler]
) -> None:
    fast = []
    for n in range(6):
        feed_server.add_feed(f"/f{n}.xml", rss(*((f"f{n}-{i}", f"Story {n}.{i}") for i in range(3))))
        fast.append(feed_server.url(f"/f{n}.xml"))
    hanging = feed_server.url("/trickle")  # headers, then a byte every 50 ms: never done
    config = write_config(tmp_path / "feeds.yaml", [*fast, hanging])

    first = Scheduler(config)
    processes.append(first)
    first.wait_for(lambda: len(first.seen("feed_polled", status="ok")) == len(fast))
    reported = {e["feed"]: e["new_entries"] for e in first.seen("feed_polled", status="ok")}
    assert feed_server.count("/trickle") == 1  # still in flight
    first.kill()

    with Store.open(load_config(config).database_url) as store:
        counts = store.entry_counts()
        assert all(counts[url] == reported[url] == 3 for url in fast)
        assert store.feed_state(hanging).last_fetch is None  # never reported, never stored

    second = Scheduler(config)  # the kernel released the lock with the killed process
    processes.append(second)
    second.wait_for(lambda: feed_server.count("/trickle") == 2)
    began = time.monotonic()
    assert second.stop(signal.SIGTERM) == 0
    assert time.monotonic() - began < 5  # the hanging fetch was cancelled, not waited for
    assert second.seen("stopped")
    assert not any(e["new_entries"] for e in second.seen("feed_polled"))  # nothing stored twice
    with Store.open(load_config(config).database_url) as store:
        assert all(store.entry_counts()[url] == 3 for url in fast)


def test_a_digest_stopped_by_a_server_down_logs_every_reader_left(
    tmp_path: Path, processes: list[Scheduler]
) -> None:
    # "1 left" (the reader to retry) while two more had not been tried at all.
    subscribers = ["a@example.com", "b@example.com", "c@example.com"]
    newsletters = (
        "newsletters:\n  - name: daily\n    title: Daily\n"
        f'    schedule: "* * * * *"\n    subscribers: [{", ".join(subscribers)}]\n'
    )
    extra = "smtp:\n  host: 127.0.0.1\n  port: 9\n"  # nothing listens there
    feed, moment = "http://127.0.0.1:9/feed.xml", datetime.now(UTC)  # configured, down: stories stay
    config = write_config(tmp_path / "feeds.yaml", [feed], newsletters, extra)
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        entry = Entry(guid="s1", url="http://127.0.0.1/s1", canonical_url=None, title="Summit", text="Talks.")
        store.save_poll(FeedState(feed), [entry], moment)
        store.save_stories([("story-1", "Summit", ())], [(entry_id(feed, "s1"), "story-1")], moment)
    scheduler = Scheduler(config, {"AGGREGATOR_SECRET_KEY": "k" * 32})
    processes.append(scheduler)
    scheduler.wait_for(lambda: bool(scheduler.seen("digest")))
    assert scheduler.stop(signal.SIGTERM) == 0
    assert scheduler.seen("digest")[0]["remaining"] == len(subscribers)


def test_kill_9_and_sigterm_during_a_digest_then_restart_nobody_gets_a_second_copy(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    processes: list[Scheduler],
) -> None:
    handler = Handler(on_data=lambda count: time.sleep(0.1))  # a slow server: 0.1 s a message
    smtp = start_server(handler, tls_files)
    try:
        subscribers = [f"reader{i:02d}@example.com" for i in range(20)]
        newsletters = (
            "newsletters:\n  - name: daily\n    title: Daily\n"
            f'    schedule: "* * * * *"\n    subscribers: [{", ".join(subscribers)}]\n'
        )
        extra = (
            f"smtp:\n  host: 127.0.0.1\n  port: {smtp.port}\n  ca_file: {smtp.cafile}\n"
            "  username_env: TEST_SMTP_USER\n  password_env: TEST_SMTP_PASSWORD\n  rate_per_minute: 100000\n"
        )
        feed = "http://127.0.0.1:9/feed.xml"  # configured (a removed feed's stories are not sent)
        config = write_config(tmp_path / "feeds.yaml", [feed], newsletters, extra)
        env = {"TEST_SMTP_USER": USER, "TEST_SMTP_PASSWORD": PASSWORD, "AGGREGATOR_SECRET_KEY": "k" * 32}
        moment = datetime.now(UTC)
        loaded = load_config(config)
        with Store.open(loaded.database_url) as store:
            # It ran before the machine went down (an issue with nothing new: no email).
            earlier = moment - timedelta(minutes=3)
            outbox = mail.Outbox(tmp_path / "outbox")
            assert run_due_newsletters(loaded, store, earlier, transport=outbox)[0].status == "empty"
            entry = Entry(
                guid="s1", url="http://127.0.0.1/s1", canonical_url=None, title="Summit", text="Talks."
            )
            store.save_poll(FeedState(feed), [entry], moment)
            store.save_stories([("story-1", "Summit", ())], [(entry_id(feed, "s1"), "story-1")], moment)

        first = Scheduler(config, env)  # catches up the missed issue at start
        processes.append(first)
        first.wait_for(lambda: len(handler.messages) >= 5)
        first.kill()

        second = Scheduler(config, env)
        processes.append(second)
        second.wait_for(lambda: len(handler.messages) >= 10)
        assert second.stop(signal.SIGTERM) == 0  # stops between recipients
        stopped = second.seen("digest", status="stopped")
        assert stopped
        assert stopped[0]["remaining"] > 0

        third = Scheduler(config, env)
        processes.append(third)
        third.wait_for(lambda: bool(third.seen("digest", status="done")))
        assert third.stop() == 0

        received = Counter(rcpt for _, rcpts, _ in handler.messages for rcpt in rcpts)
        assert max(received.values()) == 1  # nobody got a second copy
        with Store.open(load_config(config).database_url) as store:
            number = next(i.number for i in store.issues("daily") if i.stories)
            rows = {d.recipient: d.status for d in store.deliveries("daily", number)}
        assert set(rows) == set(subscribers)
        # Killed during DATA, a message may or may not have arrived: never sent again.
        assert set(rows.values()) <= {"sent", "uncertain"}
        assert {r for r, s in rows.items() if s == "sent"} <= set(received)
        assert len(received) >= len(subscribers) - 1
    finally:
        smtp.controller.stop()


# --------------------------------------------------------------------------- sending, retries


@contextlib.contextmanager
def digest_setup(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture's value, passed on
    monkeypatch: pytest.MonkeyPatch,
    handler: Handler,
    names: tuple[str, ...] = ("daily",),
) -> Iterator[tuple[Service, ManualClock, Store]]:
    """Newsletters at 07:00 UTC, each with one reader, that ran before, a story to send, a real
    SMTP server; the clock at 07:00, the fire time."""
    smtp = start_server(handler, tls_files)
    monkeypatch.setenv("TEST_SMTP_USER", USER)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", "k" * 32)
    letters = "newsletters:\n" + "".join(
        f'  - {{name: {n}, title: {n.title()}, schedule: "0 7 * * *", timezone: UTC,'
        f" subscribers: [{n}@example.com]}}\n"
        for n in names
    )
    extra = (
        f"smtp:\n  host: 127.0.0.1\n  port: {smtp.port}\n  ca_file: {smtp.cafile}\n"
        "  username_env: TEST_SMTP_USER\n  password_env: TEST_SMTP_PASSWORD\n  rate_per_minute: 100000\n"
    )
    feed = "http://127.0.0.1:9/feed.xml"  # configured (a removed feed's stories are not sent)
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [feed], letters, extra))
    fire = utc(2026, 12, 7, 7)
    try:
        with Store.open(loaded.database_url) as store:
            outbox = mail.Outbox(tmp_path / "outbox")
            # Each ran the day before (nothing new then: no email), so 07:00 today is due.
            assert {
                o.status
                for o in run_due_newsletters(loaded, store, fire - timedelta(days=1), transport=outbox)
            } == {"empty"}
            entry = Entry(
                guid="s1", url="http://127.0.0.1/s1", canonical_url=None, title="Summit", text="Talks."
            )
            store.save_poll(FeedState(feed), [entry], fire - timedelta(hours=1))
            store.save_stories([("story-1", "Summit", ())], [(entry_id(feed, "s1"), "story-1")], fire)
            clock = ManualClock(fire)
            yield Service(loaded, store, clock=clock), clock, store
    finally:
        smtp.controller.stop()


def delivery_status(store: Store, name: str) -> str:
    latest = store.latest_issue(name)
    assert latest is not None
    (row,) = store.deliveries(name, latest.number)
    return row.status


@pytest.mark.anyio
async def test_a_delivery_the_server_put_off_is_retried_when_its_time_comes(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = Handler(data_replies=["451 4.3.0 try again later"])
    with digest_setup(tmp_path, tls_files, monkeypatch, handler) as (service, clock, store):
        await service.run_newsletter("daily")
        assert delivery_status(store, "daily") == "retry"
        clock.advance(timedelta(minutes=2))
        await service.run_job(RETRY_JOB_ID)  # not yet: the first retry waits 5 minutes
        assert (delivery_status(store, "daily"), len(handler.messages)) == ("retry", 0)
        clock.advance(timedelta(minutes=4))
        await service.run_job(RETRY_JOB_ID)  # not the next day's issue: now
        assert (delivery_status(store, "daily"), len(handler.messages)) == ("sent", 1)


@pytest.mark.anyio
async def test_the_scheduler_logs_the_issue_number_readers_see_not_the_stores(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The day before had nothing new (an empty issue, no email): today's is #1 for readers,
    # and the log line (and `status`) must say #1 too, not the store's key 2.
    handler = Handler()
    with digest_setup(tmp_path, tls_files, monkeypatch, handler) as (service, clock, _store):
        [run] = await service.run_newsletter("daily")
        clock.advance(timedelta(days=1))  # nothing new since: an empty issue, no number to log
        [quiet] = await service.run_newsletter("daily")
    [(_, _, data)] = handler.messages
    sent = email.message_from_bytes(data, policy=policy.default)
    assert ".1." in sent["Message-ID"]
    assert (run.status, run.issue) == ("done", 1)
    assert (quiet.status, quiet.issue) == ("empty", None)


@pytest.mark.anyio
async def test_two_newsletters_due_at_the_same_minute_are_both_sent(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = Handler(on_data=lambda count: time.sleep(0.3))  # slow: the two jobs overlap
    with digest_setup(tmp_path, tls_files, monkeypatch, handler, ("daily", "morning")) as (service, _, store):
        await asyncio.gather(service.run_newsletter("daily"), service.run_newsletter("morning"))
        assert (delivery_status(store, "daily"), delivery_status(store, "morning")) == ("sent", "sent")
    assert sorted(r for _, rcpts, _ in handler.messages for r in rcpts) == [
        "daily@example.com",
        "morning@example.com",
    ]


@pytest.mark.anyio
async def test_an_issue_skipped_while_another_process_sent_goes_out_at_the_next_tick(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = Handler()
    with digest_setup(tmp_path, tls_files, monkeypatch, handler) as (service, clock, store):
        with sending_lock(service.loaded.database_url) as held:  # as `aggregator digest --send` would
            assert held
            await service.run_newsletter("daily")  # its cron job: the lock is taken, so skipped
        assert handler.messages == []
        clock.advance(timedelta(minutes=1))
        await service.run_job(RETRY_JOB_ID)
        assert delivery_status(store, "daily") == "sent"
    assert len(handler.messages) == 1


@pytest.mark.anyio
async def test_an_issue_that_fails_as_a_whole_is_retried_every_quarter_hour_not_every_minute(
    tmp_path: Path,
) -> None:
    newsletters = 'newsletters:\n  - {name: daily, title: Daily, schedule: "0 7 * * *", timezone: UTC}\n'
    loaded = load_config(write_config(tmp_path / "feeds.yaml", [], newsletters))
    attempts: list[datetime] = []

    async def broken(*args: Any, now: datetime, **kwargs: Any) -> tuple[DigestRun, ...]:
        attempts.append(now)
        raise AggregatorError("SMTP password not set: AGGREGATOR_SMTP_PASSWORD")

    clock = ManualClock(utc(2026, 12, 7, 7))
    with Store.open(loaded.database_url) as store:
        record_issue(store, "daily", utc(2026, 12, 6, 7))  # sent yesterday: today's is due
        service = Service(loaded, store, clock=clock, run_issue=broken)
        await service.run_newsletter("daily")  # the cron job: fails
        for _ in range(20):  # twenty retry ticks, a minute apart
            clock.advance(timedelta(minutes=1))
            await service.run_job(RETRY_JOB_ID)
    assert attempts == [utc(2026, 12, 7, 7), utc(2026, 12, 7, 7, 15)]
