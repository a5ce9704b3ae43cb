"""The long-running process: polling on time, digests on schedule, config reloads, clean stops.

In: the path of ``feeds.yaml``, a ``Clock`` and the function that runs one newsletter
issue.  Out: a process that runs until SIGTERM/SIGINT and an exit code
(``run_forever``); ``next_runs`` for ``aggregator status``.

The jobs (APScheduler 3.11, ``AsyncIOScheduler``, in-memory job store)::

    poll                 interval, every POLL_TICK: asks the store which feeds are due and
                         polls those (a feed's cadence is data in the store, not a job); and
                         woken before its tick at the earliest stored next check (below)
    newsletter:NAME      cron, one per newsletter, in the newsletter's own time zone
    newsletter-retries   interval, every POLL_TICK: sends what is waiting, with one read per
                         newsletter when nothing is: deliveries whose retry time has come (a
                         4xx, a server down), and an issue whose time passed unsent (another
                         process held the sending lock then)
    prune                interval, every PRUNE_INTERVAL, the first PRUNE_DELAY after start:
                         removes the entries ``retention.max_age`` says are old
                         (``pipeline.prune_entries``), holding the ingest lock alone so that
                         no poll of any process stores meanwhile; one log line when it
                         removed something

One issue is sent at a time in the process, whichever job asks.  All kinds have
``coalesce=True`` and ``max_instances=1``: after the machine slept, every missed run of a
job collapses into one.  The newsletter job then asks the store what its
latest issue covered and sends at most the one issue of the latest scheduled time
(``schedule.due_issue``), so a restart, a sleep, a manual ``run --once`` and the scheduler all
agree, and nobody gets a burst of stale issues.  At start the same rule catches up an
issue missed while the process was down; a newsletter that has never sent an issue sends
its first at start (as ``run --once`` does), while one added to feeds.yaml as the process
runs starts at its next scheduled time.  A scheduled time of a *changed* schedule that
came before the change is not missed (``newsletters.schedule_counted_from``): moving a
07:00 newsletter to 09:00 at 10:00 sends the next issue tomorrow at 09:00, not a second
one today.

The poll job's tick is a safety net (config edits, new feeds, a clock set back, output
feeds a cycle could not write: a tick with nothing due writes them, ``_republish``): after
each cycle, and on a tick where nothing is due, the job's next run is moved to the earliest
next check of an enabled, non-retired feed when that comes before the tick
(``schedule.poll_wake``), so a feed set to 5 minutes is polled after 5 minutes plus its
jitter, not at the tick after (6 minutes).  Never before that next check: it carries a
server's Retry-After and max-age.  Never sooner than ``POLL_MIN_GAP`` after the end of the
cycle before, so that a thousand feeds whose jittered checks fall seconds apart are polled
in a few cycles a minute, not one cycle each (a lone feed is polled at its next check).  It
is the same job (moved with ``modify_job``), so the wake-up has its coalescing, no-overlap
(``max_instances=1``, ``_poll_again``) and misfire grace; after it the regular tick counts
again from that run.

A daylight-saving change that repeats an hour would make a cron trigger fire twice at
``02:30``; ``schedule.NewsletterTrigger`` skips the second occurrence of a repeated wall time
(for schedules with a fixed hour; hourly ``*`` schedules run by real time), like Vixie cron.

A config watcher re-reads ``feeds.yaml`` every ``WATCH_INTERVAL`` (and at once on SIGHUP):
a valid edit replaces the config and the newsletter jobs and polls soon (a new feed is due
at once); an invalid one is logged with its line numbers and the process keeps the last
good config.

The run lock (``aggregator.runlock``) keeps a second scheduler off the same database.  Stopping:
the first SIGTERM/SIGINT cancels in-flight fetches (a database write in progress
completes: it runs in the pipeline's writer thread) and asks a digest in progress to stop
after the current recipient; a second signal cancels everything.  Once stopped, further
signals are ignored while the process ends (its exit status stays 0).  ``StopRequest`` gives
the commands that run once (``run --once``, ``digest NAME --send``) the same first stop.

Before it starts, the process makes sure it can write the database (``Store.check_writable``): a
read-only one is exit 2 at once, as for ``aggregator poll``, not an error every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from aggregator import mail, newsletters, pipeline, polling, schedule
from aggregator.clock import Clock, SystemClock
from aggregator.config import LoadedConfig, NewsletterConfig, load_config, load_config_text
from aggregator.errors import AggregatorError, ConfigError, ConfigProblem, OutputError, StoreError
from aggregator.runlock import SchedulerAlreadyRunning, ingest_lock, run_lock
from aggregator.store import Store
from aggregator.types import FeedStatus, PollOutcome, PollSummary, PruneReport
from aggregator.urls import without_password

log = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_OK, EXIT_USAGE, EXIT_ALREADY_RUNNING, EXIT_LOCK_LOST = 0, 2, 3, 4

POLL_JOB_ID = "poll"
NEWSLETTER_JOB_PREFIX = "newsletter:"
RETRY_JOB_ID = "newsletter-retries"
PRUNE_JOB_ID = "prune"
# Retention runs once a day; its first run waits a little, so that a start (or a restart
# loop) first polls and catches up on the newsletters.
PRUNE_INTERVAL = timedelta(days=1)
PRUNE_DELAY = timedelta(minutes=5)
# After an issue failed as a whole (not one reader: the transport, the files), the retry
# job leaves its newsletter alone this long, so that a broken setting is one error line in
# a quarter of an hour, not one a minute.
FAILED_ISSUE_PAUSE = timedelta(minutes=15)

# How often the poll job asks the store what is due, at least.  One indexed query.  Between
# ticks the job is woken at the earliest next check (see the module docstring); the tick is
# the safety net for what changes outside a cycle (a config edit, a clock set back).
POLL_TICK = timedelta(seconds=60)
# The shortest time between the end of a poll cycle and an early wake-up of the poll job
# for the next one: feeds due within it are polled by one cycle.  A cycle also
# collapses copies, groups stories and writes the combined feeds, so a thousand feeds with
# jittered checks cost at most 6 cycles a minute, each at most this late.
POLL_MIN_GAP = timedelta(seconds=10)
# The soonest a wake-up is set after the run that sets it (see Service._wake_for).
POLL_WAKE_MARGIN = timedelta(seconds=1)
# A poll tick missed by more than this (the machine slept) is dropped; coalescing
# already turns a burst into one run, and the next tick is at most POLL_TICK away.
POLL_MISFIRE_GRACE = timedelta(minutes=5)
# How often feeds.yaml is looked at.  An edit is applied once two looks agree, so a
# file caught half-written by an editor is not reported as broken.
WATCH_INTERVAL = 1.0


# --------------------------------------------------------------------------- digests


@dataclass(frozen=True, slots=True)
class DigestRun:
    """What one newsletter job did with one issue, for its log line."""

    newsletter: str
    scheduled_for: datetime
    status: str  # the issue's: "done", "empty", "sending" (retries left); or "stopped"
    issue: int | None = None
    sent: int = 0  # the issue's readers who have it, by this run or an earlier one
    failed: int = 0
    remaining: int = 0  # recipients still to try (retries, or left by a stop for the restart)
    outbox: Path | None = None  # where the messages were written, when no mail server is configured
    # Recipients whose connection broke during DATA (or a crash then): they may have the
    # issue and are never sent it again; neither sent nor failed.
    uncertain: tuple[str, ...] = ()
    sent_in_run: int = 0  # of ``sent``, by this run (one resuming a stopped issue sends the rest)


class RunIssue(Protocol):
    """Runs (or resumes) the issue of one newsletter due at ``scheduled_for``.

    ``stop`` is set when the process is stopping: the issue stops after the current
    recipient, and a later call finishes it.  One ``DigestRun`` per issue touched (an
    unfinished issue is resumed before a new one starts).
    """

    async def __call__(
        self,
        loaded: LoadedConfig,
        store: Store,
        newsletter: NewsletterConfig,
        *,
        scheduled_for: datetime,
        now: datetime,
        stop: threading.Event,
    ) -> tuple[DigestRun, ...]: ...


class DigestStopped(mail.TransportStopped):
    """Raised by ``StoppableTransport`` instead of starting a message once the process is stopping."""


class StoppableTransport(mail.Transport):
    """Stops a digest between recipients: refuses to start the next message once ``stop`` is set.

    The refusal happens before the delivery's DATA point (``before_data`` is not called):
    the newsletters module puts the claimed recipient back as it was, ends the issue's run
    as interrupted (``IssueOutcome.interrupted``) and starts no other, and the next run
    sends to everyone left exactly once.  The message in progress when ``stop`` is set is
    finished and recorded first.
    """

    def __init__(self, inner: mail.Transport, stop: threading.Event) -> None:
        self.inner = inner
        self.stop = stop

    def deliver(
        self, sender: str, recipient: str, data: bytes, name: str, before_data: Callable[[], None]
    ) -> mail.DeliveryResult:
        if self.stop.is_set():
            raise DigestStopped(recipient)
        return self.inner.deliver(sender, recipient, data, name, before_data)

    def delivered(self, name: str) -> bool | None:
        return self.inner.delivered(name)

    @property
    def outbox(self) -> Path | None:
        return self.inner.outbox

    def close(self) -> None:
        self.inner.close()


async def send_issue(
    loaded: LoadedConfig,
    store: Store,
    newsletter: NewsletterConfig,
    *,
    scheduled_for: datetime,
    now: datetime,
    stop: threading.Event,
) -> tuple[DigestRun, ...]:
    """The real ``RunIssue``: ``newsletters.run_due_newsletters`` for one newsletter, in a thread.

    Sending is blocking SMTP, so it runs off the event loop; ``stop`` reaches it through
    ``StoppableTransport``, and an issue it interrupted is a ``DigestRun`` "stopped" with
    what this run sent and who is left.
    """

    def send() -> list[newsletters.IssueOutcome]:
        with StoppableTransport(newsletters.default_transport(loaded), stop) as transport:
            return newsletters.run_due_newsletters(
                loaded, store, now, transport=transport, names=[newsletter.name]
            )

    outcomes = await asyncio.to_thread(send)
    return tuple(
        DigestRun(
            newsletter=o.newsletter,
            scheduled_for=scheduled_for,
            status="stopped" if o.interrupted else o.status,
            # An empty issue has no number of its own for readers (it holds the next one's).
            issue=None if o.status == "empty" else o.shown_number,
            sent=o.sent,
            sent_in_run=o.sent_in_run,
            failed=o.failed,
            uncertain=o.uncertain,
            remaining=o.retrying + o.waiting,  # the readers a stopped run left untried too
            outbox=o.outbox,
        )
        for o in outcomes
    )


def _waiting(
    store: Store, newsletter: NewsletterConfig, now: datetime, edited: datetime | None = None
) -> bool:
    """Whether ``newsletter`` has mail to send at ``now`` outside its cron job (see
    ``_next_waiting``).  A newsletter never sent waits for its first time (or the start of the
    process), as before."""
    found = _next_waiting(store, newsletter, now, edited=edited)
    return found is not None and found[0] <= now


def _next_waiting(
    store: Store,
    newsletter: NewsletterConfig,
    now: datetime,
    *,
    edited: datetime | None = None,
    record: bool = True,
) -> tuple[datetime, str] | None:
    """When the retry job next has mail of ``newsletter`` to send, and what: deliveries of the
    issue still sending (new ones now, a retry at its time), or an issue whose scheduled time
    passed without one (now); None when nothing waits."""
    latest = store.latest_issue(newsletter.name)
    if latest is None:
        return None
    if latest.status != "sending":
        counted_from = newsletters.schedule_counted_from(
            store, newsletter, latest, now, edited=edited, record=record
        )
        due = schedule.due_issue(schedule.newsletter_trigger(newsletter), counted_from, now)
        return None if due is None else (now, f"{newsletter.name}: an issue is due")
    waiting = [
        max(now, row.next_attempt) if row.status == "retry" and row.next_attempt is not None else now
        for row in store.deliveries(newsletter.name, latest.number)
        if row.status in ("pending", "retry")
    ]
    if not waiting:
        return None
    noun = "delivery" if len(waiting) == 1 else "deliveries"
    shown = newsletters.shown_number(latest)
    return min(waiting), f"{newsletter.name} #{shown}: {len(waiting)} {noun} waiting"


def covered_until(
    store: Store, newsletter: NewsletterConfig, now: datetime, edited: datetime | None = None
) -> tuple[datetime | None, bool]:
    """After what moment a scheduled time of ``newsletter`` calls for an issue (the end of
    its newest issue, or a later change of its schedule: ``newsletters.schedule_counted_from``),
    and whether that issue is still being sent."""
    latest = store.latest_issue(newsletter.name)
    counted_from = newsletters.schedule_counted_from(store, newsletter, latest, now, edited=edited)
    return counted_from, latest is not None and latest.status == "sending"


# --------------------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", {}))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class _QuietPollSkips(logging.Filter):
    """A poll cycle longer than the tick makes APScheduler warn at every tick, for the poll job
    and for the retry job (which waits for the cycle); that is expected, not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances" not in str(record.msg) or not record.args:
            return True
        job = record.args[0] if isinstance(record.args, tuple) else None
        return getattr(job, "id", None) not in (POLL_JOB_ID, RETRY_JOB_ID)


def configure_logging(log_format: Literal["text", "json"] = "text", *, verbose: bool = False) -> None:
    """Log to stderr: INFO (DEBUG with ``verbose``), as text lines or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # APScheduler logs every job start and end at INFO: one line per cycle is ours to write.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("apscheduler.scheduler").addFilter(_QuietPollSkips())
    for noisy in ("httpx", "httpcore", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _problem_fields(problem: ConfigProblem) -> dict[str, Any]:
    return {
        "file": problem.path,
        "line": problem.line,
        "column": problem.column,
        "location": problem.location,
        "problem": problem.message,
        "hint": problem.hint,
    }


# --------------------------------------------------------------------------- config watcher


class ConfigWatcher:
    """Notices edits of ``feeds.yaml`` by content (a hash), not by mtime alone.

    mtime has a coarse resolution on some file systems and editors that save by rename
    change the inode; a hash of a few kilobytes a second is cheap and sees every change.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._applied: str | None = None
        self._pending: str | None = None

    def load(self) -> LoadedConfig:
        """The config as it is now, remembered as applied; ``ConfigError`` if it is unusable."""
        data, digest = self._read_digest()
        if data is None:
            return load_config(self.path)  # raises ConfigError worded for a missing/unreadable file
        try:
            loaded = load_config_text(data.decode("utf-8"), self.path)
        except UnicodeDecodeError as exc:
            raise ConfigError([ConfigProblem(str(self.path), 0, 0, "", f"not UTF-8 text: {exc}")]) from exc
        self._applied = digest
        return loaded

    def _read_digest(self) -> tuple[bytes | None, str | None]:
        try:
            data = self.path.read_bytes()
        except OSError:
            return None, None
        return data, _digest(data)

    def check(self) -> LoadedConfig | None:
        """A newly edited, valid config; None when nothing changed (or the edit is invalid, logged)."""
        data, digest = self._read_digest()
        seen = digest or _MISSING  # a missing file is a state to confirm like any other
        if digest == self._applied:
            self._pending = None
            return None
        if seen != self._pending:
            # Look once more before acting: the editor may be mid-write, or (renaming the old
            # file away first) between the two files.
            self._pending = seen
            return None
        self._applied, self._pending = digest, None
        if data is None:
            log.error(
                "%s: cannot read the config (moved or deleted?); still running on the last good config",
                self.path,
            )
            return None
        try:
            return load_config_text(data.decode("utf-8"), self.path)
        except UnicodeDecodeError as exc:
            problems: tuple[ConfigProblem, ...] = (
                ConfigProblem(str(self.path), 0, 0, "", f"not UTF-8 text: {exc}"),
            )
        except ConfigError as exc:
            problems = exc.problems
        for problem in problems:
            log.error(
                "%s", problem, extra={"fields": {"event": "config_problem", **_problem_fields(problem)}}
            )
        log.error(
            "%s: %d problem(s) in the edit; still running on the last good config",
            self.path,
            len(problems),
            extra={"fields": {"event": "config_rejected", "problems": len(problems)}},
        )
        return None


_MISSING = "missing"  # what ConfigWatcher saw when the file could not be read (no digest looks so)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the service


class Service:
    """The jobs and what they share: the current config, the store, the clock.

    The job bodies (``poll_due``, ``run_newsletter``, ``catch_up``) are plain coroutines a
    test can call with a ``ManualClock``; ``install`` hands them to an APScheduler.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        store: Store,
        *,
        clock: Clock | None = None,
        run_issue: RunIssue = send_issue,
        poll_tick: timedelta = POLL_TICK,
        lock_held: Callable[[], bool] | None = None,
        poll_min_gap: timedelta = POLL_MIN_GAP,
    ) -> None:
        self.loaded = loaded
        self.store = store
        # Whether the run lock is still ours (runlock.run_lock's probe), asked every poll tick.
        self.lock_held = lock_held
        self.lock_lost = False
        self.stop_requested = asyncio.Event()  # serve stops when it is set (as by SIGTERM)
        self.clock = clock or SystemClock()
        self.run_issue = run_issue
        self.poll_tick = poll_tick
        self.poll_min_gap = poll_min_gap
        self._cycle_ended: datetime | None = None  # the minimum gap before a wake-up counts from it
        self.scheduler: AsyncIOScheduler | None = None
        self.digest_stop = threading.Event()
        self._polls: set[asyncio.Task[Any]] = set()
        self._polling = False
        self._poll_again = False  # a poll was asked for while one ran
        self._rerun: asyncio.Task[PollSummary | None] | None = None  # the poll run for it
        self._digests: set[asyncio.Task[Any]] = set()
        # Every job body running, whatever it awaits (a store read in a thread, a lock): a stop
        # waits for them, else asyncio.run cancels them as the process ends and APScheduler
        # logs each as an ERROR with a traceback.
        self._jobs: set[asyncio.Task[Any]] = set()
        self._schedules: dict[str, tuple[str, str]] = {}  # newsletter → (schedule, timezone) installed
        # One issue at a time, whichever newsletter: each send takes the sending lock
        # (runlock.sending_lock, one per database), and a second job of this process asking
        # for it at the same moment would find it held and skip its issue.
        self._sending = asyncio.Lock()
        # Held by a poll cycle from its start (its clock reading, which dates what it stores)
        # until its stories are grouped.  An issue waits for it before reading the clock: else
        # it could be frozen while a cycle that began earlier is still fetching, and what that
        # cycle stores, dated before the issue's end, would never be in any issue.
        self._cycle = asyncio.Lock()
        self._failed_at: dict[str, datetime] = {}  # newsletter -> when its last issue failed as a whole
        # The output feeds could not be written (a cycle's or a prune's last stage): the last
        # such failure, until they are.  A tick with nothing due writes them (``_republish``),
        # else they waited for the next feed due, an hour away or more.
        self._unpublished: OutputError | None = None
        self._stopper: asyncio.Task[None] | None = None
        self.stopping = False

    # -- the jobs -----------------------------------------------------------------------

    def triggers(self) -> dict[str, BaseTrigger]:
        """Every job's trigger by job id, as ``install`` schedules them."""
        jobs: dict[str, BaseTrigger] = {POLL_JOB_ID: self._poll_trigger(), RETRY_JOB_ID: self._poll_trigger()}
        for newsletter in self.loaded.config.newsletters:
            jobs[NEWSLETTER_JOB_PREFIX + newsletter.name] = schedule.newsletter_trigger(newsletter)
        jobs[PRUNE_JOB_ID] = self._prune_trigger()
        return jobs

    def _prune_trigger(self) -> IntervalTrigger:
        return IntervalTrigger(
            seconds=PRUNE_INTERVAL.total_seconds(), start_date=self.clock.now() + PRUNE_DELAY, timezone=UTC
        )

    def _poll_trigger(self) -> IntervalTrigger:
        # An explicit start: APScheduler would otherwise read the machine's clock.
        return IntervalTrigger(
            seconds=self.poll_tick.total_seconds(), start_date=self.clock.now(), timezone=UTC
        )

    async def run_job(self, job_id: str) -> None:
        """Run one job by id, as the scheduler would (used by simulations)."""
        if job_id == POLL_JOB_ID:
            await self.poll_due()
        elif job_id == RETRY_JOB_ID:
            await self.send_waiting()
        elif job_id == PRUNE_JOB_ID:
            await self.prune()
        else:
            await self.run_newsletter(job_id.removeprefix(NEWSLETTER_JOB_PREFIX))

    async def poll_due(self) -> PollSummary | None:
        """The poll job: fetch and store the feeds that are due now; one log line."""
        with _tracked(self._jobs):
            return await self._poll_job()

    async def _poll_job(self) -> PollSummary | None:
        if self.stopping:
            return None
        if self.lock_held is not None and not await asyncio.to_thread(self.lock_held):
            # PostgreSQL dropped the session that held the lock (a restart): a second
            # scheduler may start now and poll and send alongside.  Exit non-zero, so that
            # the supervisor starts the process again and it takes the lock anew (or finds
            # the other one and says so).
            log.error(
                "the scheduler lock on %s was lost (the database restarted, or the connection"
                " broke); stopping so that a restart takes it again",
                self.store.url,
                extra={"fields": {"event": "lock_lost"}},
            )
            self.lock_lost = True
            self.stop_requested.set()
            return None
        if self._polling:
            # The poll at start (before the catch-up) may still run when the job first fires,
            # or a config edit asks for a poll while one runs: it runs again once that ends,
            # else a feed just added would wait for the next tick.
            log.debug("poll cycle: the previous one is still running; again when it ends")
            self._poll_again = True
            return None
        self._polling = True
        self._poll_again = False
        with _tracked(self._polls):
            try:
                async with self._cycle:
                    return await self._poll_due()
            except asyncio.CancelledError:
                log.info("poll cycle cancelled: stopping")
                return None
            except Exception:  # a bug in one cycle must not end the catch-up at start, nor the next tick
                log.exception("poll cycle failed unexpectedly; trying again in %s", self.poll_tick)
                return None
            finally:
                self._polling = False
                if self._poll_again and not self.stopping:
                    # Not through APScheduler: it counts this job as running until we return,
                    # and would skip it again.
                    self._poll_again = False
                    self._rerun = asyncio.get_running_loop().create_task(self.poll_due())

    async def _poll_due(self) -> PollSummary | None:
        loaded, now = self.loaded, self.clock.now()
        try:
            any_due, next_check = await asyncio.to_thread(_due_and_next, loaded, self.store, now)
        except StoreError as exc:
            log.error("poll cycle failed: %s; trying again in %s", exc, self.poll_tick)
            return None
        if not any_due:
            # Most ticks: one read, no HTTP client, no log line at INFO.
            log.debug("poll cycle: nothing due at %s", now.isoformat())
            if self._unpublished is not None:
                await self._republish(loaded)
            self._wake_for(next_check)
            return None
        due = 0

        def started(count: int) -> None:
            nonlocal due
            due = count

        began = time.monotonic()  # a stopwatch for the log line, not a clock reading
        try:
            # Digests are sent by their own cron jobs, not by the poll tick.  The ingest lock
            # keeps an issue frozen by another process (`aggregator digest NAME --send`) out
            # of the cycle; the cycle's clock is read once it is held (see runlock).
            async with _held_from_thread(ingest_lock(loaded.database_url, exclusive=False)):
                now = self.clock.now()
                report = await pipeline.run_cycle(
                    loaded,
                    self.store,
                    now,
                    only_due=True,
                    on_start=started,
                    on_outcome=lambda outcome: _log_outcome(loaded, outcome),
                )
            summary = report.poll
            self._unpublished = None
        except (AggregatorError, OSError) as exc:  # the store, or a stage's files (publish: disk full…)
            if isinstance(exc, OutputError):  # the entries are stored: the next tick writes the feeds
                self._unpublished = exc
            log.error("poll cycle failed: %s; trying again in %s", exc, self.poll_tick)
            return None
        finally:
            self._cycle_ended = self.clock.now()
        seconds = time.monotonic() - began
        fields = {
            "event": "poll_cycle",
            "due": due,
            "fetched": summary.count(FeedStatus.OK),
            "not_modified": summary.count(FeedStatus.NOT_MODIFIED),
            "failed": summary.failed,
            "new_entries": summary.new_entries,
            "updated_entries": summary.updated_entries,
            "duration_s": round(seconds, 3),
        }
        # A tick with nothing due is not news; at INFO it would be a line a minute.
        log.log(
            logging.INFO if due else logging.DEBUG,
            "poll cycle: %d due, %d fetched, %d not modified, %d failed, %d new entries in %.1fs",
            due,
            fields["fetched"],
            fields["not_modified"],
            fields["failed"],
            fields["new_entries"],
            seconds,
            extra={"fields": fields},
        )
        await self._wake_after_cycle(loaded, now)
        return summary

    async def _republish(self, loaded: LoadedConfig) -> None:
        """On a tick with nothing due, after the output feeds could not be written: write them.

        The failure's log line said the entries are stored and the feeds "written at the next
        cycle"; without this, that was the next cycle with a feed due, which may be hours
        away, however soon the folder was fixed.  A failure that stays the same (the folder
        not fixed yet) is logged once, not every tick.

        Run by the poll job, under ``self._cycle`` (so never beside this process's prune), and
        it holds the ingest lock shared as a cycle does: a prune of another process
        (``aggregator prune``) holds it alone, and a publish that read the stories before the
        prune removed entries, then wrote its files after, would list them again.  It waits
        for such a prune to end; ``_unpublished`` stays set until the feeds are written.
        """
        before = self._unpublished
        try:
            async with _held_from_thread(ingest_lock(loaded.database_url, exclusive=False)):
                now = self.clock.now()  # after the wait, as a cycle reads it
                published = await asyncio.to_thread(pipeline.publish_output, loaded, self.store, now)
        except OutputError as exc:
            self._unpublished = exc
            same = before is not None and (exc.path, exc.reason) == (before.path, before.reason)
            log.log(
                logging.DEBUG if same else logging.ERROR,
                "publishing after the earlier failure: %s",
                exc,
                extra={"fields": {"event": "publish_failed", "path": str(exc.path)}},
            )
            return
        except (AggregatorError, OSError) as exc:  # the store: the next tick tries again
            log.error("publishing after the earlier failure: %s; trying again in %s", exc, self.poll_tick)
            return
        self._unpublished = None
        log.info(
            "output feeds written after the earlier failure: %d of %d files changed in %s",
            len(published.changed),
            len(published.files),
            loaded.base_dir / loaded.config.output.dir,
            extra={
                "fields": {
                    "event": "published",
                    "changed": len(published.changed),
                    "files": len(published.files),
                }
            },
        )

    async def _wake_after_cycle(self, loaded: LoadedConfig, now: datetime) -> None:
        """After a cycle that polled at ``now``: wake the poll job for the next checks it stored.

        Only checks after ``now`` count: a feed still due after the cycle (it could not be
        polled) is left to the regular tick, rather than run a cycle every few seconds.
        """
        try:
            _, next_check = await asyncio.to_thread(_due_and_next, loaded, self.store, now)
        except StoreError as exc:
            log.debug("poll job: next checks not read (%s); the next tick looks again", exc)
            return
        self._wake_for(next_check)

    def _wake_for(self, next_check: datetime | None) -> None:
        """Move the poll job's next run to ``next_check`` when that comes before its regular
        tick (``schedule.poll_wake``: never before it, never sooner than ``poll_min_gap``
        after the last cycle)."""
        scheduler = self.scheduler
        if scheduler is None or self.stopping or self._poll_again:
            return  # not scheduled (a simulation), stopping, or a rerun follows and decides
        job = scheduler.get_job(POLL_JOB_ID)
        if job is None:
            return
        # The gap counts from the last cycle, not from a tick that only read: a lone feed is
        # polled at its next check, and only feeds due close together wait for each other.
        ended = self._cycle_ended
        now = self.clock.now()
        not_before = now if ended is None else ended + self.poll_min_gap
        # And not while this run may still be ending: APScheduler would skip a wake-up that
        # comes while the job runs (max_instances=1), and the feed would wait for the tick.
        not_before = max(not_before, now + POLL_WAKE_MARGIN)
        wake = schedule.poll_wake(next_check, not_before=not_before, next_tick=job.next_run_time)
        if wake is None:
            return
        # The same job, not a second one: it keeps coalescing, max_instances=1 and the
        # misfire grace, and a cycle still running when it fires is asked to run again.
        scheduler.modify_job(POLL_JOB_ID, next_run_time=wake)
        log.debug(
            "poll job: next run at %s, the earliest next check",
            wake.isoformat(),
            extra={"fields": {"event": "poll_wake", "at": wake.isoformat()}},
        )

    async def prune(self) -> PruneReport | None:
        """The prune job: remove the entries retention says are old; one log line when any went."""
        with _tracked(self._jobs):
            return await self._prune()

    async def _prune(self) -> PruneReport | None:
        loaded = self.loaded
        if self.stopping or loaded.config.retention.max_age is None:
            return None
        began = time.monotonic()
        try:
            # After a cycle of this process (it holds the ingest lock shared until it has
            # grouped what it stored), and alone against every poll, of any process: an
            # entry being removed that a poll stored again would come back as new.
            async with (
                self._cycle,
                _held_from_thread(ingest_lock(loaded.database_url, exclusive=True)),
            ):
                report = await asyncio.to_thread(
                    pipeline.prune_and_republish, loaded, self.store, self.clock.now()
                )
        except (AggregatorError, OSError) as exc:
            if isinstance(exc, OutputError):  # the entries went: the next poll tick writes the feeds
                self._unpublished = exc
            log.error("prune failed: %s; trying again in %s", exc, PRUNE_INTERVAL)
            return None
        if report is not None and report.entries:
            _log_prune(report, time.monotonic() - began)
        return report

    async def run_newsletter(self, name: str) -> tuple[DigestRun, ...]:
        """A newsletter job: send the issue due now, if any (one catch-up at most)."""
        newsletter = next((n for n in self.loaded.config.newsletters if n.name == name), None)
        if newsletter is None:  # removed from feeds.yaml while the job was starting
            return ()
        with _tracked(self._jobs):
            return await self._run_due(newsletter, at_start=False)

    async def send_waiting(self) -> list[DigestRun]:
        """The retry job: for each newsletter with something waiting (``_waiting``), what
        its cron job would send now: the issue due, or the rest of the one still sending."""
        with _tracked(self._jobs):
            return await self._send_waiting()

    async def _send_waiting(self) -> list[DigestRun]:
        done: list[DigestRun] = []
        for newsletter in self.loaded.config.newsletters:
            if self.stopping or self._sending.locked():
                # An issue is going out: what waits now is most likely its own next recipients.
                # Waiting for it here would hold this job past its next ticks; they look again.
                break
            failed = self._failed_at.get(newsletter.name)
            if failed is not None and self.clock.now() - failed < FAILED_ISSUE_PAUSE:
                continue  # it failed as a whole (no SMTP password, say): not again every minute
            try:
                edited = newsletters.config_written(self.loaded)
                waiting = await asyncio.to_thread(_waiting, self.store, newsletter, self.clock.now(), edited)
            except StoreError as exc:
                log.error("newsletter %s: %s; trying again in %s", newsletter.name, exc, self.poll_tick)
                continue
            if waiting:
                done.extend(await self._run_due(newsletter, at_start=False))
        return done

    async def start(self) -> list[DigestRun]:
        """At start: poll what is due, then catch up on the newsletters (in that order, so that
        a newsletter's first issue holds what the first poll found)."""
        await self.poll_due()
        return await self.catch_up()

    async def catch_up(self) -> list[DigestRun]:
        """At start: finish interrupted issues and send one issue missed while the process was down.

        A newsletter that was never sent is due at once, as with ``aggregator run --once``:
        a fresh install shows its first issue without waiting for the schedule.
        """
        done: list[DigestRun] = []
        for newsletter in self.loaded.config.newsletters:
            done.extend(await self._run_due(newsletter, at_start=True))
        return done

    async def _run_due(self, newsletter: NewsletterConfig, *, at_start: bool) -> tuple[DigestRun, ...]:
        name = newsletter.name
        # The jobs and the catch-up at start may meet: one issue at a time (see __init__).
        async with self._sending:
            if self.stopping:
                return ()
            with _tracked(self._digests):  # a stop waits for this wait to end
                async with self._cycle:  # a poll cycle in progress first stores and groups what it found
                    now = self.clock.now()
            if self._stop_requested():  # meanwhile: the cancelled cycle stored only part of its feeds
                return ()
            edited = newsletters.config_written(self.loaded)
            until, sending = await asyncio.to_thread(covered_until, self.store, newsletter, now, edited)
            if until is None and at_start:
                return await self._send(newsletter, now, now)
            scheduled_for = schedule.due_issue(schedule.newsletter_trigger(newsletter), until, now)
            if scheduled_for is None and sending and until is not None:
                scheduled_for = until  # an issue interrupted by a stop or a crash: finish it
            if scheduled_for is None:
                log.debug("newsletter %s: nothing due at %s", name, now.isoformat())
                return ()
            return await self._send(newsletter, scheduled_for, now)

    async def _send(
        self, newsletter: NewsletterConfig, scheduled_for: datetime, now: datetime
    ) -> tuple[DigestRun, ...]:
        began = time.monotonic()
        with _tracked(self._digests):
            try:
                runs = await self.run_issue(
                    self.loaded,
                    self.store,
                    newsletter,
                    scheduled_for=scheduled_for,
                    now=now,
                    stop=self.digest_stop,
                )
            except asyncio.CancelledError:
                log.warning("newsletter %s: cancelled by a second stop signal", newsletter.name)
                return ()
            except (AggregatorError, OSError) as exc:
                self._failed_at[newsletter.name] = now
                log.error(
                    "newsletter %s: issue of %s failed: %s; not tried again for %s",
                    newsletter.name,
                    scheduled_for.isoformat(),
                    exc,
                    FAILED_ISSUE_PAUSE,
                )
                return ()
            except Exception:  # a bug in one issue must not end a process meant to run for weeks
                self._failed_at[newsletter.name] = now
                log.exception(
                    "newsletter %s: issue of %s failed unexpectedly",
                    newsletter.name,
                    scheduled_for.isoformat(),
                )
                return ()
        self._failed_at.pop(newsletter.name, None)
        seconds = time.monotonic() - began
        for run in runs:
            _log_digest(run, seconds)
        return runs

    # -- scheduling ---------------------------------------------------------------------

    def install(self, scheduler: AsyncIOScheduler, *, poll_now: bool = True) -> None:
        """Add the poll job, the retry job and one job per newsletter to ``scheduler`` (not
        started here).

        ``poll_now=False`` leaves the first poll to the caller (``start`` does it before the
        catch-up, so that a first issue holds what that poll found).
        """
        self.scheduler = scheduler
        next_tick = self.clock.now() + self.poll_tick
        ticking = (
            (
                self.poll_due,
                POLL_JOB_ID,
                "poll the feeds that are due",
                self.clock.now() if poll_now else next_tick,
            ),
            # Its first run a tick away: the catch-up at start comes first.
            (
                self.send_waiting,
                RETRY_JOB_ID,
                "send what waits: retries, an issue whose time passed unsent",
                next_tick,
            ),
        )
        for job, job_id, name, first_run in ticking:
            scheduler.add_job(
                job,
                self._poll_trigger(),
                id=job_id,
                name=name,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=int(POLL_MISFIRE_GRACE.total_seconds()),
                next_run_time=first_run,
                replace_existing=True,
            )
        scheduler.add_job(
            self.prune,
            self._prune_trigger(),
            id=PRUNE_JOB_ID,
            name="remove entries older than retention.max_age",
            coalesce=True,
            max_instances=1,
            # A day missed (the machine slept) runs at wake-up: the job is idempotent.
            misfire_grace_time=int(PRUNE_INTERVAL.total_seconds()),
            next_run_time=self.clock.now() + PRUNE_DELAY,
            replace_existing=True,
        )
        self._install_newsletters()

    def _install_newsletters(self) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        wanted = {n.name: n for n in self.loaded.config.newsletters}
        for name in set(self._schedules) - set(wanted):
            scheduler.remove_job(NEWSLETTER_JOB_PREFIX + name)
            del self._schedules[name]
        for name, newsletter in wanted.items():
            installed = (newsletter.schedule, newsletter.timezone)
            if self._schedules.get(name) == installed:
                continue  # unchanged: keep its next run time
            scheduler.add_job(
                self.run_newsletter,
                schedule.newsletter_trigger(newsletter),
                args=[name],
                id=NEWSLETTER_JOB_PREFIX + name,
                name=f"newsletter {name}",
                coalesce=True,
                max_instances=1,
                misfire_grace_time=int(schedule.MISFIRE_GRACE.total_seconds()),
                replace_existing=True,
            )
            self._schedules[name] = installed

    def apply_config(self, loaded: LoadedConfig) -> None:
        """Run on ``loaded`` from now on: re-create the newsletter jobs and poll soon."""
        old = self.loaded
        if loaded.database_url != old.database_url:
            log.warning(
                "%s: the database changed; restart the scheduler to use it (still using %s)",
                loaded.path,
                self.store.url,
            )
            # Keep the old one in the config too: the ingest and sending locks are taken on
            # ``loaded.database_url``, and on the new database they would guard nothing this
            # process writes (or fail every poll and issue while it is not reachable yet).
            loaded = replace(
                loaded, config=loaded.config.model_copy(update={"database": old.config.database})
            )
        self.loaded = loaded
        old_feeds = {f.url for f in old.enabled_feeds}
        new_feeds = {f.url for f in loaded.enabled_feeds}
        old_letters = {n.name for n in old.config.newsletters}
        new_letters = {n.name for n in loaded.config.newsletters}
        if self.scheduler is not None:
            self._install_newsletters()
            # A feed just added is due (never polled); polling now means "soon" is seconds.
            # While a cycle runs, APScheduler skips the job (max_instances=1) without calling
            # poll_due: say here that it is to run again when that cycle ends.
            if self._polling:
                self._poll_again = True
            self.scheduler.modify_job(POLL_JOB_ID, next_run_time=self.clock.now())
        log.info(
            "config reloaded: %d feeds (%d added, %d removed), %d newsletters (%d added, %d removed)",
            len(new_feeds),
            len(new_feeds - old_feeds),
            len(old_feeds - new_feeds),
            len(new_letters),
            len(new_letters - old_letters),
            len(old_letters - new_letters),
            extra={
                "fields": {
                    "event": "config_reloaded",
                    "feeds": len(new_feeds),
                    "feeds_added": sorted(new_feeds - old_feeds),
                    "feeds_removed": sorted(old_feeds - new_feeds),
                    "newsletters": sorted(new_letters),
                }
            },
        )

    def _stop_requested(self) -> bool:
        # A method, not the attribute: a check after an await must read it again.
        return self.stopping

    async def stop(self, *, force: bool = False) -> None:
        """Cancel polls, let a digest and any other job finish what it does (its current
        recipient, a read); ``force`` (a second signal) cancels them too."""
        self.stopping = True
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.pause()  # no new jobs; shutting the scheduler down would cancel ours
        self.digest_stop.set()
        for task in list(self._polls) + (list(self._digests) + list(self._jobs) if force else []):
            task.cancel()
        await asyncio.gather(*self._polls, *self._digests, *self._jobs, return_exceptions=True)


def _due_and_next(loaded: LoadedConfig, store: Store, now: datetime) -> tuple[bool, datetime | None]:
    """In one read: whether an enabled feed is due at ``now`` (a feed not in the store yet
    is), and the earliest next check after ``now`` of an enabled, non-retired feed (None
    when there is none)."""
    states = store.feed_states([f.url for f in loaded.enabled_feeds])
    later = [
        s.next_check
        for s in states
        if s.status is not FeedStatus.RETIRED and s.next_check is not None and s.next_check > now
    ]
    return any(polling.is_due(s, now) for s in states), min(later, default=None)


@contextlib.asynccontextmanager
async def _held_from_thread(lock: contextlib.AbstractContextManager[None]) -> AsyncIterator[None]:
    """Hold ``lock``, waiting for it in a thread: the event loop goes on meanwhile.

    Cancelled while it waits, the thread still gets the lock in the end; it is then let go
    at once, not kept by a task that is gone (every issue would wait on it forever).
    """
    entering = asyncio.ensure_future(asyncio.to_thread(lock.__enter__))
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        entering.add_done_callback(
            lambda done: None if done.cancelled() or done.exception() else lock.__exit__(None, None, None)
        )
        raise
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


@contextlib.contextmanager
def _tracked(tasks: set[asyncio.Task[Any]]) -> Iterator[None]:
    """Register the running task in ``tasks`` while the block runs (so a stop can find it)."""
    task = asyncio.current_task()
    if task is not None:
        tasks.add(task)
    try:
        yield
    finally:
        tasks.discard(task)


def _log_digest(run: DigestRun, seconds: float) -> None:
    # Without a mail server nothing is sent: the messages are files for someone to look at.
    sent = (
        "sent"
        if run.outbox is None
        else f"{'message' if run.sent == 1 else 'messages'} written to {run.outbox}"
    )
    if run.sent != run.sent_in_run:
        # Finishing an issue an earlier run began (a stop, a crash, retries): "6 sent" read as
        # if this run had sent to all six.
        sent += f" in all, {run.sent_in_run} in this run"
    number = run.issue if run.issue is not None else "-"
    for recipient in run.uncertain:  # as `run --once` names them: nobody else would
        log.warning(
            "digest %s #%s: uncertain: %s: the connection broke during DATA; it may have arrived and"
            " will not be sent again",
            run.newsletter,
            number,
            recipient,
            extra={
                "fields": {
                    "event": "uncertain",
                    "newsletter": run.newsletter,
                    "issue": run.issue,
                    "recipient": recipient,
                }
            },
        )
    log.info(
        "digest %s #%s for %s: %s, %d %s, %d failed, %d uncertain, %d left, in %.1fs",
        run.newsletter,
        number,
        run.scheduled_for.isoformat(),
        run.status,
        run.sent,
        sent,
        run.failed,
        len(run.uncertain),
        run.remaining,
        seconds,
        extra={
            "fields": {
                "event": "digest",
                "newsletter": run.newsletter,
                "issue": run.issue,
                "scheduled_for": run.scheduled_for.isoformat(),
                "status": run.status,
                "sent": run.sent,  # messages written, with an outbox; by earlier runs too
                "sent_in_run": run.sent_in_run,
                "outbox": None if run.outbox is None else str(run.outbox),
                "failed": run.failed,
                "uncertain": len(run.uncertain),
                "remaining": run.remaining,
                "duration_s": round(seconds, 3),
            }
        },
    )


def _log_prune(report: PruneReport, seconds: float) -> None:
    log.info(
        "prune: %d entries stored before %s removed, from %d feeds; %d stories left with no entry"
        " removed, in %.1fs",
        report.entries,
        report.cutoff.isoformat(),
        len(report.removed),
        report.stories,
        seconds,
        extra={
            "fields": {
                "event": "prune",
                "entries": report.entries,
                "stories": report.stories,
                "cutoff": report.cutoff.isoformat(),
                "held_by": report.held_by,
                "feeds": {without_password(url): count for url, count in report.removed},
                "kept_copies": report.kept_copies,
                "duration_s": round(seconds, 3),
            }
        },
    )


def _notice_fields(loaded: LoadedConfig, outcome: PollOutcome, shown: str) -> dict[str, Any]:
    """The fields of a feed's notice line: for a feed that moved permanently (``feed_moved``),
    the feed as configured, its new address and the line of feeds.yaml to change."""
    place = {"file": str(loaded.path), "line": loaded.feed_lines.get(outcome.url)}
    if outcome.moved_to:
        return {"event": "feed_moved", "feed": shown, "moved_to": without_password(outcome.moved_to), **place}
    return {"event": "feed_notice", "feed": shown, **place}


def _log_outcome(loaded: LoadedConfig, outcome: PollOutcome) -> None:
    """Per feed: DEBUG when fine (the cycle line sums it up), WARNING when it failed."""
    where = loaded.where(outcome.url)
    shown = without_password(outcome.url)  # logs travel to collectors: no feed's password
    if outcome.notice:
        log.warning("notice: %s", outcome.notice, extra={"fields": _notice_fields(loaded, outcome, shown)})
    fields = {
        "event": "feed_polled",
        "feed": shown,
        "status": outcome.status.value,
        "new_entries": outcome.new_entries,
        "updated_entries": outcome.updated_entries,
        "error": outcome.error,
    }
    if outcome.error:
        log.warning("%s: %s: %s", where, shown, outcome.error, extra={"fields": fields})
    else:
        log.debug(
            "%s: %s: %s, %d new, %d updated: stored",
            where,
            shown,
            outcome.status.value,
            outcome.new_entries,
            outcome.updated_entries,
            extra={"fields": fields},
        )


# --------------------------------------------------------------------------- the process


async def serve(
    service: Service,
    watcher: ConfigWatcher | None,
    *,
    watch_interval: float = WATCH_INTERVAL,
    stopping: asyncio.Event | None = None,
    last_in_process: bool = False,
) -> None:
    """Run ``service`` under an APScheduler until ``stopping`` is set (SIGTERM/SIGINT set it;
    SIGHUP reads feeds.yaml at once).  ``last_in_process``: the process ends after this, so
    further signals are ignored once stopped, rather than given back their default action."""
    loop = asyncio.get_running_loop()
    stopping = stopping or asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        name = signal.Signals(signum).name
        if signals == 1:
            log.info("%s: stopping (fetches cancelled; a digest stops after its current recipient)", name)
            stopping.set()
        else:
            log.warning("%s again: stopping now", name)
            service._stopper = loop.create_task(service.stop(force=True))

    reload_now = asyncio.Event()

    def on_hangup() -> None:
        # `systemctl reload`, `kill -HUP`: read feeds.yaml now (it was the default action,
        # which ends the process mid-poll or mid-send).
        log.info("SIGHUP: reading %s now", watcher.path if watcher is not None else "the config")
        reload_now.set()

    installed = _install_signal_handlers(loop, on_signal, on_hangup)

    scheduler = AsyncIOScheduler(timezone=UTC)
    service.install(scheduler, poll_now=False)
    scheduler.start()
    catch_up = loop.create_task(service.start())
    catch_up.add_done_callback(_log_failure("the catch-up at start"))
    _log_started(service)

    watching = (
        loop.create_task(_watch(watcher, service, reload_now, watch_interval))
        if watcher is not None
        else None
    )
    try:
        stopped = (loop.create_task(stopping.wait()), loop.create_task(service.stop_requested.wait()))
        await asyncio.wait(stopped, return_when=asyncio.FIRST_COMPLETED)
        for waiter in stopped:
            waiter.cancel()
    finally:
        if watching is not None:
            watching.cancel()
        await service.stop()
        await asyncio.gather(catch_up, return_exceptions=True)
        scheduler.shutdown(wait=False)
        for signum in installed:
            loop.remove_signal_handler(signum)
            if last_in_process:
                # Stopped: a further signal must not kill the process with the default
                # action (exit 143 or 130) while asyncio.run and the interpreter wind down.
                signal.signal(signum, signal.SIG_IGN)
        log.info("scheduler stopped", extra={"fields": {"event": "stopped"}})


async def _watch(
    watcher: ConfigWatcher, service: Service, reload_now: asyncio.Event, interval: float
) -> None:
    """Apply each valid edit of feeds.yaml: looked at every ``interval``, and at once on ``reload_now``."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reload_now.wait(), interval)
        try:
            forced = reload_now.is_set()
            reload_now.clear()
            loaded = watcher.check()
            if loaded is None and forced:
                loaded = watcher.check()  # a signal asks for now: no second look to wait for
            if loaded is not None:
                service.apply_config(loaded)
        except Exception:  # whatever an edit does, watching goes on: the next edit may fix it
            log.exception(
                "%s: reloading failed; still running on the last good config",
                watcher.path,
                extra={"fields": {"event": "config_reload_failed"}},
            )


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, on_stop: Callable[[int], None], on_hangup: Callable[[], None]
) -> list[signal.Signals]:
    """SIGTERM and SIGINT stop, SIGHUP reloads; the signals installed (none outside the main thread)."""
    installed = []
    for signum, handler, args in (
        (signal.SIGTERM, on_stop, (signal.SIGTERM,)),
        (signal.SIGINT, on_stop, (signal.SIGINT,)),
        (signal.SIGHUP, on_hangup, ()),
    ):
        with contextlib.suppress(ValueError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(signum, handler, *args)
            installed.append(signum)
    return installed


def _log_failure(what: str) -> Callable[[asyncio.Task[Any]], None]:
    """A done-callback that logs the task's exception: nobody awaits it in time to see it."""

    def log_it(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s failed: %s", what, exc, exc_info=exc)

    return log_it


def _log_started(service: Service) -> None:
    loaded = service.loaded
    job = service.scheduler.get_job(PRUNE_JOB_ID) if service.scheduler is not None else None
    prune_at = getattr(job, "next_run_time", None)
    jobs = next_runs(loaded, service.store, service.clock.now(), prune_at=prune_at)
    log.info(
        "scheduler started: %s, %d feeds, %d newsletters, database %s; %s",
        loaded.path,
        len(loaded.enabled_feeds),
        len(loaded.config.newsletters),
        service.store.url,
        "; ".join(f"{j.job} next at {j.next_run.isoformat() if j.next_run else 'never'}" for j in jobs),
        extra={
            "fields": {
                "event": "started",
                "pid": os.getpid(),
                "config": str(loaded.path),
                "jobs": {j.job: j.next_run.isoformat() if j.next_run else None for j in jobs},
            }
        },
    )


def run_forever(
    config_path: Path,
    log_format: Literal["text", "json"] = "text",
    *,
    verbose: bool = False,
    run_issue: RunIssue | None = None,
) -> int:
    """The long-running process (``python scheduler.py``, ``aggregator run``): returns an exit code.

    0 after a clean stop, 2 for a bad config or an unusable database, 3 when another
    scheduler already runs on the same database, 4 when the run lock was lost while running
    (PostgreSQL restarted): a supervisor restarting it on failure then takes it again.
    """
    configure_logging(log_format, verbose=verbose)
    watcher = ConfigWatcher(config_path.absolute())
    try:
        loaded = watcher.load()
    except ConfigError as exc:
        for problem in exc.problems:
            log.error(
                "%s", problem, extra={"fields": {"event": "config_problem", **_problem_fields(problem)}}
            )
        log.error("%d problem(s) in %s; not started", len(exc.problems), watcher.path)
        return EXIT_USAGE
    try:
        with run_lock(loaded.database_url) as lock_held, Store.open(loaded.database_url) as store:
            store.check_writable()
            service = Service(loaded, store, run_issue=run_issue or send_issue, lock_held=lock_held)
            asyncio.run(serve(service, watcher, last_in_process=True))
        if service.lock_lost:
            return EXIT_LOCK_LOST
    except SchedulerAlreadyRunning as exc:
        log.error("%s", exc, extra={"fields": {"event": "already_running"}})
        return EXIT_ALREADY_RUNNING
    except StoreError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    return EXIT_OK


# --------------------------------------------------------------------------- commands run once


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """SIGTERM and SIGINT (Ctrl-C) for a command that runs once (``run --once``,
    ``digest NAME --send``), as ``aggregator run`` takes them: a stop loses and repeats nothing.

    The first signal sets ``event`` and cancels a poll running under ``cancelling`` (the feeds
    already fetched are stored: ``pipeline.poll_feeds``); a digest sent through a
    ``StoppableTransport`` on ``event`` finishes the message in progress, records it and
    starts no other.  The command then skips the stages after and says what is left.
    Without it SIGTERM killed the process mid-message (the reader recorded as uncertain,
    never to be sent that issue), and Ctrl-C interrupted it there.

    A second signal ends the process at once, by the signal's default action: as after a
    crash, the next run puts back a reader whose message had not begun and records one whose
    DATA had begun as uncertain (it may have arrived; never sent twice).

    Handlers are installed in the main thread only (``signal`` allows no other); elsewhere
    nothing is ever requested.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: signal.Signals | None = None  # the first one received
        self._saved: dict[signal.Signals, Any] = {}  # the handlers ours replaced

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def __enter__(self) -> Self:
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # ignored by whoever started us (nohup, `cmd &` in a script): so it stays
            with contextlib.suppress(ValueError):  # not the main thread
                self._saved[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, previous in self._saved.items():
            signal.signal(signum, previous)
        self._saved.clear()

    def _on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        received = signal.Signals(signum)
        if self.event.is_set():
            # os.write, not print: the main thread may be inside a write to stderr.
            os.write(
                2,
                f"{received.name} again: stopping at once (the next run settles a message cut off:"
                " as uncertain once its DATA had begun, never sent twice)\n".encode(),
            )
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signal = received
        self.event.set()
        os.write(
            2,
            f"{received.name}: stopping once what is in progress is recorded (a message being sent"
            f" is finished first); {received.name} again stops at once\n".encode(),
        )

    async def cancelling(self, main: Coroutine[Any, Any, T]) -> T | None:
        """Run ``main`` on this event loop, cancelled by the first signal: its result, or
        None when it was stopped (or a signal came before it began)."""
        if self.requested:
            main.close()
            return None
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main)

        def on_signal(signum: int) -> None:
            self._on_signal(signum)
            task.cancel()

        # Through the loop, not the handlers above: those run only once the main thread
        # runs Python again, which a loop asleep in epoll may not do for a long time.
        installed = []
        for signum in self._saved:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        try:
            return await task
        except asyncio.CancelledError:
            if task.cancelled() and self.event.is_set():  # read again: set while it ran
                return None
            raise
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)  # which puts back the default action
                signal.signal(signum, self._on_signal)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class NextRun:
    """When a job of the scheduler runs next, for ``aggregator status``."""

    job: str  # "poll", "newsletter:NAME", "prune" or "newsletter-retries"
    next_run: datetime | None  # UTC; None: never (no feeds to poll, nothing scheduled)
    detail: str


def next_runs(
    loaded: LoadedConfig, store: Store, now: datetime, *, prune_at: datetime | None = None
) -> list[NextRun]:
    """When each scheduler job runs next, computed from the config and the store.

    Polling: the earliest next check of an enabled feed (a never-polled feed is due now);
    the poll job is woken for it, no sooner than ``POLL_MIN_GAP`` after the cycle before (a
    check stored by another process, ``aggregator poll``, within ``POLL_TICK``).
    Newsletters: their next scheduled time.
    Retention (``prune``): ``prune_at`` when the caller knows it (the scheduler itself);
    else None: it runs a day apart from when the scheduler started, which the store does
    not record.
    Retries: when the first delivery waiting to be retried (or an issue left unsent) is due.
    """
    feeds = loaded.enabled_feeds
    states = store.feed_states([f.url for f in feeds])
    live = [s for s in states if s.status is not FeedStatus.RETIRED]
    due = [s for s in live if polling.is_due(s, now)]
    waiting = [s.next_check for s in live if s.next_check is not None and s.next_check > now]
    if due:
        poll = NextRun(POLL_JOB_ID, now, f"{len(due)} of {len(feeds)} feeds due now")
    elif waiting:
        poll = NextRun(POLL_JOB_ID, min(waiting), f"{len(feeds)} feeds, none due yet")
    else:
        poll = NextRun(POLL_JOB_ID, None, "no feeds to poll")
    runs = [poll]
    for newsletter in loaded.config.newsletters:
        trigger = schedule.newsletter_trigger(newsletter)
        fire = trigger.get_next_fire_time(None, now)
        runs.append(
            NextRun(
                NEWSLETTER_JOB_PREFIX + newsletter.name,
                None if fire is None else fire.astimezone(UTC),
                str(trigger),
            )
        )
    runs.append(_prune_run(loaded, prune_at))
    runs.append(_retry_run(loaded, store, now))
    return runs


def _prune_run(loaded: LoadedConfig, prune_at: datetime | None) -> NextRun:
    max_age = loaded.config.retention.max_age
    if max_age is None:
        return NextRun(PRUNE_JOB_ID, None, "retention off (retention.max_age: null)")
    days = max_age / timedelta(days=1)
    return NextRun(
        PRUNE_JOB_ID,
        prune_at,
        f"daily while `aggregator run` runs, and after each `run --once`: removes entries stored"
        f" over {days:g} days",
    )


def _retry_run(loaded: LoadedConfig, store: Store, now: datetime) -> NextRun:
    """What the retry job has waiting (see ``_next_waiting``): the earliest time, and for whom."""
    edited = newsletters.config_written(loaded)
    found = [
        w
        for letter in loaded.config.newsletters
        # Read only: `aggregator status` must not record what it sees (nor need to write).
        if (w := _next_waiting(store, letter, now, edited=edited, record=False)) is not None
    ]
    if not found:
        return NextRun(RETRY_JOB_ID, None, "nothing to retry")
    return NextRun(RETRY_JOB_ID, min(when for when, _ in found), "; ".join(what for _, what in found))
