"""When newsletters are due: crontab schedules in a time zone, and the one catch-up rule;
and when the poll job should run before its regular tick.

Pure: no I/O, no clock.  In: a newsletter's ``schedule`` (crontab) and ``timezone``, where
its newest stored issue ends, and ``now``.  Out: an APScheduler trigger
(``NewsletterTrigger``), the latest scheduled time at or before ``now``
(``last_fire_time``) and the scheduled time whose issue should go out now (``due_issue``).
For polling, ``poll_wake``: the earliest stored next check, held back to a minimum gap
after the last run, when that comes before the poll job's next regular tick.

The scheduler, a restart and a wake-up from sleep ask ``due_issue``, so they agree: at most
one issue, of the latest scheduled time, however many were missed.  ``aggregator run --once``
asks ``newsletters.is_due`` (has the schedule fired since the last issue?): the same answer,
but for an issue more than ``MISFIRE_GRACE`` late, which it still sends.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from aggregator import crontab
from aggregator.config import NewsletterConfig

# A newsletter issue later than this is not sent at all: the next regular issue starts
# where the last one ended, so its stories are not lost, only not sent as stale news.
# A week covers a weekly newsletter whose machine was off over the weekend.
MISFIRE_GRACE = timedelta(days=7)
_TICK = timedelta(microseconds=1)
# More than any clock change moves wall time (one hour almost everywhere, two at most).
_LONGEST_CLOCK_CHANGE = timedelta(hours=3)


class NewsletterTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler ships no type hints
    """A crontab schedule in a time zone that fires once per wall-clock time.

    APScheduler's ``CronTrigger`` fires at both ``02:30`` of the night the clocks go back;
    a subscriber would get two issues.  For schedules with a fixed hour the second
    occurrence is skipped; with ``*`` in the hour field every real hour counts.  A time
    the clocks skip in spring (02:30 that never happens) fires once, an hour later.
    """

    __slots__ = ("cron", "schedule", "skip_repeated", "timezone", "wall_clock")

    def __init__(self, schedule: str, timezone: str) -> None:
        self.schedule = schedule
        self.timezone = zoneinfo.ZoneInfo(timezone)
        line = crontab.for_apscheduler(schedule)
        self.cron = CronTrigger.from_crontab(line, timezone=self.timezone)
        # The same schedule over wall-clock times, which never skip or repeat (read as UTC).
        # For a fixed hour the fires are computed on it and then placed in the zone:
        # APScheduler's zone-aware trigger drops a whole day at a time change, at midnight
        # the day after the clocks go forward in Paris or New York (2026-03-30, 2026-03-09),
        # and on the day itself where they change at midnight (Santiago, Havana).
        self.wall_clock = CronTrigger.from_crontab(line, timezone=UTC)
        hour = next(f for f in self.cron.fields if f.name == "hour")
        self.skip_repeated = str(hour) != "*"

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if not self.skip_repeated:  # "*" in the hour field: every real hour counts
            fire: datetime | None = self.cron.get_next_fire_time(previous_fire_time, now)
            return fire
        # As APScheduler's triggers do: the first fire at or after ``start``.
        start = now
        if previous_fire_time is not None:
            start = min(now, previous_fire_time + _TICK)
            if start == previous_fire_time:
                start += _TICK
        # The search starts some hours of wall time early: a wall time the clocks skipped
        # (02:30 on the spring night) lands after the change, so it may come after ``start``
        # although its wall time is before ``start``'s (03:10); the filter below drops
        # what is really earlier.
        early = _as_wall(start - _LONGEST_CLOCK_CHANGE, self.timezone)
        wall: datetime | None = self.wall_clock.get_next_fire_time(None, early)
        while wall is not None:
            # fold=0: a wall time that happens twice fires the first time only; one that never
            # happens (the clocks skip it) lands as many minutes after the change as it was
            # after the hour the clocks left (00:00 at -04:00 is 01:00 at -03:00).
            instant = wall.replace(tzinfo=self.timezone, fold=0).astimezone(UTC)
            if instant >= start:
                return instant.astimezone(self.timezone)
            wall = self.wall_clock.get_next_fire_time(wall, wall)
        return None

    def __str__(self) -> str:
        return f"{self.schedule} ({self.timezone.key})"

    def __repr__(self) -> str:
        return f"NewsletterTrigger({self.schedule!r}, {self.timezone.key!r})"


def _as_wall(when: datetime, tz: zoneinfo.ZoneInfo) -> datetime:
    """``when``'s wall-clock time in ``tz``, labelled UTC (for ``NewsletterTrigger.wall_clock``)."""
    return when.astimezone(tz).replace(tzinfo=UTC, fold=0)  # fold would ride along into the search


def newsletter_trigger(newsletter: NewsletterConfig) -> NewsletterTrigger:
    return NewsletterTrigger(newsletter.schedule, newsletter.timezone)


def last_fire_time(
    trigger: BaseTrigger, now: datetime, lookback: timedelta = MISFIRE_GRACE
) -> datetime | None:
    """The latest time ``trigger`` fired at or before ``now``, looking back at most ``lookback``.

    APScheduler 3 triggers only look forward, so this walks forward from ``now - span``,
    widening the span (1 hour, 1 day, ``lookback``) only when nothing fired in it: a
    schedule that fires every minute costs 60 steps, a daily one a handful.
    """
    span = min(timedelta(hours=1), lookback)
    while True:
        last = None
        fire = trigger.get_next_fire_time(None, now - span)
        while fire is not None and fire <= now:
            last = fire
            fire = trigger.get_next_fire_time(fire, fire)
        if last is not None or span >= lookback:
            return None if last is None else last.astimezone(UTC)
        span = min(span * 24, lookback)


def due_issue(
    trigger: BaseTrigger,
    covered_until: datetime | None,
    now: datetime,
    lookback: timedelta = MISFIRE_GRACE,
) -> datetime | None:
    """The scheduled time whose issue should go out at ``now``, or None.

    That is the latest fire time at or before ``now`` (within ``lookback``) that the
    newest stored issue (its window ends at ``covered_until``) does not cover yet.  Only
    the latest: several missed fire times give one catch-up issue, not a burst.
    """
    fire = last_fire_time(trigger, now, lookback)
    if fire is None or (covered_until is not None and covered_until >= fire):
        return None
    return fire


def poll_wake(
    next_check: datetime | None, *, not_before: datetime, next_tick: datetime | None
) -> datetime | None:
    """When to run the poll job before its regular tick at ``next_tick``, or None (the tick
    comes first, or no feed has a next check).

    At ``next_check`` (the earliest stored next check) and never before it: it carries the
    server's Retry-After and Cache-Control max-age, and jitter that only ever adds time.
    Not before ``not_before`` either (the last run plus a minimum gap): a thousand feeds
    whose jittered checks fall seconds apart are polled together, a few cycles a minute,
    not one cycle each.  A job with no regular tick (``next_tick`` None: paused) is left alone.
    """
    if next_check is None or next_tick is None:
        return None
    wake = max(next_check, not_before)
    return wake if wake < next_tick else None
